"""What a shipped model expects of an image, as one record that travels with it.

``Preprocessing`` holds the input size the model was trained and scored at,
how an image becomes its input (RGB, ``(pixel / 255 - mean) / std`` per
channel, NCHW float32; the shorter side resized to the trained size's first),
the class names and the label that means "ignore". ``finetune`` writes it
into ``metrics.json`` (``preprocessing``) and into the ONNX file's metadata
(``metadata_props``, each value JSON); its own ONNX scoring and
``raynas predict`` read it back and call it, so a user's loader can do the
same with only ``onnxruntime``, numpy and Pillow:

>>> record = Preprocessing(input_size=(192, 256), class_names=("sky", "road"), ignore_index=255)
>>> Preprocessing.from_metadata(record.metadata()) == record
True
>>> import numpy as np
>>> record(np.zeros((360, 480, 3), dtype=np.uint8)).shape
(1, 3, 192, 256)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

import numpy as np

from raynas.data.transforms import INPUT_MEAN, INPUT_STD, target_size


@dataclass(frozen=True)
class Preprocessing:
    """An image's way into a model: ``record(image)`` turns an ``H×W×3`` uint8 RGB array into ``1×3×h×w``."""

    input_size: tuple[int, int]  # (height, width) of the images the model was trained and scored at
    class_names: tuple[str, ...]
    ignore_index: int
    mean: tuple[float, ...] = INPUT_MEAN  # on RGB scaled to [0, 1]
    std: tuple[float, ...] = INPUT_STD
    channel_order: str = "RGB"
    layout: str = "NCHW"

    def __post_init__(self) -> None:
        for name in ("input_size", "class_names", "mean", "std"):  # JSON gives lists
            object.__setattr__(self, name, tuple(getattr(self, name)))

    def size_for(self, height: int, width: int) -> tuple[int, int]:
        """The input size of an ``height × width`` image: its shorter side resized to the trained size's shorter
        side, the aspect ratio kept (a trained-size image stays as it is)."""
        return target_size(height, width, min(self.input_size))

    def __call__(self, image: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
        """``1×3×h×w`` float32 of an ``H×W×3`` uint8 RGB image, resized (bilinear) to ``size`` (default
        ``size_for`` the image)."""
        from PIL import Image

        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an H×W×3 uint8 RGB image, got {image.dtype} {image.shape}")
        height, width = size or self.size_for(*image.shape[:2])
        if (height, width) != image.shape[:2]:
            image = np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))
        x = (image.astype(np.float32) / 255 - np.array(self.mean, np.float32)) / np.array(self.std, np.float32)
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None])

    def to_dict(self) -> dict[str, Any]:
        """The record as ``metrics.json`` holds it."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> "Preprocessing":
        return cls(**{f.name: record[f.name] for f in fields(cls) if f.name in record})

    def metadata(self) -> dict[str, str]:
        """The ONNX file's ``metadata_props``: every field, its value as JSON."""
        return {k: json.dumps(v) for k, v in self.to_dict().items()}

    @classmethod
    def from_metadata(cls, props: Mapping[str, str]) -> "Preprocessing":
        """From an ONNX file's metadata (``onnxruntime``: ``session.get_modelmeta().custom_metadata_map``)."""
        return cls.from_dict({k: json.loads(v) for k, v in props.items() if k in {f.name for f in fields(cls)}})
