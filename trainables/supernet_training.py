"""Supernet training on Ray Train: the sandwich rule with inplace distillation on segmentation data.

The loop is ``trainables.sandwich``'s; here is what it trains: the space's
supernet, the max sub-network on pixel-wise cross-entropy (ignore index),
the others distilled from it, each epoch's score the mIoU of the max and min
sub-networks (``val_miou_max``/``val_miou_min``). Checkpoints hold
``supernet.pt`` and ``meta.json`` (``trainables.checkpoints``); the run
directory's ``metrics.json`` holds the last epoch's scores (all the
validation images the ``evaluation`` section names) and where the weights
started.

>>> from raynas.training_config import SupernetTrainingConfig
>>> result = train_supernet(SupernetTrainingConfig.from_yaml("configs/quickstart_cpu.yaml"))  # doctest: +SKIP
>>> supernet, meta = load_supernet(result.checkpoint.path)  # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import torch.nn.functional as F

from raynas.progress import Progress
from raynas.training_config import SupernetTrainingConfig
from trainables.checkpoints import CHECKPOINT_FILE, latest_checkpoint, read_meta
from trainables.recalibration import evaluate_arch
from trainables.sandwich import SandwichRun, SandwichTask, sandwich_loop

METRICS_FILE = "metrics.json"


class SegmentationTask(SandwichTask):
    """The supernet on a segmentation data set; scored by mIoU."""

    CONFIG = SupernetTrainingConfig
    STATE_FILE = CHECKPOINT_FILE
    SCORE = "miou"

    def __init__(self, cfg, train_set):
        super().__init__(cfg, train_set)
        self.weight = train_set.class_weights() if cfg.training.class_weights == "median_frequency" else None

    def build(self, space):
        supernet = space.build_supernet(self.train_set.num_classes)
        return supernet, supernet

    def label_loss(self, logits, label):
        weight = None if self.weight is None else self.weight.to(logits.device)
        return F.cross_entropy(logits, label, weight=weight, ignore_index=self.train_set.ignore_index)

    def score(self, net, arch, calibration, val, device) -> float:
        metric, _, _ = evaluate_arch(net, arch, calibration, val, self.train_set.num_classes,
                                     self.train_set.ignore_index, device, self.cfg.evaluation.precision)
        metric.all_reduce()
        return metric.compute()["miou"]

    def meta(self) -> dict[str, Any]:
        # the sandwich rule trains the max sub-network itself: a teacher to distil from
        return {"num_classes": self.train_set.num_classes, "ignore_index": self.train_set.ignore_index,
                "teacher": True}

    @staticmethod
    def data_lines(train_set, val_set) -> list[str]:
        warning = ["WARNING: NO DATA SET GIVEN, training on generated shapes, not real images"]
        return (warning if train_set.is_synthetic else []) + SandwichTask.data_lines(train_set, val_set)

    @staticmethod
    def finished(run_dir: Path) -> None:
        write_metrics(run_dir)


def train_loop_per_worker(config: dict) -> None:
    """Ray Train worker loop; ``config``: ``SupernetTrainingConfig.dump()``, ``resume_from``, ``progress``."""
    sandwich_loop(config, SegmentationTask)


def supernet_run(config: SupernetTrainingConfig | Mapping[str, Any], resume: str | Path | None = None) -> SandwichRun:
    """The validated training run of a config (data and ``init`` checked; nothing started)."""
    return SandwichRun(SegmentationTask, train_loop_per_worker, config, resume)


def train_supernet(config: SupernetTrainingConfig | Mapping[str, Any], resume: str | Path | None = None,
                   progress: Progress | None = None):
    """Train the supernet with a ``TorchTrainer`` (``SandwichRun``); returns the ``ray.train.Result``."""
    return supernet_run(config, resume).run(progress or Progress(prefix="train-supernet: "))


def write_metrics(run_dir: Path) -> dict[str, Any]:
    """The run directory's ``metrics.json``: the latest checkpoint's max and min sub-network scores, where
    the weights started, and which validation images scored them."""
    checkpoint = latest_checkpoint(run_dir)
    meta = read_meta(checkpoint)
    last = meta["history"][-1]
    metrics = {"val_miou_max": last["val_miou_max"], "val_miou_min": last["val_miou_min"],
               "val_images": meta["config"]["evaluation"]["val_images"] or "all",
               "epoch": meta["epoch"], "step": meta["step"], "init": meta.get("init"),
               "checkpoint": str(checkpoint)}
    (run_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=1))
    return metrics


__all__ = ["SegmentationTask", "supernet_run", "train_loop_per_worker", "train_supernet", "write_metrics"]
