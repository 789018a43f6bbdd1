"""The supernet-training configuration: a YAML file → validated dataclasses.

Every field has a default, so a file names only what it changes. A wrong
field is a ``UserError`` naming the field (``training.lr``) and what is
allowed. Sections:

``space`` / ``space_options``  the weight-sharing search space and its options;
``data``        data set, its root (none → the procedurally generated set),
                crop and evaluation sizes, loader processes;
``training``    epochs, steps, batch, sandwich rule, distillation, AdamW, schedule;
``evaluation``  per-epoch validation of the max and min sub-networks;
``scaling``     Ray Train workers (CPU → gloo, GPU → NCCL);
``run``         where Ray Train stores the run and its checkpoints.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from raynas.errors import UserError, check_positive, check_whole

DATASETS = ("synthetic", "camvid", "ade20k", "cocostuff", "cityscapes")


def _check_fraction(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise UserError(f"{name}: must be a number in [0, 1], got {value!r}")
    return float(value)


@dataclass
class DataSection:
    """Sizes are an int (square for crops; the shorter side for resizes) or ``[height, width]``."""

    dataset: str = "synthetic"
    root: str | None = None  # None: ``$RAYNAS_DATA/<dataset>`` (real data) or generated (synthetic)
    crop_size: Any = 512  # training crop
    scale_range: tuple[float, float] = (0.5, 2.0)  # random rescaling before the crop (mmseg's ratio_range)
    eval_size: Any = None  # resize for validation and BN recalibration; None: as loaded
    base_size: Any = None  # real data: resize on load (None: full size)
    cache: bool = False  # real data: keep decoded images in memory (per process)
    synthetic: dict[str, Any] = field(default_factory=lambda: {"length": 256, "val_length": 64, "size": 128,
                                                               "num_classes": 6})
    loader_workers: int = 0  # DataLoader worker processes per training worker

    def check(self) -> None:
        from raynas.data.transforms import check_size

        if self.dataset not in DATASETS:
            raise UserError(f"data.dataset: {self.dataset!r} is not allowed; allowed values: {list(DATASETS)}")
        if self.root is not None:
            if self.dataset == "synthetic":
                raise UserError(f"data.root: the synthetic set is generated and takes no root; got {self.root!r}")
            self.root = str(Path(os.path.expandvars(str(self.root))).expanduser().resolve())
        for name in ("crop_size", "eval_size", "base_size"):
            size = check_size(f"data.{name}", getattr(self, name))
            setattr(self, name, list(size) if isinstance(size, tuple) else size)
        if self.crop_size is None:
            raise UserError("data.crop_size: required (an int or [height, width])")
        if not (isinstance(self.scale_range, (list, tuple)) and len(self.scale_range) == 2
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in self.scale_range)
                and 0 < self.scale_range[0] <= self.scale_range[1]):
            raise UserError(f"data.scale_range: expected [low, high] with 0 < low <= high, got {self.scale_range!r}")
        self.scale_range = (float(self.scale_range[0]), float(self.scale_range[1]))
        if not isinstance(self.cache, bool):
            raise UserError(f"data.cache: must be true or false, got {self.cache!r}")
        if not isinstance(self.synthetic, Mapping):
            raise UserError(f"data.synthetic: must be a mapping of synthetic-set options, got {self.synthetic!r}")
        check_whole("data.loader_workers", self.loader_workers, 0)


@dataclass
class TrainingSection:
    epochs: int = 2
    steps_per_epoch: int | None = None  # None: one pass over the training set per epoch
    batch_size: int = 2  # images per worker per step
    random_subnets: int = 2  # N of the sandwich rule: max + min + N random per step
    distill_ce_weight: float = 0.0  # students' loss = KL to the max sub-network + this × CE
    lr: float = 1.2e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    head_lr_mult: float = 1.0  # learning-rate multiplier of the segmentation head (TopFormer: 10)
    warmup_steps: int = 0
    warmup_ratio: float = 1e-6  # learning-rate factor at step 0 of the linear warm-up
    poly_power: float = 1.0
    seed: int = 0

    def check(self) -> None:
        check_whole("training.epochs", self.epochs, 1)
        if self.steps_per_epoch is not None:
            check_whole("training.steps_per_epoch", self.steps_per_epoch, 1)
        check_whole("training.batch_size", self.batch_size, 1)
        check_whole("training.random_subnets", self.random_subnets, 0)
        if isinstance(self.distill_ce_weight, bool) or not isinstance(self.distill_ce_weight, (int, float)) \
                or self.distill_ce_weight < 0:
            raise UserError(f"training.distill_ce_weight: must be a number >= 0, got {self.distill_ce_weight!r}")
        check_positive("training.lr", self.lr)
        if isinstance(self.weight_decay, bool) or not isinstance(self.weight_decay, (int, float)) or self.weight_decay < 0:
            raise UserError(f"training.weight_decay: must be a number >= 0, got {self.weight_decay!r}")
        if not (isinstance(self.betas, (list, tuple)) and len(self.betas) == 2):
            raise UserError(f"training.betas: must be two numbers in [0, 1), got {self.betas!r}")
        self.betas = (_check_fraction("training.betas[0]", self.betas[0]),
                      _check_fraction("training.betas[1]", self.betas[1]))
        check_positive("training.head_lr_mult", self.head_lr_mult)
        check_whole("training.warmup_steps", self.warmup_steps, 0)
        _check_fraction("training.warmup_ratio", self.warmup_ratio)
        check_positive("training.poly_power", self.poly_power)
        check_whole("training.seed", self.seed, 0)


@dataclass
class EvaluationSection:
    calibration_images: int = 32  # training images for BN recalibration (paper §4.2: 32)
    val_images: int | None = None  # None: the whole validation split
    batch_size: int = 8

    def check(self) -> None:
        check_whole("evaluation.calibration_images", self.calibration_images, 0)
        if self.val_images is not None:
            check_whole("evaluation.val_images", self.val_images, 1)
        check_whole("evaluation.batch_size", self.batch_size, 1)


@dataclass
class ScalingSection:
    num_workers: int = 1
    use_gpu: bool = False
    resources_per_worker: dict[str, float] | None = None  # e.g. {"CPU": 4, "GPU": 1}

    def check(self) -> None:
        check_whole("scaling.num_workers", self.num_workers, 1)
        if not isinstance(self.use_gpu, bool):
            raise UserError(f"scaling.use_gpu: must be true or false, got {self.use_gpu!r}")
        if self.resources_per_worker is not None:
            if not isinstance(self.resources_per_worker, Mapping):
                raise UserError(f"scaling.resources_per_worker: must be a mapping like {{CPU: 1}}, "
                                f"got {self.resources_per_worker!r}")
            for key, amount in self.resources_per_worker.items():
                check_positive(f"scaling.resources_per_worker.{key}", amount)


@dataclass
class RunSection:
    storage_path: str = "~/raynas_results"
    name: str = "supernet"

    def check(self) -> None:
        self.storage_path = str(Path(os.path.expandvars(str(self.storage_path))).expanduser().resolve())
        if not self.name or "/" in str(self.name):
            raise UserError(f"run.name: must be a non-empty name without '/', got {self.name!r}")


@dataclass
class SupernetTrainingConfig:
    space: str = "efficient_topformer"
    space_options: dict[str, Any] = field(default_factory=dict)
    data: DataSection = field(default_factory=DataSection)
    training: TrainingSection = field(default_factory=TrainingSection)
    evaluation: EvaluationSection = field(default_factory=EvaluationSection)
    scaling: ScalingSection = field(default_factory=ScalingSection)
    run: RunSection = field(default_factory=RunSection)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> "SupernetTrainingConfig":
        """Validate a plain mapping (e.g. parsed YAML); unknown keys are errors."""
        raw = dict(raw or {})
        _reject_unknown("", raw, {f.name for f in dataclasses.fields(cls)})
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in raw:
                continue
            value = raw[f.name]
            section_cls = _SECTION_TYPES.get(f.name)
            if section_cls is None:
                kwargs[f.name] = value
                continue
            if value is None:
                value = {}
            if not isinstance(value, Mapping):
                raise UserError(f"{f.name}: must be a mapping of settings, got {value!r}")
            _reject_unknown(f"{f.name}.", value, {g.name for g in dataclasses.fields(section_cls)})
            kwargs[f.name] = section_cls(**value)
        config = cls(**kwargs)
        config.check()
        return config

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> "SupernetTrainingConfig":
        from raynas.config import read_sections

        return cls.from_dict(read_sections(path, [f.name for f in dataclasses.fields(cls)]))

    def check(self) -> None:
        from search_spaces import get_space

        if not isinstance(self.space_options, Mapping):
            raise UserError(f"space_options: must be a mapping, got {self.space_options!r}")
        space = get_space(self.space, **self.space_options)
        if not hasattr(space, "build_supernet"):
            raise UserError(f"space: {self.space!r} has no weight-sharing supernet to train")
        for section in (self.data, self.training, self.evaluation, self.scaling, self.run):
            section.check()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_SECTION_TYPES = {
    "data": DataSection,
    "training": TrainingSection,
    "evaluation": EvaluationSection,
    "scaling": ScalingSection,
    "run": RunSection,
}


def _reject_unknown(prefix: str, raw: Mapping[str, Any], allowed) -> None:
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        raise UserError(f"unknown setting(s) {[prefix + k for k in unknown]}; allowed: {sorted(allowed)}")
