"""Score one sub-network with inherited supernet weights: the sweep objective ``supernet``.

Per trial: set the architecture, recalibrate the batch-norm statistics on
``calibration_images`` training images (``trainables.recalibration``),
compute mIoU on the validation split (or ``val_images`` of it; both subsets
spread evenly over their split, ``trainables.recalibration.spread``), and
return ``miou``, ``flops`` and ``params`` at the deployment ``resolution``,
``arch_id`` and the time split (``recalibration_s``, ``inference_s``,
``overhead_s``, ``latency_s``); with ``latency`` settings also the
sub-network's latency measured by the latency service (``latency_ms`` …, see
``raynas.latency``). A trial given a GPU (``sweep.trial_resources``)
evaluates on it.

Trials run on reused Tune actors: an actor loads each checkpoint once and
keeps its calibration and validation batches in memory (caches keyed by path
and data settings), so a trial pays only for recalibration and inference.

For example (after ``raynas train-supernet --config configs/quickstart_cpu.yaml``)::

    settings = SupernetSettings.load({"supernet": "~/raynas_results/quickstart_supernet",
                                      "evaluation": {"val_images": 32}})
    objective = SupernetObjective(settings)
    objective.evaluate(objective.space.max_arch())
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, ClassVar, Mapping

from pydantic import Field
from torch import nn

from raynas.constraints import Constraint, CostFn
from raynas.devices import Device, torch_device
from raynas.errors import UserError
from raynas.latency.onnx_timing import LatencySettings
from raynas.settings import Section, Whole
from raynas.training_config import DataSection, EvaluationSection
from trainables.checkpoints import checkpoint_dir, load_supernet, read_meta
from trainables.objective import Objective
from trainables.recalibration import evaluate_arch


class SubnetEvaluation(EvaluationSection):
    """How a sub-network is scored: the evaluation images, the data, where FLOPs are counted, the device.

    Data settings (``dataset``, ``data_root``, ``eval_size``) default to those the
    supernet was trained with. ``resolution``: side of the square input at which
    FLOPs and parameters are counted (the paper: 512 on ADE20K). ``device``:
    ``auto`` evaluates on a GPU when the trial was given one, else on the CPU.
    """

    SECTION = "evaluation"

    resolution: Whole(1) = 512
    dataset: str | None = None
    data_root: str | None = None
    eval_size: Any = None
    device: Device = "auto"

    def data(self, meta: Mapping[str, Any]) -> DataSection:
        """The data section: the supernet's (from its checkpoint) with this section's overrides."""
        overrides = {"dataset": self.dataset, "root": self.data_root, "eval_size": self.eval_size}
        return DataSection.load(meta["config"]["data"]).updated({k: v for k, v in overrides.items() if v is not None},
                                                                "evaluation")

    def torch_device(self) -> str:
        """``cuda`` when asked for (a clear error where this process sees none), or (``auto``) when this
        process was given a GPU; else ``cpu`` (``raynas.devices.torch_device``)."""
        return torch_device(self.device, "evaluation.device")


class SupernetSettings(Section):
    """The ``sweep`` fields of the ``supernet`` objective.

    ``supernet``: a checkpoint folder, its ``supernet.pt`` or a training run directory
    (its latest checkpoint when the objective is made; ``record()`` names the one used). ``latency``: measure
    every trial's latency (``LatencySettings``; its resolution defaults to the
    evaluation's). ``latency_model``: a fitted ``LatencyModel`` file predicting
    ``latency_pred_ms``, which a latency limit then bounds.
    """

    SECTION = "sweep"

    supernet: str
    evaluation: SubnetEvaluation = Field(default_factory=SubnetEvaluation)
    latency: LatencySettings | None = None
    latency_model: str | None = None

    def check(self, section: str) -> None:
        self.supernet = str(Path(self.supernet).expanduser().resolve())
        if self.latency is not None and self.latency.resolution is None:
            self.latency = self.latency.updated({"resolution": self.evaluation.resolution}, f"{section}.latency")


_SUPERNETS: dict[tuple[str, str], tuple[nn.Module, dict]] = {}
_BATCHES: dict[tuple, list] = {}
_LATENCY_SERVICES: dict[str, Any] = {}


def cached_supernet(checkpoint: str, device: str = "cpu") -> tuple[nn.Module, dict]:
    """``load_supernet`` once per process (a reused Tune actor) and checkpoint path."""
    key = (str(checkpoint), device)
    if key not in _SUPERNETS:
        supernet, meta = load_supernet(checkpoint)
        _SUPERNETS[key] = (supernet.to(device), meta)
    return _SUPERNETS[key]


def cached_batches(evaluation: SubnetEvaluation, meta: Mapping[str, Any], split: str) -> list:
    """The calibration (``split="train"``) or validation batches, decoded once per process."""
    from raynas.data import EvalTransform
    from trainables.recalibration import batches_of, spread

    data = evaluation.data(meta)
    count = evaluation.calibration_images if split == "train" else evaluation.val_images
    key = (repr(sorted(data.dump().items())), split, count, evaluation.batch_size)
    if key not in _BATCHES:
        dataset = data.make(split, EvalTransform(data.eval_size), cache=False)  # the batches below are the cache
        _BATCHES[key] = batches_of(dataset, spread(len(dataset), count), evaluation.batch_size)
    return _BATCHES[key]


def latency_service(latency: LatencySettings):
    """One ``LatencyService`` per process (a reused Tune actor) and settings."""
    from raynas.latency.service import LatencyService

    key = repr(latency.dump())
    if key not in _LATENCY_SERVICES:
        _LATENCY_SERVICES[key] = LatencyService.from_settings(latency)
    return _LATENCY_SERVICES[key]


def measure_latency(space, supernet: nn.Module, arch: Mapping[str, Any], latency: LatencySettings) -> dict:
    """Latency metrics of ``arch`` (ONNX Runtime on a node with the latency resource, else locally; cached)."""
    from raynas.latency.service import arch_requests, trial_metrics

    service = latency_service(latency)
    return trial_metrics(service.measure(arch_requests(space, supernet, [arch], latency.resolution))[0])


def score_subnet(config: Mapping[str, Any], checkpoint: str, evaluation: SubnetEvaluation,
                 latency: LatencySettings | None = None) -> dict:
    """The metrics of the architecture in ``config`` (a trial config: extra keys are ignored)."""
    from search_spaces import get_space

    started = time.perf_counter()
    device = evaluation.torch_device()
    cached = (checkpoint, device) in _SUPERNETS
    supernet, meta = cached_supernet(checkpoint, device)
    space = get_space(meta["space"], **meta["space_options"])
    arch = space.from_config(config)
    calibration = cached_batches(evaluation, meta, "train") if evaluation.calibration_images else []
    val = cached_batches(evaluation, meta, "val")
    metric, recalibration_s, inference_s = evaluate_arch(
        supernet, arch, calibration, val, meta["num_classes"], meta["ignore_index"], device, evaluation.precision)
    cost = space.cost(arch, resolution=evaluation.resolution, num_classes=meta["num_classes"])
    evaluated_s = time.perf_counter() - started
    measured, latency_s = {}, 0.0
    if latency is not None:
        latency_started = time.perf_counter()
        measured = measure_latency(space, supernet, arch, latency)
        latency_s = time.perf_counter() - latency_started
    return {
        "miou": metric.compute()["miou"],
        "flops": cost["flops"],
        "params": cost["params"],
        "arch_id": space.arch_id(arch),
        **measured,
        "recalibration_s": recalibration_s,
        "inference_s": inference_s,
        "overhead_s": evaluated_s - recalibration_s - inference_s,
        "latency_s": latency_s,
        "eval_s": evaluated_s + latency_s,
        "device": device,
        "supernet_cached": cached,  # False: this trial loaded the checkpoint (once per actor)
    }


def score_noise(checkpoint: str, arch: Mapping[str, Any], evaluation: SubnetEvaluation, draws: int = 5,
                seed: int = 0) -> dict[str, Any]:
    """How much ``arch``'s inherited-weight mIoU moves with the images that score it.

    ``draws`` times: recalibrate BN on a random draw of ``calibration_images`` training images
    and score a random draw of ``val_images`` validation images (the whole split, if
    ``val_images`` is None, so only the calibration draw varies). Returns the mIoUs, their
    mean and sample standard deviation.
    """
    import random

    from raynas.data import EvalTransform
    from trainables.recalibration import batches_of

    device = evaluation.torch_device()
    supernet, meta = cached_supernet(checkpoint, device)
    data = evaluation.data(meta)
    rng = random.Random(seed)
    train = data.make("train", EvalTransform(data.eval_size), cache=False)
    val = data.make("val", EvalTransform(data.eval_size), cache=False)

    def batches(dataset, count):
        indices = sorted(rng.sample(range(len(dataset)), min(count or len(dataset), len(dataset))))
        return batches_of(dataset, indices, evaluation.batch_size)

    scores = []
    for _ in range(draws):
        metric, _, _ = evaluate_arch(supernet, arch, batches(train, evaluation.calibration_images),
                                     batches(val, evaluation.val_images), meta["num_classes"], meta["ignore_index"],
                                     device, evaluation.precision)
        scores.append(metric.compute()["miou"])
    mean = sum(scores) / len(scores)
    std = (sum((x - mean) ** 2 for x in scores) / max(len(scores) - 1, 1)) ** 0.5
    return {"mious": scores, "mean": mean, "std": std, "draws": draws,
            "calibration_images": evaluation.calibration_images, "val_images": evaluation.val_images}


class SupernetObjective(Objective):
    """Maximise ``miou`` of sub-networks with inherited weights; costs ``flops`` and ``params``.

    The space is the one the supernet was trained with. With ``latency`` every
    trial measures its sub-network's ``latency_ms``. With ``latency_model`` the
    cost function also predicts ``latency_pred_ms``, and a latency limit bounds
    that; without one, a latency limit makes the cost function measure each
    candidate (once, cached) so the limit bounds the measured latency.
    """

    name: ClassVar[str] = "supernet"
    Settings: ClassVar[type[Section]] = SupernetSettings
    metric: ClassVar[str] = "miou"
    mode: ClassVar[str] = "max"
    penalty: ClassVar[float] = 0.0
    default_resources: ClassVar[dict[str, float]] = {"CPU": 1}

    def __init__(self, settings: SupernetSettings):
        from search_spaces import get_space

        super().__init__(settings)
        self.checkpoint = str(checkpoint_dir(settings.supernet))
        self.meta = read_meta(self.checkpoint)
        self._space = get_space(self.meta["space"], **self.meta["space_options"])
        self.predictor = _latency_predictor(settings.latency_model, self._space, self.meta["num_classes"],
                                            settings.latency)

    @property
    def space(self):
        return self._space

    def check_resources(self, resources: Mapping[str, float]) -> None:
        if self.settings.evaluation.device == "cuda" and not resources.get("GPU"):
            raise UserError(f"sweep.evaluation.device: 'cuda' but a trial asks for {dict(resources)}, no GPU "
                            f"(Ray shows a trial only the GPUs it asks for); set sweep.trial_resources, e.g. "
                            f"{{\"CPU\": 1, \"GPU\": 0.5}}, or evaluation.device: auto")

    def cost(self, arch: Mapping[str, Any]) -> dict[str, float]:
        costs = self._space.cost(arch, resolution=self.settings.evaluation.resolution,
                                 num_classes=self.meta["num_classes"])
        if self.predictor is not None:
            costs["latency_pred_ms"] = self.predictor.cost(arch)["latency_ms"]
        return costs

    def _measured_limit(self, constraint: Constraint | None) -> bool:
        return constraint is not None and constraint.metric == "latency_ms" and self.predictor is None

    def cost_for(self, constraint: Constraint | None) -> CostFn:
        """With a limit on measured latency, each candidate is measured (once, cached) before it is proposed."""
        if not self._measured_limit(constraint):
            return self.cost

        def measured(arch: Mapping[str, Any]) -> dict[str, float]:
            supernet, _ = cached_supernet(self.checkpoint)
            latency = measure_latency(self._space, supernet, arch, self.settings.latency)
            return {**self.cost(arch), "latency_ms": latency["latency_ms"]}

        return measured

    def evaluate(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return score_subnet(config, self.checkpoint, self.settings.evaluation, self.settings.latency)

    @property
    def latency_cost(self) -> str:
        return "latency_pred_ms" if self.predictor is not None else "latency_ms"

    def reported_costs(self) -> tuple[str, ...]:
        return tuple(self.cost(self._space.min_arch())) + (("latency_ms",) if self.settings.latency else ())

    def worst_cost(self, name: str) -> float | None:
        """FLOPs and parameters of the largest sub-network (a measured latency is not known ahead)."""
        costs = self.cost(self._space.max_arch())
        return costs.get(name) if name in ("flops", "params") else None

    def constraint(self, max_flops: float | None, max_latency: float | None) -> Constraint | None:
        if max_latency is not None and self.predictor is None and self.settings.latency is None:
            raise UserError("sweep.max_latency: needs sweep.latency (measured) or sweep.latency_model (predicted)")
        return super().constraint(max_flops, max_latency)

    def admits_some(self, constraint: Constraint | None, samples: int = 20_000, seed: int = 0) -> bool:
        """As ``Objective.admits_some``; a limit on measured latency is not checked ahead (it needs the devices)."""
        return self._measured_limit(constraint) or super().admits_some(constraint, samples, seed)

    def record(self) -> dict[str, Any]:
        return {**super().record(), "checkpoint": self.checkpoint, "epoch": self.meta["epoch"],
                "resolution": self.settings.evaluation.resolution, **self.settings.dump()}


def _latency_predictor(path: str | None, space, num_classes: int, latency: LatencySettings | None):
    """The fitted latency model at ``path`` (None without one), checked against the space and settings."""
    from raynas.latency.model import LatencyModel

    if path is None:
        return None
    model = LatencyModel.load(path, space)
    if model.num_classes != num_classes:
        raise UserError(f"sweep.latency_model: {path} was fitted for {model.num_classes} classes, "
                        f"the supernet has {num_classes}")
    if latency is not None and list(model.resolution) != list(latency.resolution):
        raise UserError(f"sweep.latency_model: {path} was fitted at {list(model.resolution)}, but latency.resolution "
                        f"is {latency.resolution}; measure and predict at one resolution")
    return model


__all__ = ["SubnetEvaluation", "SupernetObjective", "SupernetSettings", "cached_batches", "cached_supernet",
           "score_noise", "score_subnet"]
