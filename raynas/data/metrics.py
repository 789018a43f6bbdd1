"""Segmentation metrics from a confusion matrix: mIoU, per-class IoU, pixel and mean accuracy.

Convention (as mmsegmentation's ``nanmean``): a class that appears in neither
the ground truth nor the predictions of everything accumulated has an
undefined IoU (NaN in ``per_class_iou``) and is left out of ``miou``; a class
present in the ground truth but never predicted counts with IoU 0. Pixels
whose label is ``ignore_index`` are not counted at all.
"""

from __future__ import annotations

import math

import torch

from raynas.data.transforms import IGNORE_INDEX


class SegmentationMetric:
    """Accumulates a ``num_classes × num_classes`` confusion matrix (rows: truth, columns: prediction).

    Example::

        metric = SegmentationMetric(num_classes=11)
        for images, labels in loader:
            metric.update(model(images), labels)   # logits N×C×H×W or predictions N×H×W
        metric.all_reduce()                         # sums the matrices of all workers (no-op if not distributed)
        metric.compute()["miou"]

    Matrices of separate workers can also be summed with ``merge``.
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX, device: torch.device | str | None = None):
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes: expected an int >= 1, got {num_classes!r}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def reset(self) -> None:
        self.matrix.zero_()

    @torch.no_grad()
    def update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: ``output`` is logits (``N×C×H×W``, ``C×H×W``, or ``N×C`` for one label per image, whose
        ``pixel_accuracy`` is then the top-1 accuracy) or predictions shaped like ``target``."""
        if output.dim() == target.dim() + 1:
            classes = -1 if target.dim() == 1 else -3
            if output.shape[classes] != self.num_classes:
                raise ValueError(f"logits have {output.shape[classes]} channels; "
                                 f"expected num_classes={self.num_classes}")
            output = output.argmax(dim=classes)
        if output.shape != target.shape:
            raise ValueError(f"predictions {tuple(output.shape)} and target {tuple(target.shape)} differ in shape")
        target = target.to(self.matrix.device)
        valid = target != self.ignore_index
        truth = target[valid].long()
        pred = output.to(self.matrix.device)[valid].long()
        if truth.numel() and (truth.min() < 0 or truth.max() >= self.num_classes):
            raise ValueError(f"target holds class ids outside 0..{self.num_classes - 1} "
                             f"(and not ignore_index={self.ignore_index}): {truth.unique().tolist()[:10]}")
        self.matrix += torch.bincount(truth * self.num_classes + pred, minlength=self.num_classes ** 2).view(
            self.num_classes, self.num_classes)

    def merge(self, other: "SegmentationMetric") -> "SegmentationMetric":
        """Add ``other``'s counts to this one (same ``num_classes``); returns ``self``."""
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot merge metrics of {other.num_classes} and {self.num_classes} classes")
        self.matrix += other.matrix.to(self.matrix.device)
        return self

    def all_reduce(self) -> None:
        """Sum the matrix over all ``torch.distributed`` ranks; a no-op outside distributed runs.

        With NCCL the matrix must live on the GPU: build the metric with ``device=``.
        """
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(self.matrix, op=torch.distributed.ReduceOp.SUM)

    def per_class_iou(self) -> torch.Tensor:
        """IoU per class as float64; NaN where the class is in neither truth nor prediction."""
        matrix = self.matrix.double()
        true_positive = matrix.diag()
        union = matrix.sum(0) + matrix.sum(1) - true_positive
        return torch.where(union > 0, true_positive / union.clamp(min=1), torch.full_like(union, math.nan))

    def compute(self) -> dict:
        """``miou``, ``pixel_accuracy``, ``mean_accuracy`` (floats; NaN if nothing counted), ``per_class_iou``."""
        matrix = self.matrix.double()
        iou = self.per_class_iou()
        total = matrix.sum()
        gt_per_class = matrix.sum(1)
        class_acc = torch.where(gt_per_class > 0, matrix.diag() / gt_per_class.clamp(min=1),
                                torch.full_like(gt_per_class, math.nan))
        return {
            "miou": float(iou.nanmean()),
            "pixel_accuracy": float(matrix.diag().sum() / total) if total > 0 else math.nan,
            "mean_accuracy": float(class_acc.nanmean()),
            "per_class_iou": iou.tolist(),
        }
