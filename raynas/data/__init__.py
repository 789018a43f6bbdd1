"""Segmentation data: data sets in their official layouts, a synthetic set, transforms and mIoU.

Typical use (sizes are ``(height, width)``; an int means the shorter side)::

    from raynas.data import EvalTransform, SegmentationMetric, TrainTransform, make_dataset, pad_collate

    train = make_dataset("camvid", root, "train", base_size=(180, 240), cache=True,
                         transform=TrainTransform(crop_size=(180, 240), scale_range=(0.5, 2.0)))
    val = make_dataset("camvid", root, "val", base_size=(180, 240), transform=EvalTransform())
    loader = torch.utils.data.DataLoader(train, batch_size=8, shuffle=True, num_workers=1,
                                         persistent_workers=True, collate_fn=pad_collate)
    metric = SegmentationMetric(train.num_classes, ignore_index=train.ignore_index)
    metric.update(logits, labels); metric.all_reduce(); metric.compute()["miou"]

    data = make_dataset("synthetic", split="train", length=64, size=(64, 64), num_classes=4)
    if data.is_synthetic:
        print("WARNING:", data.describe())

Every data set yields ``(image float32 3×H×W normalised, label int64 H×W)``
and has ``num_classes``, ``ignore_index`` (255 for all), ``class_names``,
``is_synthetic`` and ``describe()``. ``root=None`` means
``raynas.paths.shared_data_dir() / name``. A missing or malformed folder
raises ``UserError`` saying what was expected where.
"""

from __future__ import annotations

from raynas.data.datasets import ADE20K, CamVid, Cityscapes, COCOStuff, SegmentationDataset
from raynas.data.metrics import SegmentationMetric
from raynas.data.synthetic import SyntheticSegmentation
from raynas.data.transforms import IGNORE_INDEX, EvalTransform, TrainTransform, normalize, pad_collate
from raynas.errors import UserError, check_choice
from raynas.paths import shared_data_dir

DATASETS = {
    "camvid": CamVid,
    "ade20k": ADE20K,
    "cocostuff": COCOStuff,
    "cityscapes": Cityscapes,
    "synthetic": SyntheticSegmentation,
}


def make_dataset(name: str, root=None, split: str = "train", **options) -> SegmentationDataset:
    """The data set ``name`` (one of ``DATASETS``) for ``split``.

    ``options`` go to its class: ``transform``, ``base_size``, ``cache`` for
    real data; ``transform``, ``length``, ``size``, ``num_classes``, ``seed``,
    ``max_shapes`` for ``synthetic`` (which takes no ``root``).
    """
    check_choice("dataset", name, DATASETS)
    if name == "synthetic":
        if root is not None:
            raise UserError(f"synthetic: the data is generated, so root must be None; got {root!r}")
        return SyntheticSegmentation(split=split, **options)
    return DATASETS[name](shared_data_dir() / name if root is None else root, split, **options)


__all__ = [
    "ADE20K", "COCOStuff", "CamVid", "Cityscapes", "DATASETS", "EvalTransform", "IGNORE_INDEX",
    "SegmentationDataset", "SegmentationMetric", "SyntheticSegmentation", "TrainTransform", "make_dataset",
    "normalize", "pad_collate",
]
