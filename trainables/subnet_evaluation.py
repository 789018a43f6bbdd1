"""Score one sub-network with inherited supernet weights: a Ray Tune function trainable.

A trial's config holds the architecture (the space's flat dimension names)
and the ``EvaluationSettings`` fields (the supernet checkpoint, the data).
Per trial: set the architecture, recalibrate the batch-norm statistics on
``calibration_images`` training images (the core paper §4.2 uses 32: reset
the running statistics, then a cumulative average, ``momentum=None``, over
forward passes in train mode without gradients), compute mIoU on the
validation split (or its first ``val_images``), and report ``miou``,
``flops`` and ``params`` at the deployment ``resolution``, ``arch_id``,
``feasible`` and the time split (``recalibration_s``, ``inference_s``,
``overhead_s``, ``latency_s``); with ``latency`` settings also the sub-network's
latency measured by the latency service (``latency_ms`` …, see ``raynas.latency``).

Run with ``reuse_actors=True``: an actor loads each checkpoint once and keeps
its calibration and validation batches in memory (caches keyed by path and
data settings), so a trial pays only for recalibration and inference.

>>> objective = supernet_objective("~/raynas_results/quickstart_supernet", val_images=32)  # doctest: +SKIP
>>> tune.Tuner(objective.trainable, param_space={**objective.space.to_tune(), **objective.config},
...            tune_config=tune.TuneConfig(num_samples=8, reuse_actors=True)).fit()  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
from torch import nn

from raynas.errors import UserError, check_whole
from trainables.supernet_training import checkpoint_dir, dataset_options, load_supernet, read_meta

_BN_TYPES = (nn.modules.batchnorm._BatchNorm,)


# --- BN recalibration and evaluation ---------------------------------------------------


def batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, _BN_TYPES)]


@contextlib.contextmanager
def preserved_bn_statistics(model: nn.Module):
    """Restore every BN's running statistics and momentum on exit (the supernet is left as found)."""
    saved = [(bn, bn.momentum, bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone())
             for bn in batch_norms(model)]
    try:
        yield
    finally:
        with torch.no_grad():
            for bn, momentum, mean, var, tracked in saved:
                bn.momentum = momentum
                bn.running_mean.copy_(mean)
                bn.running_var.copy_(var)
                bn.num_batches_tracked.copy_(tracked)


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Iterable, device: torch.device | str = "cpu") -> int:
    """Re-estimate BN running statistics as the plain average over ``batches``; returns images used.

    Only the BN layers run in train mode (dropout stays off); the model is
    left in eval mode. Momentum stays ``None`` (callers restore it, see
    ``preserved_bn_statistics``).
    """
    norms = batch_norms(model)
    model.eval()
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    images = 0
    for image, _ in batches:
        model(image.to(device))
        images += image.shape[0]
    for bn in norms:
        bn.eval()
    return images


@torch.no_grad()
def evaluate_arch(supernet: nn.Module, arch: Mapping[str, Any], calibration_batches: Iterable,
                  val_batches: Iterable, num_classes: int, ignore_index: int,
                  device: torch.device | str = "cpu"):
    """``(metric, recalibration_s, inference_s)`` for ``arch`` with inherited weights.

    BN statistics are recalibrated on ``calibration_batches`` (none: the
    supernet's running statistics are used as they are) and restored after;
    ``metric`` is a ``SegmentationMetric`` over ``val_batches``.
    """
    from raynas.data import SegmentationMetric

    metric = SegmentationMetric(num_classes, ignore_index=ignore_index, device=device)
    supernet.set_active(arch)
    with preserved_bn_statistics(supernet):
        started = time.perf_counter()
        calibration_batches = list(calibration_batches)
        if calibration_batches:
            recalibrate_bn(supernet, calibration_batches, device)
        recalibration_s = time.perf_counter() - started
        supernet.eval()
        started = time.perf_counter()
        for image, label in val_batches:
            metric.update(supernet(image.to(device)), label.to(device))
        inference_s = time.perf_counter() - started
    return metric, recalibration_s, inference_s


# --- the Tune trainable ------------------------------------------------------------------


@dataclass(frozen=True)
class EvaluationSettings:
    """What a sub-network trial needs besides its architecture.

    ``checkpoint``: a supernet checkpoint folder, its ``supernet.pt`` or a
    training run directory (its latest checkpoint, fixed when the settings
    are made). Data settings default to
    those the supernet was trained with (from the checkpoint).
    ``resolution``: side of the square input at which FLOPs and parameters
    are counted (the paper: 512 on ADE20K).
    """

    checkpoint: str
    calibration_images: int = 32
    val_images: int | None = None
    batch_size: int = 8
    resolution: int = 512
    dataset: str | None = None
    data_root: str | None = None
    eval_size: Any = None
    device: str = "cpu"
    latency: Mapping[str, Any] | None = None  # measure latency per trial: LATENCY_DEFAULTS fields

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "EvaluationSettings":
        allowed = set(cls.__dataclass_fields__)
        unknown = sorted(set(raw) - allowed)
        if unknown:
            raise UserError(f"unknown sub-network evaluation setting(s) {unknown}; allowed: {sorted(allowed)}")
        if not raw.get("checkpoint"):
            raise UserError("checkpoint: the supernet checkpoint to evaluate sub-networks with is required")
        check_whole("calibration_images", raw.get("calibration_images", 0), 0)
        for name in ("batch_size", "resolution", "val_images"):
            if raw.get(name, 1) is not None:
                check_whole(name, raw.get(name, 1), 1)
        raw = dict(raw, checkpoint=str(checkpoint_dir(raw["checkpoint"])))
        raw["latency"] = latency_settings(raw.get("latency"), raw.get("resolution", 512))
        if raw.get("data_root") is not None:
            raw["data_root"] = str(Path(raw["data_root"]).expanduser().resolve())
        return cls(**raw)


_SUPERNETS: dict[tuple[str, str], tuple[nn.Module, dict]] = {}
_BATCHES: dict[tuple, list] = {}


def cached_supernet(checkpoint: str, device: str = "cpu") -> tuple[nn.Module, dict]:
    """``load_supernet`` once per process (a reused Tune actor) and checkpoint path."""
    key = (str(checkpoint), device)
    if key not in _SUPERNETS:
        supernet, meta = load_supernet(checkpoint)
        _SUPERNETS[key] = (supernet.to(device), meta)
    return _SUPERNETS[key]


def cached_batches(settings: EvaluationSettings, meta: Mapping[str, Any], split: str) -> list:
    """The calibration (``split="train"``) or validation batches, decoded once per process.

    Data settings not given in ``settings`` are those the supernet was trained with.
    """
    from raynas.data import EvalTransform, make_dataset, pad_collate

    data = dict(meta["config"]["data"])
    if settings.dataset is not None:
        data["dataset"] = settings.dataset
    if settings.data_root is not None:
        data["root"] = settings.data_root
    if settings.eval_size is not None:
        data["eval_size"] = settings.eval_size
    count = settings.calibration_images if split == "train" else settings.val_images
    key = (repr(sorted(data.items())), split, count, settings.batch_size)
    if key not in _BATCHES:
        options = dataset_options(data, split) | {"transform": EvalTransform(data["eval_size"])}
        options.pop("cache", None)  # the batches below are the cache
        dataset = make_dataset(data["dataset"], data["root"], split, **options)
        indices = list(range(len(dataset) if count is None else min(count, len(dataset))))
        loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, indices),
                                             batch_size=settings.batch_size, collate_fn=pad_collate)
        _BATCHES[key] = list(loader)
    return _BATCHES[key]


LATENCY_DEFAULTS = {"resolution": None, "threads": 1, "warmup": 3, "repeats": 20, "resource": "arm",
                    "cache_dir": "~/.cache/raynas/latency"}
_LATENCY_SERVICES: dict[tuple, Any] = {}


def latency_settings(latency: Mapping[str, Any] | None, resolution: int) -> dict[str, Any] | None:
    """Validated latency settings (``resolution`` defaults to the evaluation's); None: not measured."""
    from raynas.latency.onnx_timing import TimingSettings, input_size

    if latency is None:
        return None
    if not isinstance(latency, Mapping):
        raise UserError(f"latency: must be a mapping of {list(LATENCY_DEFAULTS)}, got {latency!r}")
    unknown = sorted(set(latency) - set(LATENCY_DEFAULTS))
    if unknown:
        raise UserError(f"latency: unknown field(s) {unknown}; allowed fields: {list(LATENCY_DEFAULTS)}")
    merged = {**LATENCY_DEFAULTS, **latency}
    merged["resolution"] = list(input_size(merged["resolution"] or resolution))
    TimingSettings(merged["threads"], merged["warmup"], merged["repeats"])
    merged["cache_dir"] = str(Path(merged["cache_dir"]).expanduser().resolve())
    return merged


def latency_service(latency: Mapping[str, Any]):
    """One ``LatencyService`` per process (a reused Tune actor) and settings."""
    from raynas.latency.onnx_timing import TimingSettings
    from raynas.latency.service import LatencyService

    key = tuple(sorted((k, str(v)) for k, v in latency.items()))
    if key not in _LATENCY_SERVICES:
        _LATENCY_SERVICES[key] = LatencyService(
            latency["cache_dir"], resource=latency["resource"],
            settings=TimingSettings(latency["threads"], latency["warmup"], latency["repeats"]))
    return _LATENCY_SERVICES[key]


def measure_latency(space, supernet: nn.Module, arch: Mapping[str, Any], latency: Mapping[str, Any]) -> dict:
    """Latency metrics of ``arch`` (ONNX Runtime on a node with the latency resource, else locally; cached)."""
    from raynas.latency.service import arch_requests, trial_metrics

    service = latency_service(latency)
    return trial_metrics(service.measure(arch_requests(space, supernet, [arch], latency["resolution"]))[0])


def score_subnet(config: Mapping[str, Any], settings: Mapping[str, Any] | EvaluationSettings) -> dict:
    """The metrics of the architecture in ``config`` (a trial config: extra keys are ignored)."""
    from search_spaces import get_space

    started = time.perf_counter()
    settings = settings if isinstance(settings, EvaluationSettings) else EvaluationSettings.from_dict(settings)
    cached = (settings.checkpoint, settings.device) in _SUPERNETS
    supernet, meta = cached_supernet(settings.checkpoint, settings.device)
    space = get_space(meta["space"], **meta["space_options"])
    arch = space.from_config(config)
    calibration = cached_batches(settings, meta, "train") if settings.calibration_images else []
    val = cached_batches(settings, meta, "val")
    metric, recalibration_s, inference_s = evaluate_arch(
        supernet, arch, calibration, val, meta["num_classes"], meta["ignore_index"], settings.device)
    cost = space.cost(arch, resolution=settings.resolution, num_classes=meta["num_classes"])
    evaluated_s = time.perf_counter() - started
    latency, latency_s = {}, 0.0
    if settings.latency:
        latency_started = time.perf_counter()
        latency = measure_latency(space, supernet, arch, settings.latency)
        latency_s = time.perf_counter() - latency_started
    return {
        "miou": metric.compute()["miou"],
        "flops": cost["flops"],
        "params": cost["params"],
        "arch_id": space.arch_id(arch),
        **latency,
        "recalibration_s": recalibration_s,
        "inference_s": inference_s,
        "overhead_s": evaluated_s - recalibration_s - inference_s,
        "latency_s": latency_s,
        "eval_s": evaluated_s + latency_s,
        "supernet_cached": cached,  # False: this trial loaded the checkpoint (once per actor)
    }


def subnet_trainable(config: Mapping[str, Any]) -> None:
    """The Tune function trainable: the architecture and the ``EvaluationSettings`` fields in one config.

    A proposal the sweep marked infeasible (``feasible: False``, with
    ``penalty``) is answered with its cost and the penalty as ``miou``,
    without touching the supernet.
    """
    from ray import tune

    from raynas.searchers import FEASIBLE_KEY

    settings = {k: config[k] for k in EvaluationSettings.__dataclass_fields__ if k in config}
    if config.get(FEASIBLE_KEY, True):
        metrics = score_subnet(config, settings)
    else:
        space, meta = _space_and_meta(settings["checkpoint"])
        arch = space.from_config(config)
        cost = space.cost(arch, resolution=settings.get("resolution", 512), num_classes=meta["num_classes"])
        metrics = {"miou": config.get("penalty", 0.0), **cost, "arch_id": space.arch_id(arch)}
    tune.report({**metrics, FEASIBLE_KEY: bool(config.get(FEASIBLE_KEY, True))})


def _space_and_meta(checkpoint: str):
    from search_spaces import get_space

    meta = read_meta(checkpoint)
    return get_space(meta["space"], **meta["space_options"]), meta


def supernet_objective(supernet: str, latency_model: str | None = None, latency_constraint: bool = False,
                       **settings):
    """The sweep objective over a trained supernet: maximise ``miou``; costs ``flops`` and ``params``.

    ``settings`` are ``EvaluationSettings`` fields (``calibration_images``,
    ``val_images``, ``resolution``, ``latency`` …); the space is the one the
    supernet was trained with. With ``latency`` every trial measures its
    sub-network's ``latency_ms``. With ``latency_model`` (a fitted
    ``LatencyModel`` file) the cost function also predicts
    ``latency_pred_ms``, and a latency constraint bounds that; without one,
    ``latency_constraint`` makes the cost function measure each candidate
    (once, cached) so the constraint bounds the measured latency.
    """
    from trainables import Objective

    settings = asdict(EvaluationSettings.from_dict({"checkpoint": supernet, **settings}))
    space, meta = _space_and_meta(settings["checkpoint"])
    predictor = _latency_predictor(latency_model, space, meta["num_classes"], settings["latency"])
    if latency_constraint and predictor is None and settings["latency"] is None:
        raise UserError("a latency constraint needs latency settings (measured) or a latency_model (predicted)")

    def cost(arch: Mapping[str, Any]) -> dict[str, float]:
        costs = space.cost(arch, resolution=settings["resolution"], num_classes=meta["num_classes"])
        if predictor is not None:
            costs["latency_pred_ms"] = predictor.cost(arch)["latency_ms"]
        elif latency_constraint:
            supernet_module, _ = cached_supernet(settings["checkpoint"])
            costs["latency_ms"] = measure_latency(space, supernet_module, arch, settings["latency"])["latency_ms"]
        return costs

    return Objective(
        name="supernet",
        space=space,
        trainable=subnet_trainable,
        metric="miou",
        mode="max",
        cost=cost,
        config={**settings, "penalty": 0.0},
        penalty=0.0,
        settings={"benchmark": "supernet", "epoch": meta["epoch"], "latency_model": latency_model, **settings},
        resources={"cpu": 1},
        latency_cost="latency_pred_ms" if predictor is not None else "latency_ms",
    )


def _latency_predictor(path: str | None, space, num_classes: int, latency: Mapping[str, Any] | None):
    """The fitted latency model at ``path`` (None without one), checked against the space and settings."""
    from raynas.latency.model import LatencyModel

    if path is None:
        return None
    model = LatencyModel.load(path, space)
    if model.num_classes != num_classes:
        raise UserError(f"latency_model {path}: fitted for {model.num_classes} classes, the supernet has {num_classes}")
    if latency is not None and list(model.resolution) != list(latency["resolution"]):
        raise UserError(f"latency_model {path}: fitted at {list(model.resolution)}, but latency.resolution is "
                        f"{latency['resolution']}; measure and predict at one resolution")
    return model


__all__ = ["EvaluationSettings", "batch_norms", "cached_supernet", "evaluate_arch",
           "preserved_bn_statistics", "recalibrate_bn", "score_subnet", "subnet_trainable", "supernet_objective"]
