"""ImageNet pre-training of a supernet's backbone on Ray Train, as seed 000 runs it (BigNAS's sandwich rule).

``raynas pretrain --config FILE`` trains the space's classifier
(``WeightSharingSpace.build_classifier``: for ``efficient_topformer`` the
token pyramid, global pooling and a linear layer) on an ImageNet-layout
folder (``train/CLASS/*.jpg``, ``val/CLASS/*.jpg``; ``raynas.data.image_folder``)
with the loop of ``trainables.sandwich``: the max sub-network on label-smoothed
cross-entropy, random and min sub-networks distilled from it, top-1 accuracy
of the max and min sub-networks every epoch (BN recalibrated), a checkpoint
per epoch (``pretrain.pt``, ``meta.json``), resumed when run again. Its
checkpoint is what ``init:`` of supernet training starts from
(``trainables.initial_weights``).

A YAML file's sections: ``space``/``space_options``, ``init`` (default
``random``, as the seed), ``data`` (``root``, ``crop_size``,
``loader_workers``), ``training`` (the supernet's, plus
``label_smoothing``), ``evaluation``, ``scaling``, ``run``.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch.nn.functional as F
from pydantic import Field

from raynas.errors import UserError
from raynas.progress import Progress
from raynas.settings import Fraction, Section, Whole
from raynas.training_config import EvaluationSection, Path_, RunSection, SandwichRunConfig, ScalingSection, \
    TrainingSection
from trainables.initial_weights import PRETRAIN_FILE
from trainables.recalibration import evaluate_arch
from trainables.sandwich import SandwichRun, SandwichTask, sandwich_loop


class ImageNetData(Section):
    """An ImageNet-layout folder: ``root/train/CLASS/*.jpg``, ``root/val/CLASS/*.jpg``."""

    SECTION = "data"

    root: Path_ = None
    crop_size: Whole(8) = 224  # training crops and evaluation centre crops, square
    loader_workers: Whole(0) = 0

    def check(self, section: str) -> None:
        if self.root is None:
            raise UserError(f"{self.field(section, 'root')}: required (an ImageNet-layout folder: "
                            f"train/CLASS/*.jpg and val/CLASS/*.jpg)")

    def build(self):
        """``(train, calibration, val)``: augmented training images, the training split under the evaluation
        transform (BN recalibration), validation; a folder without class sub-folders is a clear error."""
        from raynas.data.image_folder import ClassificationEvalTransform, ClassificationTrainTransform, ImageFolder

        field = self.field("data", "root")
        train = ImageFolder(self.root, "train", ClassificationTrainTransform(self.crop_size), field)
        calibration = ImageFolder(self.root, "train", ClassificationEvalTransform(self.crop_size), field)
        val = ImageFolder(self.root, "val", ClassificationEvalTransform(self.crop_size), field, train.classes)
        return train, calibration, val


class PretrainTraining(TrainingSection):
    label_smoothing: Fraction = 0.1  # of the max sub-network's cross-entropy (BigNAS, Inception)


class PretrainConfig(SandwichRunConfig):
    """A whole pre-training file; ``from_yaml(path)`` reads one."""

    init: str = "random"  # as the seed: ImageNet from scratch; "imagenet" starts from the shipped weights
    data: ImageNetData = Field(default_factory=ImageNetData)
    training: PretrainTraining = Field(default_factory=PretrainTraining)
    evaluation: EvaluationSection = Field(default_factory=lambda: EvaluationSection(calibration_images=256,
                                                                                    batch_size=32))
    scaling: ScalingSection = Field(default_factory=ScalingSection)
    run: RunSection = Field(default_factory=lambda: RunSection(name="pretrain"))


class ClassificationTask(SandwichTask):
    """The space's classifier on an ImageNet-layout folder; scored by top-1 accuracy."""

    CONFIG = PretrainConfig
    STATE_FILE = PRETRAIN_FILE
    SCORE = "top1"

    def build(self, space):
        classifier = space.build_classifier(self.train_set.num_classes)
        self.trained_parts = list(classifier.TRAINED_PARTS)
        return classifier, classifier.supernet

    def label_loss(self, logits, label):
        return F.cross_entropy(logits, label, label_smoothing=self.cfg.training.label_smoothing)

    def score(self, net, arch, calibration, val, device) -> float:
        # one label per image: the confusion matrix's pixel accuracy is the top-1 accuracy
        metric, _, _ = evaluate_arch(net, arch, calibration, val, self.train_set.num_classes, -1, device,
                                     self.cfg.evaluation.precision)
        metric.all_reduce()
        return metric.compute()["pixel_accuracy"]

    def meta(self) -> dict[str, Any]:
        return {"classes": list(self.train_set.classes), "num_classes": self.train_set.num_classes,
                "trained_parts": self.trained_parts}


def pretrain_loop(config: dict) -> None:
    """Ray Train worker loop; ``config``: ``PretrainConfig.dump()``, ``resume_from``, ``progress``."""
    sandwich_loop(config, ClassificationTask)


def pretrain_run(config: PretrainConfig | Mapping[str, Any]) -> SandwichRun:
    """The validated pre-training run of a config (the folder listed, ``init`` checked; nothing started)."""
    return SandwichRun(ClassificationTask, pretrain_loop, config)


def pretrain(config: PretrainConfig | Mapping[str, Any], progress: Progress | None = None):
    """Pre-train with a ``TorchTrainer`` (a run with checkpoints resumes); the ``ray.train.Result``."""
    return pretrain_run(config).run(progress or Progress(prefix="pretrain: "))
