"""``python -m raynas predict MODEL_DIR IMAGES... --out DIR``: run a shipped model on images, write what it sees."""

from __future__ import annotations

import argparse

NAME = "predict"
HELP = ("segment images (files or folders, any size) with a shipped model.onnx; write colour-coded masks, overlays "
        "and a legend of the class colours as PNG")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a model folder (finetune's <arch_id>/) or its model.onnx")
    parser.add_argument("images", nargs="+", help="image files or folders of images")
    parser.add_argument("--out", required=True, help="where the PNGs go: NAME_mask.png, NAME_overlay.png, legend.png")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (default: its own choice)")


def run(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from PIL import Image

    from raynas.errors import UserError
    from raynas.shipped_model import (ShippedModel, colour_mask, image_paths, legend, overlay, palette,
                                      read_image)

    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads: must be a whole number >= 1; got {args.threads}")
    model_path = Path(args.model)
    onnx_file = model_path / "model.onnx" if model_path.is_dir() else model_path
    if not onnx_file.is_file():
        raise UserError(f"MODEL_DIR: {args.model} holds no model.onnx (a folder written by `raynas finetune`)")
    paths = image_paths(args.images)  # every input checked before anything is written
    for path in paths:
        read_image(path, decode=False)
    model = ShippedModel(onnx_file, args.threads)
    record = model.preprocessing
    colours = palette(len(record.class_names))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    Image.fromarray(legend(record.class_names, colours)).save(out / "legend.png")
    started, names = time.perf_counter(), set()
    for path in paths:
        image = read_image(path)
        mask = colour_mask(model.predict(image), colours)
        name = path.stem if path.stem not in names else f"{path.stem}_{len(names)}"  # two folders, one name
        names.add(name)
        Image.fromarray(mask).save(out / f"{name}_mask.png")
        Image.fromarray(overlay(image, mask)).save(out / f"{name}_overlay.png")
    seconds = time.perf_counter() - started
    print(f"predict: {len(paths)} images in {seconds:.1f} s ({len(paths) / seconds:.1f} images/s, reading and "
          f"writing included) at the trained size {record.input_size[0]}×{record.input_size[1]} -> {out} "
          f"(legend.png: the class colours)")
    return 0
