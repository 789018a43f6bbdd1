"""Image/label transforms on tensors, keeping the two aligned.

Input of every transform: ``image`` uint8 ``3×H×W`` and ``label`` int64 ``H×W``
(what a data set decodes); output: ``image`` float32 ``3×h×w`` normalised with
``INPUT_MEAN``/``INPUT_STD`` and ``label`` int64 ``h×w``. Sizes are ``(height, width)``;
an ``int`` size means "the shorter side". Labels are resized with
nearest-neighbour only, never interpolated. Random choices draw from the
``generator`` passed to ``__call__`` (or torch's global generator, which a
``DataLoader`` seeds per worker).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from raynas.errors import UserError, field_error, size_problem

IGNORE_INDEX = 255
# The one input normalisation, ``(image - INPUT_MEAN) / INPUT_STD`` on [0, 1] RGB: the convention of the
# ImageNet weights the project starts from (EfficientNet-Lite0: ``(x·255 - 127) / 128``,
# ``search_spaces.efficient_topformer.imagenet``); checkpoints record it.
INPUT_MEAN = (127 / 255,) * 3
INPUT_STD = (128 / 255,) * 3
# ITU-R BT.601 luma weights, used for grayscale (contrast, saturation) and the YIQ hue rotation.
_LUMA = (0.299, 0.587, 0.114)
_YIQ = torch.tensor([_LUMA, (0.596, -0.274, -0.322), (0.211, -0.523, 0.312)], dtype=torch.float64)
_YIQ_INVERSE = torch.linalg.inv(_YIQ)


def target_size(height: int, width: int, size: int | tuple[int, int]) -> tuple[int, int]:
    """``(h, w)`` for resizing a ``height×width`` image to ``size`` (int: shorter side, keeps aspect)."""
    if isinstance(size, int):
        scale = size / min(height, width)
        return max(1, round(height * scale)), max(1, round(width * scale))
    return int(size[0]), int(size[1])


def check_size(field: str, size) -> int | tuple[int, int] | None:
    """Validate a size option: ``None``, an int > 0 or ``(height, width)`` of ints > 0."""
    problem = size_problem(size)
    if problem:
        raise field_error(field, problem, size)
    return tuple(size) if isinstance(size, (tuple, list)) else size


def resize(image: torch.Tensor, label: torch.Tensor, hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize ``image`` (3×H×W, bilinear, antialiased) and ``label`` (H×W, nearest) to ``hw``.

    A uint8 image takes torch's channels-last uint8 kernel, about 10× faster
    on one CPU thread than the float one.
    """
    if tuple(image.shape[-2:]) == tuple(hw):
        return image, label
    batch = image[None].contiguous(memory_format=torch.channels_last) if image.dtype == torch.uint8 else image[None]
    image = F.interpolate(batch, size=hw, mode="bilinear", align_corners=False, antialias=True)[0].contiguous()
    label = F.interpolate(label[None, None].float(), size=hw, mode="nearest-exact")[0, 0].long()
    return image, label


def to_unit_float(image: torch.Tensor) -> torch.Tensor:
    """uint8 image → float32 in [0, 1]; a float image is taken to be in [0, 1] already."""
    return image.float().div_(255) if image.dtype == torch.uint8 else image.float()


def normalize(image: torch.Tensor) -> torch.Tensor:
    """Image (uint8, or float in [0, 1]) → float ``(image - INPUT_MEAN) / INPUT_STD`` per channel."""
    image = to_unit_float(image)
    mean_t = torch.tensor(INPUT_MEAN, dtype=image.dtype).view(3, 1, 1)
    std_t = torch.tensor(INPUT_STD, dtype=image.dtype).view(3, 1, 1)
    return (image - mean_t) / std_t


def photometric_distortion(image: torch.Tensor, generator: torch.Generator | None = None,
                           brightness: float = 32 / 255, contrast: tuple[float, float] = (0.5, 1.5),
                           saturation: tuple[float, float] = (0.5, 1.5), hue_degrees: float = 18.0,
                           ) -> torch.Tensor:
    """Random brightness shift, contrast, saturation and hue rotation, each with probability 0.5.

    ``image`` is float in [0, 1]. Every step is affine in the colour vector
    (contrast about the mean gray level, saturation about each pixel's gray,
    hue as a rotation of the chroma plane in YIQ space), so the steps are
    composed into one 3×3 matrix and offset and applied in a single pass.
    """
    def coin() -> bool:
        return bool(torch.rand((), generator=generator) < 0.5)

    def uniform(low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand((), generator=generator))

    luma = torch.tensor(_LUMA, dtype=torch.float64)
    eye = torch.eye(3, dtype=torch.float64)
    matrix, offset = eye.clone(), torch.zeros(3, dtype=torch.float64)

    def then(step: torch.Tensor, shift: torch.Tensor | float = 0.0) -> None:
        nonlocal matrix, offset
        matrix, offset = step @ matrix, step @ offset + shift

    if coin():
        then(eye, uniform(-brightness, brightness))
    if coin():
        mean_gray = luma @ (matrix @ image.mean(dim=(-2, -1)).double() + offset)
        factor = uniform(*contrast)
        then(factor * eye, (1 - factor) * mean_gray)
    if coin():
        factor = uniform(*saturation)
        then(factor * eye + (1 - factor) * torch.outer(torch.ones(3, dtype=torch.float64), luma))
    if coin():
        theta = math.radians(uniform(-hue_degrees, hue_degrees))
        rotate = torch.tensor([[1, 0, 0],
                               [0, math.cos(theta), -math.sin(theta)],
                               [0, math.sin(theta), math.cos(theta)]], dtype=torch.float64)
        then(_YIQ_INVERSE @ rotate @ _YIQ)
    if torch.equal(matrix, eye) and not offset.any():
        return image
    out = torch.einsum("ij,jhw->ihw", matrix.to(image.dtype), image) + offset.to(image.dtype).view(3, 1, 1)
    return out.clamp_(0, 1)


class TrainTransform:
    """Training augmentation: random scale, random crop (padded), horizontal flip, photometric, normalise.

    ``crop_size`` is ``(height, width)`` (or an int for a square); the image is
    first scaled by a factor drawn uniformly from ``scale_range``, then a random
    crop of at most ``crop_size`` is taken and padded at the bottom/right to
    exactly ``crop_size`` (image with 0 after normalisation, i.e. the mean
    colour; label with ``ignore_index``), so batches stack.
    """

    def __init__(self, crop_size: int | tuple[int, int], scale_range: tuple[float, float] = (0.5, 2.0),
                 flip_prob: float = 0.5, photometric: bool = True, ignore_index: int = IGNORE_INDEX):
        crop_size = check_size("crop_size", crop_size)
        if crop_size is None:
            raise UserError("crop_size: required for training (an int or [height, width])")
        self.crop_size = (crop_size, crop_size) if isinstance(crop_size, int) else crop_size
        if not (len(scale_range) == 2 and 0 < scale_range[0] <= scale_range[1]):
            raise UserError(f"scale_range: expected [low, high] with 0 < low <= high, got {scale_range!r}")
        if not 0 <= flip_prob <= 1:
            raise UserError(f"flip_prob: expected a probability in [0, 1], got {flip_prob!r}")
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.flip_prob = flip_prob
        self.photometric = photometric
        self.ignore_index = ignore_index

    def __call__(self, image: torch.Tensor, label: torch.Tensor,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        low, high = self.scale_range
        scale = low + (high - low) * float(torch.rand((), generator=generator))
        height, width = image.shape[-2:]
        image, label = resize(image, label, (max(1, round(height * scale)), max(1, round(width * scale))))

        crop_h, crop_w = self.crop_size
        height, width = image.shape[-2:]
        top = int(torch.randint(0, max(height - crop_h, 0) + 1, (), generator=generator))
        left = int(torch.randint(0, max(width - crop_w, 0) + 1, (), generator=generator))
        image = image[:, top:top + crop_h, left:left + crop_w]
        label = label[top:top + crop_h, left:left + crop_w]

        if float(torch.rand((), generator=generator)) < self.flip_prob:
            image, label = image.flip(-1), label.flip(-1)
        image = to_unit_float(image)
        if self.photometric:
            image = photometric_distortion(image, generator)
        image = normalize(image)

        pad_h, pad_w = crop_h - image.shape[-2], crop_w - image.shape[-1]
        if pad_h or pad_w:
            image = F.pad(image, (0, pad_w, 0, pad_h), value=0.0)
            label = F.pad(label, (0, pad_w, 0, pad_h), value=self.ignore_index)
        return image.contiguous(), label.contiguous()


class EvalTransform:
    """Evaluation: optional resize (``size``: int = shorter side, or ``(height, width)``), then normalise."""

    def __init__(self, size: int | tuple[int, int] | None = None):
        self.size = check_size("size", size)

    def __call__(self, image: torch.Tensor, label: torch.Tensor,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if self.size is not None:
            image, label = resize(image, label, target_size(*image.shape[-2:], self.size))
        return normalize(image), label


def pad_collate(batch, ignore_index: int = IGNORE_INDEX) -> tuple[torch.Tensor, torch.Tensor]:
    """``DataLoader`` collate: stack ``(image, label)`` pairs, padding smaller ones bottom/right.

    Images pad with 0, labels with ``ignore_index``, so padded pixels never
    count in the loss or the metric; equal-sized samples are simply stacked.
    """
    images, labels = zip(*batch)
    height = max(im.shape[-2] for im in images)
    width = max(im.shape[-1] for im in images)
    if any(im.shape[-2:] != (height, width) for im in images):
        images = [F.pad(im, (0, width - im.shape[-1], 0, height - im.shape[-2]), value=0.0) for im in images]
        labels = [F.pad(lb, (0, width - lb.shape[-1], 0, height - lb.shape[-2]), value=ignore_index)
                  for lb in labels]
    return torch.stack(images), torch.stack(labels)
