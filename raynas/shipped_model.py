"""The model a user holds: a shipped ONNX file run by ONNX Runtime with the preprocessing it carries.

``ShippedModel(path)`` opens ``model.onnx`` (any batch, height and width) and
reads its ``Preprocessing`` from the file's metadata; ``predict(image)`` gives
the class of every pixel of an ``H×W×3`` uint8 RGB image at the image's own
size (the image resized to the trained size's shorter side, the labels
resized back). ``score(model, dataset)`` measures it on a labelled split at
the trained size: what ``metrics.json``'s ``test_miou`` and ``val_miou`` are.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from raynas.data.preprocessing import Preprocessing
from raynas.errors import UserError


class ShippedModel:
    """An ONNX file written by ``finetune`` in an ONNX Runtime session (CPU, ``threads`` intra-op threads)."""

    def __init__(self, path: str | Path, threads: int | None = None):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        # no busy-waiting between runs: a caller's own work (decoding, scoring) gets the cores
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = threads
        self.path = Path(path)
        self.session = onnxruntime.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        metadata = self.session.get_modelmeta().custom_metadata_map
        if "input_size" not in metadata:
            raise UserError(f"{self.path}: carries no preprocessing record in its metadata (written before "
                            f"2026-12-07); delete its folder and run `raynas finetune` again")
        self.preprocessing = Preprocessing.from_metadata(metadata)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """``N×classes×h×w`` logits of a preprocessed ``N×3×h×w`` float32 batch."""
        return self.session.run(["logits"], {"image": batch})[0]

    def predict(self, image: np.ndarray) -> np.ndarray:
        """``H×W`` class indices (uint8) of an ``H×W×3`` uint8 RGB image, at its own size."""
        from PIL import Image

        labels = self.logits(self.preprocessing(image))[0].argmax(axis=0).astype(np.uint8)
        if labels.shape != image.shape[:2]:
            labels = np.asarray(Image.fromarray(labels).resize((image.shape[1], image.shape[0]), Image.NEAREST))
        return labels


def score(model: ShippedModel, dataset):
    """A ``SegmentationMetric`` of the ONNX model over every image of a labelled ``SegmentationDataset``,
    each image preprocessed by the model's own record and scored against its label at the trained size."""
    import torch
    from PIL import Image

    from raynas.data import SegmentationMetric

    metric = SegmentationMetric(dataset.num_classes, ignore_index=dataset.ignore_index)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # counting one image's pixels: torch's thread pool would only wait on ONNX Runtime's
    try:
        for index in range(len(dataset)):
            image, label = dataset.load(index)
            batch = model.preprocessing(image)
            if batch.shape[-2:] != label.shape:
                label = np.asarray(Image.fromarray(label).resize((batch.shape[3], batch.shape[2]), Image.NEAREST))
            predicted = model.logits(batch).argmax(axis=1)
            metric.update(torch.from_numpy(predicted), torch.from_numpy(label.astype(np.int64))[None])
    finally:
        torch.set_num_threads(threads)
    return metric


# --- showing what it sees ---------------------------------------------------------------------

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def palette(num_classes: int) -> np.ndarray:
    """``num_classes × 3`` uint8 colours, distinct for neighbouring indices (the bits of the class index spread
    over the three channels, high bits first, as PASCAL VOC's label colours)."""
    colours = np.zeros((num_classes, 3), dtype=np.uint8)
    for index in range(num_classes):
        value, shift = index + 1, 7
        while value:
            for channel in range(3):
                colours[index, channel] |= ((value >> channel) & 1) << shift
            value >>= 3
            shift -= 1
    return colours


def colour_mask(labels: np.ndarray, colours: np.ndarray, ignore_index: int | None = None) -> np.ndarray:
    """``H×W×3`` uint8: each pixel the colour of its class (black where ``ignore_index`` or out of range)."""
    out = np.zeros((*labels.shape, 3), dtype=np.uint8)
    known = labels < len(colours)
    if ignore_index is not None:
        known &= labels != ignore_index
    out[known] = colours[labels[known]]
    return out


def overlay(image: np.ndarray, mask: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The image with its colour mask blended over it (``alpha``: the mask's share)."""
    return (image.astype(np.float32) * (1 - alpha) + mask.astype(np.float32) * alpha).round().astype(np.uint8)


def legend(class_names, colours: np.ndarray, row: int = 20, width: int = 220) -> np.ndarray:
    """An image listing every class beside its colour."""
    from PIL import Image, ImageDraw

    picture = Image.new("RGB", (width, row * len(class_names) + 8), "white")
    draw = ImageDraw.Draw(picture)
    for i, name in enumerate(class_names):
        top = 4 + i * row
        draw.rectangle((6, top + 2, 6 + row - 4, top + row - 2), fill=tuple(int(c) for c in colours[i]),
                       outline="black")
        draw.text((row + 12, top + 4), name, fill="black")
    return np.asarray(picture)


def image_paths(inputs) -> list[Path]:
    """The image files of ``inputs`` (files, or folders: their images, sorted); a ``UserError`` for a path that
    does not exist or a folder without images."""
    paths: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise UserError(f"IMAGES: the folder {item} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            paths += found
        elif item.is_file():
            paths.append(item)
        else:
            raise UserError(f"IMAGES: {item} does not exist")
    return paths


def read_image(path: Path, decode: bool = True) -> np.ndarray | None:
    """``H×W×3`` uint8 RGB (``decode`` False: only check that the file is an image); a ``UserError`` naming the
    file when it is not one."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if not decode:
                image.verify()
                return None
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError) as err:  # PIL's verify raises SyntaxError too
        raise UserError(f"IMAGES: cannot read {path} as an image ({err})") from None


def example_strip(model: ShippedModel, dataset, count: int = 4, gap: int = 4) -> np.ndarray:
    """One picture of ``count`` images of a labelled data set spread over it, a row each: the image, its ground
    truth and the model's prediction, coloured by ``palette`` (ignored pixels black)."""
    colours = palette(dataset.num_classes)
    picks = np.linspace(0, len(dataset) - 1, num=min(count, len(dataset))).round().astype(int)
    rows = []
    for index in picks:
        image, label = dataset.load(int(index))
        predicted = model.predict(image)
        panels = [image, colour_mask(label, colours, dataset.ignore_index), colour_mask(predicted, colours)]
        spacer = np.full((image.shape[0], gap, 3), 255, dtype=np.uint8)
        rows.append(np.concatenate([panels[0], spacer, panels[1], spacer, panels[2]], axis=1))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, gap), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.concatenate(rows, axis=0)
