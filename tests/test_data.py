"""raynas.data: loaders (real CamVid, fixtures in the official ADE20K/COCO-Stuff/Cityscapes layouts),
the synthetic set, transforms and the confusion-matrix metrics."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from raynas.data import (
    DATASETS,
    EvalTransform,
    SegmentationMetric,
    TrainTransform,
    make_dataset,
    normalize,
    pad_collate,
)
from raynas.data.datasets import COCOSTUFF_UNUSED_IDS
from raynas.data.transforms import INPUT_MEAN, INPUT_STD, photometric_distortion
from raynas.errors import UserError

torch.set_num_threads(1)


def write_pair(image_path, label_path, label: np.ndarray, fmt: str = "JPEG"):
    """An image of the label's size (colour = f(label)) and the label PNG, creating folders."""
    image_path.parent.mkdir(parents=True, exist_ok=True)
    label_path.parent.mkdir(parents=True, exist_ok=True)
    image = np.stack([label, 255 - label, np.full_like(label, 128)], axis=-1).astype(np.uint8)
    Image.fromarray(image).save(image_path, fmt)
    Image.fromarray(label.astype(np.uint8), mode="L").save(label_path)


RAW = np.array([[0, 1, 2, 75], [149, 150, 151, 255], [0, 0, 1, 1]], dtype=np.uint8)  # H=3, W=4


# ---------------------------------------------------------------- ADE20K


@pytest.fixture
def ade_root(tmp_path):
    base = tmp_path / "ADEChallengeData2016"
    for folder, stems in (("training", ["ADE_train_00000001", "ADE_train_00000002"]),
                          ("validation", ["ADE_val_00000001"])):
        for stem in stems:
            write_pair(base / "images" / folder / f"{stem}.jpg", base / "annotations" / folder / f"{stem}.png", RAW)
    return tmp_path


def test_ade20k_layout_and_label_mapping(ade_root):
    train = make_dataset("ade20k", ade_root, "train")
    val = make_dataset("ade20k", ade_root / "ADEChallengeData2016", "val")
    assert (len(train), len(val)) == (2, 1)
    assert train.num_classes == 150 and train.ignore_index == 255
    assert train.class_names[0] == "wall" and train.class_names[149] == "flag"
    image, label = train[0]
    assert image.shape == (3, 3, 4) and image.dtype == torch.float32
    assert label.dtype == torch.int64
    expected = [[255, 0, 1, 74], [148, 149, 255, 255], [255, 255, 0, 0]]
    assert label.tolist() == expected


def test_ade20k_missing_annotation_and_folder(ade_root, tmp_path):
    (ade_root / "ADEChallengeData2016/annotations/training/ADE_train_00000002.png").unlink()
    with pytest.raises(UserError, match=r"ADE_train_00000002.jpg has no label; expected .*ADE_train_00000002.png"):
        make_dataset("ade20k", ade_root, "train")
    with pytest.raises(UserError, match=r"ADE20K: expected .*images/validation"):
        make_dataset("ade20k", tmp_path / "nowhere", "val")


# ---------------------------------------------------------------- COCO-Stuff


def test_cocostuff_stuffthingmaps_mapping(tmp_path):
    # stuffthingmap values are COCO-Stuff id - 1: 0 person, 11 = id 12 (unused street sign),
    # 12 = id 13 stop sign, 91 = id 92 banner (first stuff), 181 = id 182 wood, 255 unlabelled.
    raw = np.array([[0, 11, 12, 91], [181, 255, 25, 90]], dtype=np.uint8)
    write_pair(tmp_path / "images/val2017/000000000139.jpg", tmp_path / "annotations/val2017/000000000139.png", raw)
    data = make_dataset("cocostuff", tmp_path, "val")
    assert data.num_classes == 171 and len(data) == 1
    _, label = data[0]
    assert label.tolist() == [[0, 255, 11, 80], [170, 255, 255, 255]]
    assert (data.class_names[0], data.class_names[11], data.class_names[80], data.class_names[170]) == (
        "person", "stop sign", "banner", "wood")
    # every used id maps to a distinct train id, every unused one to ignore
    lut = data.lut
    used = [cid - 1 for cid in range(1, 183) if cid not in COCOSTUFF_UNUSED_IDS]
    assert lut[used].tolist() == list(range(171))
    assert all(lut[cid - 1] == 255 for cid in COCOSTUFF_UNUSED_IDS)
    with pytest.raises(UserError, match=r"COCO-Stuff: expected .*images/train2017"):
        make_dataset("cocostuff", tmp_path, "train")


# ---------------------------------------------------------------- Cityscapes


def test_cityscapes_train_ids_across_cities(tmp_path):
    raw = np.array([[0, 18, 19, 255], [5, 5, 7, 11]], dtype=np.uint8)
    for city, frame in (("bremen", "bremen_000000_000019"), ("aachen", "aachen_000001_000019")):
        write_pair(tmp_path / f"leftImg8bit/train/{city}/{frame}_leftImg8bit.png",
                   tmp_path / f"gtFine/train/{city}/{frame}_gtFine_labelTrainIds.png", raw, fmt="PNG")
    data = make_dataset("cityscapes", tmp_path, "train")
    assert len(data) == 2 and data.num_classes == 19
    assert [p[0].parent.name for p in data.pairs] == ["aachen", "bremen"]
    assert data.pairs[0][1].name == "aachen_000001_000019_gtFine_labelTrainIds.png"
    image, label = data[1]
    assert label.tolist() == [[0, 18, 255, 255], [5, 5, 7, 11]]
    # PNG images are lossless: the decoded, normalised red channel is exactly the raw label / 255
    red = image[0] * INPUT_STD[0] + INPUT_MEAN[0]
    assert torch.allclose(red * 255, torch.from_numpy(raw).float(), atol=1e-3)


def test_label_size_mismatch_and_rgb_label_are_user_errors(tmp_path):
    write_pair(tmp_path / "leftImg8bit/val/ulm/ulm_000000_000019_leftImg8bit.png",
               tmp_path / "gtFine/val/ulm/ulm_000000_000019_gtFine_labelTrainIds.png", RAW, fmt="PNG")
    label_path = tmp_path / "gtFine/val/ulm/ulm_000000_000019_gtFine_labelTrainIds.png"
    Image.fromarray(np.zeros((3, 5), np.uint8)).save(label_path)
    data = make_dataset("cityscapes", tmp_path, "val")
    with pytest.raises(UserError, match=r"label .*labelTrainIds.png is 5×3 but image .*leftImg8bit.png is 4×3"):
        data[0]
    Image.fromarray(np.zeros((3, 4, 3), np.uint8)).save(label_path)
    with pytest.raises(UserError, match=r"mode RGB; expected a single-channel PNG"):
        data[0]


# ---------------------------------------------------------------- CamVid


def test_camvid_real_splits(camvid_dir):
    counts = {split: len(make_dataset("camvid", camvid_dir, split)) for split in ("train", "val", "test")}
    assert counts == {"train": 367, "val": 101, "test": 233}
    data = make_dataset("camvid", camvid_dir, "val")
    assert data.num_classes == 11 and data.class_names[3] == "road"
    image, label = data[0]
    assert image.shape == (3, 360, 480) and label.shape == (360, 480)
    raw = np.asarray(Image.open(data.pairs[0][1]))
    assert raw.max() == 11, "the first val label has void pixels"
    assert torch.equal(label == 255, torch.from_numpy(raw == 11))
    assert torch.equal(label[label != 255], torch.from_numpy(raw[raw != 11]).long())
    labels = torch.cat([data[i][1].flatten() for i in range(0, 101, 20)])
    assert set(labels.unique().tolist()) <= set(range(11)) | {255}
    assert len(set(labels.unique().tolist()) - {255}) >= 8


def test_camvid_resize_on_load_and_cache(camvid_dir):
    data = make_dataset("camvid", camvid_dir, "train", base_size=180, cache=True)
    image, label = data[5]
    assert image.shape == (3, 180, 240) and label.shape == (180, 240)
    assert set(label.unique().tolist()) <= set(range(11)) | {255}
    assert 5 in data._cached
    again, _ = data[5]
    assert torch.equal(image, again)
    full_label = make_dataset("camvid", camvid_dir, "train")[5][1]
    agree = (full_label[::2, ::2] == label).float().mean()
    assert agree > 0.9, "the nearest-resized label stays aligned with the full-size one"
    assert "resized on load to 180" in data.describe()


def test_camvid_dataloader_with_train_transform(camvid_dir):
    data = make_dataset("camvid", camvid_dir, "train", base_size=(90, 120),
                        transform=TrainTransform(crop_size=(64, 96), scale_range=(0.5, 1.5)))
    loader = torch.utils.data.DataLoader(data, batch_size=4, num_workers=2, collate_fn=pad_collate)
    images, labels = next(iter(loader))
    assert images.shape == (4, 3, 64, 96) and labels.shape == (4, 64, 96) and labels.dtype == torch.int64


def test_camvid_errors_name_what_was_expected(tmp_path):
    with pytest.raises(UserError, match=r"CamVid: expected .*/train.txt \(a list of `image label` pairs.*not exist"):
        make_dataset("camvid", tmp_path / "camvid", "train")
    (tmp_path / "train.txt").write_text("train/a.png trainannot/a.png\ntrain/b.png\n")
    write_pair(tmp_path / "train/a.png", tmp_path / "trainannot/a.png", RAW, fmt="PNG")
    with pytest.raises(UserError, match=r"train.txt:2: expected `image label` \(two paths\)"):
        make_dataset("camvid", tmp_path, "train")
    (tmp_path / "train.txt").write_text("train/a.png trainannot/missing.png\n")
    with pytest.raises(UserError, match=r"train.txt:1 lists trainannot/missing.png, which is not a file"):
        make_dataset("camvid", tmp_path, "train")
    with pytest.raises(UserError, match=r"CamVid split: 'training' is not allowed.*\['train', 'val', 'test'\]"):
        make_dataset("camvid", tmp_path, "training")


def test_camvid_segnet_absolute_paths(tmp_path):
    raw = np.array([[0, 11, 3], [10, 12, 4]], dtype=np.uint8)
    write_pair(tmp_path / "val/x.png", tmp_path / "valannot/x.png", raw, fmt="PNG")
    (tmp_path / "val.txt").write_text("/SegNet/CamVid/val/x.png /SegNet/CamVid/valannot/x.png\n")
    data = make_dataset("camvid", tmp_path, "val")
    assert data.pairs == [(tmp_path / "val/x.png", tmp_path / "valannot/x.png")]
    assert data[0][1].tolist() == [[0, 255, 3], [10, 255, 4]]


def test_default_root_is_the_shared_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYNAS_DATA", str(tmp_path))
    with pytest.raises(UserError, match=rf"CamVid: expected {tmp_path}/camvid/train.txt"):
        make_dataset("camvid", split="train")


def test_datasets_pickle_for_worker_processes(camvid_dir):
    for data in (make_dataset("camvid", camvid_dir, "val", base_size=90, transform=EvalTransform()),
                 make_dataset("synthetic", length=3, transform=EvalTransform(size=32))):
        copy = pickle.loads(pickle.dumps(data))
        assert len(copy) == len(data)
        assert torch.equal(copy[1][0], data[1][0]) and torch.equal(copy[1][1], data[1][1])


def test_factory_rejects_unknown_name():
    with pytest.raises(UserError, match=r"dataset: 'voc' is not allowed; allowed values: \['camvid', 'ade20k'"):
        make_dataset("voc")
    assert set(DATASETS) == {"camvid", "ade20k", "cocostuff", "cityscapes", "synthetic"}


# ---------------------------------------------------------------- synthetic


def test_synthetic_is_deterministic_and_flagged():
    data = make_dataset("synthetic", split="train", length=10, size=(48, 64), num_classes=5, seed=3)
    assert data.is_synthetic and "SYNTHETIC" in data.describe() and len(data) == 10
    assert data.num_classes == 5 and data.class_names[0] == "background"
    image, label = data[7]
    assert image.shape == (3, 48, 64) and label.shape == (48, 64)
    assert torch.equal(image, data[7][0]) and torch.equal(label, data[7][1])
    assert set(label.unique().tolist()) <= set(range(5)) and 0 in label
    other_seed = make_dataset("synthetic", split="train", length=10, size=(48, 64), num_classes=5, seed=4)
    val = make_dataset("synthetic", split="val", length=10, size=(48, 64), num_classes=5, seed=3)
    assert not torch.equal(label, other_seed[7][1]) and not torch.equal(label, val[7][1])
    classes_seen = set().union(*(set(data[i][1].unique().tolist()) for i in range(10)))
    assert classes_seen == set(range(5))
    with pytest.raises(IndexError):
        data[10]


def test_synthetic_same_scene_at_any_resolution():
    small = make_dataset("synthetic", length=4, size=(32, 40), seed=1)
    large = make_dataset("synthetic", length=4, size=(96, 120), seed=1)
    for i in range(4):
        agree = (large[i][1][1::3, 1::3] == small[i][1]).float().mean()
        assert agree > 0.95


def test_synthetic_rejects_bad_options():
    with pytest.raises(UserError, match="synthetic num_classes: expected an int >= 2"):
        make_dataset("synthetic", num_classes=1)
    with pytest.raises(UserError, match="synthetic size"):
        make_dataset("synthetic", size=(0, 4))
    with pytest.raises(UserError, match="root must be None"):
        make_dataset("synthetic", root="/data")


def test_synthetic_is_learnable_by_a_tiny_net():
    torch.manual_seed(0)
    train = make_dataset("synthetic", split="train", length=48, size=(32, 32), num_classes=4)
    val = make_dataset("synthetic", split="val", length=16, size=(32, 32), num_classes=4)
    images, labels = pad_collate([train[i] for i in range(len(train))])
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(16, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(16, 4, 1))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    for step in range(60):
        batch = torch.randint(0, len(train), (16,))
        loss = torch.nn.functional.cross_entropy(net(images[batch]), labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    val_images, val_labels = pad_collate([val[i] for i in range(len(val))])
    trained, background_only = SegmentationMetric(4), SegmentationMetric(4)
    with torch.no_grad():
        trained.update(net(val_images), val_labels)
    background_only.update(torch.zeros_like(val_labels), val_labels)
    assert trained.compute()["miou"] > 0.75
    assert trained.compute()["miou"] > background_only.compute()["miou"] + 0.3


# ---------------------------------------------------------------- transforms


def coded_sample(height=60, width=80):
    """A label of vertical bands (0, 3, 7) and an image whose red channel encodes the label."""
    label = torch.zeros(height, width, dtype=torch.int64)
    label[:, width // 3: 2 * width // 3] = 3
    label[:, 2 * width // 3:] = 7
    label[: height // 4] = 255
    image = torch.zeros(3, height, width, dtype=torch.uint8)
    image[0] = (label.clamp(max=10) * 20).to(torch.uint8)
    image[1] = torch.arange(width).clamp(max=255).to(torch.uint8)
    return image, label


def red_code(image):
    """Undo the normalisation of the red channel and decode the label value it carries."""
    return ((image[0] * INPUT_STD[0] + INPUT_MEAN[0]) * 255 / 20).round().long()


def test_train_transform_keeps_image_and_label_aligned():
    image, label = coded_sample()
    transform = TrainTransform(crop_size=(48, 64), scale_range=(0.5, 2.0), photometric=False)
    for seed in range(8):
        out_image, out_label = transform(image, label, torch.Generator().manual_seed(seed))
        assert out_image.shape == (3, 48, 64) and out_label.shape == (48, 64)
        assert set(out_label.unique().tolist()) <= {0, 3, 7, 255}, "labels are never interpolated"
        labelled = out_label != 255
        agree = red_code(out_image)[labelled] == out_label[labelled]
        assert labelled.sum() > 100 and agree.float().mean() > 0.9


def test_train_transform_is_deterministic_given_a_generator():
    image, label = coded_sample()
    transform = TrainTransform(crop_size=32)
    first = transform(image, label, torch.Generator().manual_seed(5))
    second = transform(image, label, torch.Generator().manual_seed(5))
    third = transform(image, label, torch.Generator().manual_seed(6))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert not torch.equal(first[0], third[0])


def test_train_transform_pads_small_images_with_ignore():
    image, label = coded_sample(40, 40)
    transform = TrainTransform(crop_size=(32, 48), scale_range=(0.5, 0.5), flip_prob=0.0, photometric=False)
    out_image, out_label = transform(image, label, torch.Generator().manual_seed(0))
    assert out_image.shape == (3, 32, 48)
    assert (out_label[20:] == 255).all() and (out_label[:, 20:] == 255).all()
    assert (out_image[:, 20:] == 0).all() and (out_image[:, :, 20:] == 0).all()
    assert (out_label[5:20, :20] != 255).any()


def test_flip_mirrors_image_and_label_together():
    image, label = coded_sample(30, 40)
    transform = TrainTransform(crop_size=(30, 40), scale_range=(1.0, 1.0), flip_prob=1.0, photometric=False)
    out_image, out_label = transform(image, label, torch.Generator().manual_seed(0))
    assert torch.equal(out_label, label.flip(-1))
    assert torch.allclose(out_image, normalize(image).flip(-1))


def test_photometric_distortion_changes_colour_within_range():
    image = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))
    outputs = [photometric_distortion(image.clone(), torch.Generator().manual_seed(s)) for s in range(6)]
    assert all(o.min() >= 0 and o.max() <= 1 for o in outputs)
    assert sum(not torch.allclose(o, image) for o in outputs) >= 4


def sequential_photometric(image, generator):
    """Reference: the four steps applied one after another, drawing random numbers in the same order."""
    luma = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)

    def uniform(low, high):
        return low + (high - low) * float(torch.rand((), generator=generator))

    if torch.rand((), generator=generator) < 0.5:
        image = image + uniform(-32 / 255, 32 / 255)
    if torch.rand((), generator=generator) < 0.5:
        mean_gray = (image * luma).sum(0).mean()
        image = mean_gray + uniform(0.5, 1.5) * (image - mean_gray)
    if torch.rand((), generator=generator) < 0.5:
        gray = (image * luma).sum(0, keepdim=True)
        image = gray + uniform(0.5, 1.5) * (image - gray)
    if torch.rand((), generator=generator) < 0.5:
        theta = math.radians(uniform(-18, 18))
        to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
        y, i, q = torch.einsum("ij,jhw->ihw", to_yiq, image)
        i, q = math.cos(theta) * i - math.sin(theta) * q, math.sin(theta) * i + math.cos(theta) * q
        image = torch.einsum("ij,jhw->ihw", torch.linalg.inv(to_yiq), torch.stack([y, i, q]))
    return image.clamp(0, 1)


def test_photometric_composition_equals_sequential_steps():
    image = torch.rand(3, 12, 10, generator=torch.Generator().manual_seed(1))
    for seed in range(16):
        composed = photometric_distortion(image.clone(), torch.Generator().manual_seed(seed))
        reference = sequential_photometric(image.clone(), torch.Generator().manual_seed(seed))
        assert torch.allclose(composed, reference, atol=1e-5), seed


def test_eval_transform_resizes_shorter_side_with_nearest_labels():
    image, label = coded_sample(60, 80)
    out_image, out_label = EvalTransform(size=30)(image, label)
    assert out_image.shape == (3, 30, 40) and out_label.shape == (30, 40)
    assert set(out_label.unique().tolist()) == {0, 3, 7, 255}
    out_image, out_label = EvalTransform(size=(20, 50))(image, label)
    assert out_label.shape == (20, 50)
    unchanged_image, unchanged_label = EvalTransform()(image, label)
    assert torch.equal(unchanged_label, label) and torch.allclose(unchanged_image, normalize(image))


def test_transform_options_are_validated():
    with pytest.raises(UserError, match=r"crop_size: expected an int > 0"):
        TrainTransform(crop_size=(0, 10))
    with pytest.raises(UserError, match=r"scale_range: expected \[low, high\]"):
        TrainTransform(crop_size=8, scale_range=(2.0, 0.5))
    with pytest.raises(UserError, match=r"size: expected an int > 0"):
        EvalTransform(size="big")


def test_pad_collate_pads_to_the_largest_sample():
    batch = [(torch.ones(3, 4, 5), torch.zeros(4, 5, dtype=torch.int64)),
             (torch.ones(3, 6, 3), torch.ones(6, 3, dtype=torch.int64))]
    images, labels = pad_collate(batch)
    assert images.shape == (2, 3, 6, 5) and labels.shape == (2, 6, 5)
    assert (labels[0, 4:] == 255).all() and (labels[1, :, 3:] == 255).all()
    assert (images[0, :, 4:] == 0).all() and images[0, :, :4].eq(1).all()


# ---------------------------------------------------------------- metrics


TARGET = torch.tensor([[0, 0, 1], [1, 2, 255]])
PRED = torch.tensor([[0, 1, 1], [1, 1, 0]])


def test_metric_hand_computed_case():
    metric = SegmentationMetric(num_classes=4)
    metric.update(PRED, TARGET)
    # truth rows, prediction columns; the ignored pixel (predicted 0) is not counted
    assert metric.matrix.tolist() == [[1, 1, 0, 0], [0, 2, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]]
    result = metric.compute()
    iou = result["per_class_iou"]
    assert iou[:3] == [0.5, 0.5, 0.0] and math.isnan(iou[3])  # class 3 absent from truth and prediction
    assert result["miou"] == pytest.approx(1 / 3)
    assert result["pixel_accuracy"] == pytest.approx(3 / 5)
    assert result["mean_accuracy"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)


def test_metric_from_logits_merge_and_reset():
    logits = torch.nn.functional.one_hot(PRED, 4).permute(2, 0, 1).float()[None] * 3.0
    from_logits = SegmentationMetric(4)
    from_logits.update(logits, TARGET[None])
    whole = SegmentationMetric(4)
    whole.update(PRED, TARGET)
    assert torch.equal(from_logits.matrix, whole.matrix)
    top, bottom = SegmentationMetric(4), SegmentationMetric(4)
    top.update(PRED[:1], TARGET[:1])
    bottom.update(PRED[1:], TARGET[1:])
    assert torch.equal(top.merge(bottom).matrix, whole.matrix)
    whole.reset()
    assert whole.matrix.sum() == 0 and math.isnan(whole.compute()["miou"])


def test_metric_matches_brute_force_counts():
    generator = torch.Generator().manual_seed(0)
    target = torch.randint(0, 6, (3, 17, 19), generator=generator)
    target[target == 5] = 255
    pred = torch.randint(0, 5, (3, 17, 19), generator=generator)
    metric = SegmentationMetric(5)
    metric.update(pred, target)
    expected = np.zeros((5, 5), dtype=np.int64)
    for t, p in zip(target.flatten().tolist(), pred.flatten().tolist()):
        if t != 255:
            expected[t, p] += 1
    assert metric.matrix.numpy().tolist() == expected.tolist()
    iou = [expected[c, c] / (expected[c].sum() + expected[:, c].sum() - expected[c, c]) for c in range(5)]
    assert metric.compute()["miou"] == pytest.approx(float(np.mean(iou)))


def test_metric_rejects_bad_input():
    metric = SegmentationMetric(3)
    with pytest.raises(ValueError, match="outside 0..2"):
        metric.update(torch.zeros(2, 2, dtype=torch.int64), torch.tensor([[0, 3], [1, 255]]))
    with pytest.raises(ValueError, match="differ in shape"):
        metric.update(torch.zeros(2, 3, dtype=torch.int64), torch.zeros(2, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="logits have 4 channels"):
        metric.update(torch.zeros(1, 4, 2, 2), torch.zeros(1, 2, 2, dtype=torch.int64))


def _all_reduce_worker(rank, world_size, port, queue):
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                         world_size=world_size)
    metric = SegmentationMetric(4)
    metric.update(PRED[rank:rank + 1], TARGET[rank:rank + 1])
    metric.all_reduce()
    queue.put((rank, metric.matrix.tolist()))
    torch.distributed.destroy_process_group()


def test_metric_all_reduce_sums_over_gloo_ranks():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    context = torch.multiprocessing.get_context("fork")
    queue = context.Queue()
    workers = [context.Process(target=_all_reduce_worker, args=(rank, 2, port, queue)) for rank in range(2)]
    for worker in workers:
        worker.start()
    results = dict(queue.get(timeout=60) for _ in workers)
    for worker in workers:
        worker.join(timeout=30)
    whole = SegmentationMetric(4)
    whole.update(PRED, TARGET)
    assert results[0] == results[1] == whole.matrix.tolist()


def test_median_frequency_class_weights():
    data = make_dataset("synthetic", split="train", length=2, size=(2, 5), num_classes=4)
    labels = [np.array([[0, 0, 0, 1, 1], [0, 0, 0, 1, 255]], dtype=np.uint8),
              np.array([[2, 255, 255, 255, 255], [255, 255, 255, 255, 255]], dtype=np.uint8)]
    data.load = lambda index: (None, labels[index])
    # 6, 3, 1 and 0 pixels: frequencies 0.6, 0.3, 0.1; their median 0.3; class 3 is absent
    assert data.class_weights().tolist() == pytest.approx([0.5, 1.0, 3.0, 0.0])
