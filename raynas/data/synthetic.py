"""A procedurally generated segmentation set, so the pipeline runs without any data download.

Each image is a noisy two-colour gradient background (class 0) with 1 to
``max_shapes`` objects painted over it. Every object class ``k >= 1`` has its
own shape (circle, rectangle, ellipse or triangle, by ``k mod 4``), its own hue
and its own stripe texture (orientation and period), so a small network can
learn it from local colour and texture, and shape helps at larger receptive
fields. Scenes are drawn in normalised coordinates from a generator seeded by
``(seed, split, index)``: the same index gives the same scene at any
resolution. NOT a benchmark: callers should say loudly when it is in use
(``dataset.is_synthetic``, ``dataset.describe()``).
"""

from __future__ import annotations

import colorsys

import numpy as np

from raynas.data.datasets import SegmentationDataset, Transform
from raynas.data.transforms import check_size
from raynas.errors import UserError, check_choice

SHAPES = ("circle", "rectangle", "ellipse", "triangle")
_SPLIT_IDS = {"train": 0, "val": 1, "test": 2}


class SyntheticSegmentation(SegmentationDataset):
    """``length`` generated ``size`` images (``(height, width)`` or int for square) with ``num_classes`` classes."""

    name = "synthetic"
    is_synthetic = True
    splits = tuple(_SPLIT_IDS)

    def __init__(self, split: str = "train", length: int = 64, size: int | tuple[int, int] = (64, 64),
                 num_classes: int = 4, seed: int = 0, max_shapes: int = 4, transform: Transform | None = None):
        self.split = check_choice("synthetic split", split, self.splits)
        size = check_size("synthetic size", size)
        if size is None:
            raise UserError("synthetic size: required (an int or [height, width])")
        self.size = (size, size) if isinstance(size, int) else size
        for field, value, low in (("length", length, 1), ("num_classes", num_classes, 2),
                                  ("max_shapes", max_shapes, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise UserError(f"synthetic {field}: expected an int >= {low}, got {value!r}")
        self.length, self.seed, self.max_shapes = length, int(seed), max_shapes
        self.class_names = ("background",) + tuple(
            f"{SHAPES[k % len(SHAPES)]}_{k}" for k in range(1, num_classes))
        self.transform = transform
        self.root = None
        self.base_size = None

    def __len__(self) -> int:
        return self.length

    def describe(self) -> str:
        return (f"SYNTHETIC data (procedurally generated shapes, not a benchmark): {self.split}, "
                f"{self.length} images of {self.size[0]}×{self.size[1]}, {self.num_classes} classes, seed {self.seed}")

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= index < self.length:
            raise IndexError(f"synthetic index {index} out of range for length {self.length}")
        rng = np.random.default_rng([self.seed, _SPLIT_IDS[self.split], index])
        height, width = self.size
        ys, xs = np.meshgrid((np.arange(height) + 0.5) / height, (np.arange(width) + 0.5) / width, indexing="ij")

        direction = rng.uniform(0, 2 * np.pi)
        ramp = (np.cos(direction) * (xs - 0.5) + np.sin(direction) * (ys - 0.5) + 0.75) / 1.5
        start, end = rng.uniform(0.15, 0.55, size=(2, 3))  # dull colours, unlike the saturated objects
        image = start + (end - start) * ramp[..., None]
        label = np.zeros((height, width), dtype=np.uint8)

        for _ in range(int(rng.integers(1, self.max_shapes + 1))):
            k = int(rng.integers(1, self.num_classes))
            mask = self._shape_mask(SHAPES[k % len(SHAPES)], xs, ys, rng)
            hue = (k - 1) / (self.num_classes - 1)
            color = np.array(colorsys.hsv_to_rgb(hue, 0.85, 0.95))
            angle = np.pi * ((k * 0.382) % 1.0)  # golden-ratio spacing of stripe orientations
            period = 0.06 + 0.04 * (k % 3)  # in units of the image size
            stripes = 0.5 + 0.5 * np.sin(2 * np.pi * (np.cos(angle) * xs + np.sin(angle) * ys) / period
                                         + rng.uniform(0, 2 * np.pi))
            texture = color * (0.65 + 0.35 * stripes)[..., None]
            image[mask] = texture[mask]
            label[mask] = k

        image += rng.normal(0, 0.03, size=image.shape)
        return (np.clip(image, 0, 1) * 255).round().astype(np.uint8), label

    @staticmethod
    def _shape_mask(shape: str, xs: np.ndarray, ys: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        cx, cy = rng.uniform(0.15, 0.85, size=2)
        radius = rng.uniform(0.1, 0.25)
        if shape == "circle":
            return (xs - cx) ** 2 + (ys - cy) ** 2 <= radius ** 2
        if shape == "rectangle":
            half_w, half_h = radius * rng.uniform(0.6, 1.2, size=2)
            return (np.abs(xs - cx) <= half_w) & (np.abs(ys - cy) <= half_h)
        if shape == "ellipse":
            tilt = rng.uniform(0, np.pi)
            u = np.cos(tilt) * (xs - cx) + np.sin(tilt) * (ys - cy)
            v = -np.sin(tilt) * (xs - cx) + np.cos(tilt) * (ys - cy)
            return (u / radius) ** 2 + (v / (0.45 * radius)) ** 2 <= 1
        # triangle pointing up: below the two slanted edges and above the base
        return (ys <= cy + radius) & (ys >= cy - radius + 2 * np.abs(xs - cx))
