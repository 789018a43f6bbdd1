"""The supernet-training configuration: a YAML file → validated sections (``raynas.settings``).

Every field has one default, so a file names only what it changes. A wrong
field is a ``UserError`` naming it (``training.lr``) and what is allowed.
Sections:

``space`` / ``space_options``  the weight-sharing search space and its options;
``init``        where the weights start: ``imagenet`` (the space's offline ImageNet
                weights), ``random``, or a ``raynas pretrain`` checkpoint
                (``trainables.initial_weights``);
``data``        data set, its root (none → the procedurally generated set),
                crop and evaluation sizes, loader processes;
``training``    epochs, steps, batch, sandwich rule, distillation, AdamW, schedule;
``evaluation``  per-epoch validation of the max and min sub-networks;
``scaling``     Ray Train workers (CPU → gloo, GPU → NCCL, SyncBN and bf16 by default);
``run``         where Ray Train stores the run and its checkpoints.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, StrictBool

from raynas.data import DATASETS
from raynas.devices import Precision
from raynas.errors import UserError, check_choice, field_error, size_problem
from raynas.settings import Choice, Fraction, NonNegative, Positive, Section, Whole, read_sections


def _size(value: Any) -> Any:
    problem = size_problem(value)
    if problem:
        raise ValueError(problem)
    return list(value) if isinstance(value, (list, tuple)) else value


Size = Annotated[Any, BeforeValidator(_size)]


def _expanded_path(value: Any) -> Any:
    return value if value is None else str(Path(os.path.expandvars(str(value))).expanduser().resolve())


Path_ = Annotated[Any, BeforeValidator(_expanded_path)]


class DataSection(Section):
    """Sizes are an int (square for crops; the shorter side for resizes) or ``[height, width]``."""

    SECTION = "data"

    dataset: Choice(*DATASETS) = "synthetic"
    root: Path_ = None  # None: ``$RAYNAS_DATA/<dataset>`` (real data) or generated (synthetic)
    crop_size: Size = 512  # training crop
    scale_range: tuple[Positive, Positive] = (0.5, 2.0)  # random rescaling before the crop (mmseg's ratio_range)
    eval_size: Size = None  # resize for validation and BN recalibration; None: as loaded
    base_size: Size = None  # real data: resize on load (None: full size)
    cache: StrictBool = False  # real data: keep decoded images in memory (per process)
    synthetic: dict[str, Any] = Field(default_factory=lambda: {"length": 256, "val_length": 64, "size": 128,
                                                               "num_classes": 6})
    loader_workers: Whole(0) = 0  # DataLoader worker processes per training worker

    def options(self, split: str) -> dict[str, Any]:
        """``make_dataset`` options of ``split`` besides the transform."""
        if self.dataset == "synthetic":
            options = dict(self.synthetic)
            val_length = options.pop("val_length", options.get("length", 64))
            return options if split == "train" else options | {"length": val_length}
        base_size = tuple(self.base_size) if isinstance(self.base_size, list) else self.base_size
        return {"base_size": base_size, "cache": self.cache}

    def make(self, split: str, transform, cache: bool | None = None):
        """The data set of ``split`` with ``transform`` (``cache`` overrides the section's, for real data)."""
        from raynas.data import make_dataset

        options = self.options(split)
        if cache is not None and "cache" in options:
            options["cache"] = cache
        return make_dataset(self.dataset, self.root, split, transform=transform, **options)

    def build(self) -> tuple[Any, Any, Any]:
        """``(train, calibration, val)``: augmented training images, the training split under the
        evaluation transform (BN recalibration: deterministic, the same on every worker), validation."""
        from raynas.data import EvalTransform, TrainTransform

        train = self.make("train", TrainTransform(self.crop_size, scale_range=self.scale_range))
        calibration = self.make("train", EvalTransform(self.eval_size))
        return train, calibration, self.make("val", EvalTransform(self.eval_size))

    def test_set(self):
        """The labelled test split under the evaluation transform, or None where the data set publishes
        no test labels (ADE20K, Cityscapes): images no search or recipe choice has seen."""
        from raynas.data import EvalTransform

        return self.make("test", EvalTransform(self.eval_size)) if "test" in DATASETS[self.dataset].splits else None

    def check(self, section: str) -> None:
        if self.root is not None and self.dataset == "synthetic":
            raise field_error(self.field(section, "root"), "the synthetic set is generated and takes no root",
                              self.root)
        if self.crop_size is None:
            raise UserError(f"{self.field(section, 'crop_size')}: required (an int or [height, width])")
        if self.scale_range[0] > self.scale_range[1]:
            raise field_error(self.field(section, "scale_range"), "expected [low, high] with low <= high",
                              list(self.scale_range))


class TrainingSection(Section):
    SECTION = "training"

    epochs: Whole(1) = 2
    steps_per_epoch: Whole(1) | None = None  # None: one pass over the training set per epoch
    batch_size: Whole(1) = 2  # images per worker per step
    random_subnets: Whole(0) = 2  # N of the sandwich rule: max + min + N random per step
    distill: StrictBool = True  # students learn the max sub-network's predictions (inplace distillation), else labels
    distill_ce_weight: NonNegative = 0.0  # students' loss = KL to the max sub-network + this × CE
    # each student's loss × this; None: 1 / (N + 1), the students' mean (their sum, BigNAS's 1, outweighs the max
    # sub-network's loss and costs it mIoU with a few images per worker: BENCHMARKS.md, the sandwich's recipe)
    student_weight: NonNegative | None = None
    # BatchNorm statistics over all workers' images (SyncBN, as TopFormer trains) instead of each worker's own:
    # for a few images per GPU; on CPU workers (gloo) a step takes 2.7× as long (BENCHMARKS.md)
    # None: on where it is cheap and needed, Ray Train's GPU workers (NCCL) with more than one of them
    sync_bn: StrictBool | None = None
    precision: Precision = "auto"  # bf16 autocast on GPU workers, fp32 on CPU ones (raynas.devices)
    lr: Positive = 1.2e-4
    weight_decay: NonNegative = 0.01
    betas: tuple[Fraction, Fraction] = (0.9, 0.999)
    head_lr_mult: Positive = 1.0  # learning-rate multiplier of the segmentation head (TopFormer: 10)
    warmup_steps: Whole(0) = 0
    warmup_ratio: Fraction = 1e-6  # learning-rate factor at step 0 of the linear warm-up
    poly_power: Positive = 1.0
    seed: Whole(0) = 0


class SegmentationTraining(TrainingSection):
    # the max sub-network's cross-entropy: every pixel alike, or weighted by median-frequency balancing
    # (SegNet's CamVid setting: rare classes such as poles and cyclists count; raynas.data's class_weights)
    class_weights: Choice("none", "median_frequency") = "none"


class EvaluationSection(Section):
    """Which images score a sub-network: BN recalibration images, validation images, batch size."""

    SECTION = "evaluation"

    calibration_images: Whole(0) = 32  # training images for BN recalibration (paper §4.2: 32), spread over the split
    val_images: Whole(1) | None = None  # spread over the split; None: the whole validation split
    batch_size: Whole(1) = 8
    precision: Precision = "auto"  # of the forward passes: bf16 autocast on a GPU, fp32 on a CPU (raynas.devices)


class ScalingSection(Section):
    """Ray Train's workers: how many, whether each holds a GPU (NCCL between them, else gloo), what each asks."""

    SECTION = "scaling"

    num_workers: Whole(1) = 1
    use_gpu: StrictBool = False
    resources_per_worker: dict[str, Positive] | None = None  # e.g. {"CPU": 4, "GPU": 1}

    def check(self, section: str) -> None:
        gpus = (self.resources_per_worker or {}).get("GPU", 0)
        if gpus and not self.use_gpu:
            raise field_error(self.field(section, "resources_per_worker"),
                              f"asks for GPU: {gpus:g} while {self.field(section, 'use_gpu')} is false; "
                              "set use_gpu: true, or drop GPU", self.resources_per_worker)

    def worker_resources(self) -> dict[str, float]:
        """What Ray Train reserves for each worker: ``resources_per_worker``, by default 1 CPU, or 1 GPU (and no
        CPU) with ``use_gpu``, which also adds 1 GPU where the resources name none."""
        asks = dict(self.resources_per_worker or ({"GPU": 1} if self.use_gpu else {"CPU": 1}))
        if self.use_gpu:
            asks.setdefault("GPU", 1)
        return asks

    def runs_at_once(self, limit: int | None = None) -> int:
        """``limit``, else how many runs of this scaling the connected cluster holds now (at least 1), each
        resource counted: a Tune trial per run beyond them would only start a Ray Train controller that waits
        for workers."""
        import ray

        if limit:
            return limit
        cluster = ray.cluster_resources()
        fits = min(int(cluster.get(name, 0) // (amount * self.num_workers))
                   for name, amount in self.worker_resources().items())
        return max(1, fits)

    def trainer_configs(self):
        """``(TorchConfig, ScalingConfig)`` of a ``TorchTrainer``: NCCL between GPU workers, else gloo."""
        import ray.train
        from ray.train.torch import TorchConfig

        return (TorchConfig(backend="nccl" if self.use_gpu else "gloo"),
                ray.train.ScalingConfig(num_workers=self.num_workers, use_gpu=self.use_gpu,
                                        resources_per_worker=self.resources_per_worker))


class RunSection(Section):
    SECTION = "run"

    storage_path: Path_ = "~/raynas_results"
    name: str = "supernet"

    def check(self, section: str) -> None:
        if not self.name or "/" in self.name:
            raise field_error(self.field(section, "name"), "must be a non-empty name without '/'", self.name)


def weight_sharing_space(name: str, options: dict[str, Any], field: str = "space"):
    """The weight-sharing space ``name`` built with ``options``, or an error naming ``field``."""
    from search_spaces import SPACE_NAMES, get_space
    from search_spaces.base import WeightSharingSpace

    check_choice(field, name, SPACE_NAMES)
    space = get_space(name, **options)
    if not isinstance(space, WeightSharingSpace):
        allowed = [n for n in SPACE_NAMES if isinstance(get_space(n), WeightSharingSpace)]
        raise UserError(f"{field}: {name!r} has no weight-sharing supernet; allowed values: {allowed}")
    return space


class SandwichRunConfig(Section):
    """A whole file of a sandwich-rule run (``trainables.sandwich``); ``from_yaml(path)`` reads one.

    A subclass declares the sections ``init``, ``data``, ``training``, ``evaluation``, ``scaling`` and
    ``run`` with its own types and defaults; the space is checked here, each section by itself."""

    SECTION = ""

    space: str = "efficient_topformer"
    space_options: dict[str, Any] = Field(default_factory=dict)

    def check(self, section: str) -> None:
        weight_sharing_space(self.space, self.space_options)
        for name in ("data", "training", "evaluation", "scaling", "run"):
            getattr(self, name).check(self.field(section, name))

    @classmethod
    def from_yaml(cls, path: str | os.PathLike):
        return cls.load(read_sections(path, cls.model_fields))


class SupernetTrainingConfig(SandwichRunConfig):
    """A whole training file; ``from_yaml(path)`` reads one."""

    init: str = "imagenet"  # or "random", or a `raynas pretrain` checkpoint (trainables.initial_weights)
    data: DataSection = Field(default_factory=DataSection)
    training: SegmentationTraining = Field(default_factory=SegmentationTraining)
    evaluation: EvaluationSection = Field(default_factory=EvaluationSection)
    scaling: ScalingSection = Field(default_factory=ScalingSection)
    run: RunSection = Field(default_factory=RunSection)
