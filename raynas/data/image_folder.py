"""Image classification in ImageNet's folder layout, for pre-training a supernet's backbone.

``root/train/CLASS/*.jpg`` and ``root/val/CLASS/*.jpg`` (also ``.jpeg``,
``.png``, any case): the class list is the sorted names of ``train/``'s
sub-folders, and a validation class must be one of them. Every item is
``(image float32 3×size×size normalised, class index)``:

- training (``ClassificationTrainTransform``): a random resized crop (scale
  0.08–1 of the area, aspect 3/4–4/3, as Inception and BigNAS), flipped at
  random;
- evaluation (``ClassificationEvalTransform``): the shorter side resized to
  ``size / 0.875``, then the centre ``size × size`` crop.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from raynas.data.datasets import describe_dir
from raynas.data.transforms import normalize
from raynas.errors import UserError

EXTENSIONS = (".jpg", ".jpeg", ".png")


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS)


class ImageFolder(torch.utils.data.Dataset):
    """One split of an ImageNet-layout folder; ``field`` names the setting in errors."""

    def __init__(self, root: str | Path, split: str, transform, field: str = "data.root",
                 classes: tuple[str, ...] | None = None):
        root = Path(root).expanduser()
        folder = root / split
        if not folder.is_dir():
            raise UserError(f"{field}: expected {folder} (ImageNet's layout: {split}/CLASS/*.jpg); "
                            f"found: {describe_dir(folder)}")
        found = sorted(p.name for p in folder.iterdir() if p.is_dir())
        if not found:
            raise UserError(f"{field}: {folder} has no class sub-folders (expected {split}/CLASS/*.jpg); "
                            f"found: {describe_dir(folder)}")
        self.classes = tuple(found) if classes is None else tuple(classes)
        unknown = sorted(set(found) - set(self.classes))
        if unknown:
            raise UserError(f"{field}: {folder} has classes that train/ does not: {unknown[:5]}")
        index = {name: i for i, name in enumerate(self.classes)}
        self.items = [(path, index[name]) for name in found for path in _images(folder / name)]
        if not self.items:
            raise UserError(f"{field}: no images ({', '.join(EXTENSIONS)}) under {folder}/CLASS/")
        self.split, self.transform = split, transform

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        path, label = self.items[i]
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB"))
        return self.transform(torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))), torch.tensor(label)

    def describe(self) -> str:
        return f"{len(self)} {self.split} images of {self.num_classes} classes"


def _resized(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    batch = image[None].float()
    return F.interpolate(batch, size=size, mode="bilinear", align_corners=False, antialias=True)[0]


class ClassificationTrainTransform:
    """Random resized crop to ``size × size`` and a random flip, then the project's normalisation."""

    def __init__(self, size: int, scale: tuple[float, float] = (0.08, 1.0)):
        self.size, self.scale = size, scale

    def __call__(self, image: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        height, width = image.shape[-2:]
        area = height * width

        def uniform() -> float:
            return float(torch.rand((), generator=generator))

        for _ in range(10):
            target = area * (self.scale[0] + (self.scale[1] - self.scale[0]) * uniform())
            ratio = math.exp(math.log(3 / 4) + math.log(16 / 9) * uniform())
            w, h = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
            if 0 < w <= width and 0 < h <= height:
                top = int(torch.randint(0, height - h + 1, (), generator=generator))
                left = int(torch.randint(0, width - w + 1, (), generator=generator))
                break
        else:  # the whole image's centre square
            h = w = min(height, width)
            top, left = (height - h) // 2, (width - w) // 2
        crop = _resized(image[:, top:top + h, left:left + w], (self.size, self.size))
        if uniform() < 0.5:
            crop = crop.flip(-1)
        return normalize(crop / 255)


class ClassificationEvalTransform:
    """Shorter side to ``size / 0.875``, the centre ``size × size``, the project's normalisation."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        short = round(self.size / 0.875)
        scale = short / min(height, width)
        h, w = max(self.size, round(height * scale)), max(self.size, round(width * scale))
        image = _resized(image, (h, w))
        top, left = (h - self.size) // 2, (w - self.size) // 2
        return normalize(image[:, top:top + self.size, left:left + self.size] / 255)
