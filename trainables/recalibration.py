"""Batch-norm recalibration and scoring a sub-network with inherited weights.

A weight-sharing supernet's running BN statistics blend every sub-network it
trained; before scoring one, its statistics are re-estimated on a few
training images spread over the split (the core paper §4.2 uses 32;
``spread``): reset the running statistics, then take their plain average
(``momentum=None``) over forward passes in train mode without gradients, and
put the supernet's own statistics back afterwards. Forward passes run at the
``evaluation.precision`` (``raynas.devices``: bf16 autocast on a GPU by default).
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Iterable, Mapping

import torch
from torch import nn

from raynas.devices import autocast, to_device

_BN_TYPES = (nn.modules.batchnorm._BatchNorm,)


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
def recalibrate_bn(model: nn.Module, batches: Iterable, device: torch.device | str = "cpu",
                   precision: str = "auto") -> int:
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
        with autocast(device, precision):
            model(image.to(device, non_blocking=True))
        images += image.shape[0]
    for bn in norms:
        bn.eval()
    return images


@torch.no_grad()
def evaluation_batches(calibration_set, val_set, evaluation, rank: int = 0, world: int = 1) -> tuple[list, list]:
    """``(calibration, val)`` batch lists of a training worker: ``evaluation.calibration_images`` training
    images (the same on every worker) and this worker's shard (``rank::world``) of ``evaluation.val_images``
    validation images, each subset ``spread`` over its split; ``evaluation``: an ``EvaluationSection``."""
    calibration = batches_of(calibration_set, spread(len(calibration_set), evaluation.calibration_images),
                             evaluation.batch_size)
    return calibration, shard_batches(val_set, evaluation.batch_size, rank, world, evaluation.val_images)


def spread(size: int, count: int | None) -> list[int]:
    """``count`` indices of ``range(size)`` spread evenly over it (all of them for None or ``count >= size``).

    A split's list is ordered (CamVid's by sequence: its first 32 training images are all dusk frames of
    one drive, its validation split another drive by day), so a subset taken from the front would
    calibrate and score on one scene only.

    >>> spread(10, 4), spread(10, None), spread(3, 5), spread(5, 0)
    ([0, 3, 6, 9], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [0, 1, 2], [])
    """
    if count is None or count >= size:
        return list(range(size))
    return [round(i * (size - 1) / max(count - 1, 1)) for i in range(count)]


@torch.no_grad()
def shard_batches(dataset, batch_size: int, rank: int = 0, world: int = 1, images: int | None = None) -> list:
    """This worker's shard (``rank::world``) of ``images`` images of ``dataset`` spread over it (None: all), batched."""
    return batches_of(dataset, spread(len(dataset), images)[rank::world], batch_size)


def batches_of(dataset, indices, batch_size: int) -> list:
    """The images ``indices`` of ``dataset`` as a list of batches (padded to a common size)."""
    from torch.utils.data import DataLoader, Subset

    from raynas.data import pad_collate

    return list(DataLoader(Subset(dataset, list(indices)), batch_size=batch_size, collate_fn=pad_collate))


def evaluate_arch(supernet: nn.Module, arch: Mapping[str, Any], calibration_batches: Iterable,
                  val_batches: Iterable, num_classes: int, ignore_index: int,
                  device: torch.device | str = "cpu", precision: str = "auto"):
    """``(metric, recalibration_s, inference_s)`` for ``arch`` with inherited weights.

    BN statistics are recalibrated on ``calibration_batches`` (none: the
    supernet's running statistics are used as they are) and restored after;
    ``metric`` is a ``SegmentationMetric`` over ``val_batches``.
    """
    supernet.set_active(arch)
    with preserved_bn_statistics(supernet):
        started = time.perf_counter()
        calibration_batches = list(calibration_batches)
        if calibration_batches:
            recalibrate_bn(supernet, calibration_batches, device, precision)
        recalibration_s = time.perf_counter() - started
        started = time.perf_counter()
        metric = evaluate_model(supernet, val_batches, num_classes, ignore_index, device, precision)
        inference_s = time.perf_counter() - started
    return metric, recalibration_s, inference_s


@torch.no_grad()
def evaluate_model(model: nn.Module, batches: Iterable, num_classes: int, ignore_index: int,
                   device: torch.device | str = "cpu", precision: str = "auto"):
    """A ``SegmentationMetric`` of ``model`` (put in eval mode) over ``batches``, forward passes at ``precision``."""
    from raynas.data import SegmentationMetric

    metric = SegmentationMetric(num_classes, ignore_index=ignore_index, device=device)
    model.eval()
    for image, label in batches:
        image, label = to_device((image, label), device)
        with autocast(device, precision):
            logits = model(image)
        metric.update(logits, label)
    return metric
