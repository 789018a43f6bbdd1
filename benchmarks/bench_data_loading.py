"""CamVid loading speed at 240×180 on one thread: decode-then-resize vs resize-on-load vs cached.

    python benchmarks/bench_data_loading.py [--root ../shared/data/camvid] [--images 100] [--repeats 3]

All variants read the same first N train images in this one run; rounds are
interleaved and each variant keeps its best round, to damp noise from other
processes on a shared machine.
"""

from __future__ import annotations

import argparse
import time

import torch

from raynas.data import EvalTransform, TrainTransform, make_dataset
from raynas.data.transforms import photometric_distortion, resize
from raynas.paths import shared_data_dir


def images_per_second(get, count: int) -> float:
    start = time.perf_counter()
    for index in range(count):
        get(index)
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(shared_data_dir() / "camvid"))
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    size = (180, 240)

    def camvid(**options):
        return make_dataset("camvid", args.root, "train", **options)

    cached = camvid(base_size=size, cache=True, transform=EvalTransform())
    cached_train = camvid(base_size=size, cache=True, transform=TrainTransform(crop_size=size))
    uint8_image = torch.randint(0, 256, (3, 180, 240), dtype=torch.uint8)
    unit_image = uint8_image.float() / 255
    label = torch.zeros(180, 240, dtype=torch.int64)
    variants = {
        "full-size decode, torch resize to 240×180": camvid(transform=EvalTransform(size=size)).__getitem__,
        "resize on load (base_size, JPEG draft)": camvid(base_size=size, transform=EvalTransform()).__getitem__,
        "resize on load, cached (2nd epoch on)": cached.__getitem__,
        "resize on load + TrainTransform (scale 0.5-2, crop, flip, photometric)":
            camvid(base_size=size, transform=TrainTransform(crop_size=size)).__getitem__,
        "cached + TrainTransform (a training epoch after the first)": cached_train.__getitem__,
        "  scale ×2 of a 240×180 image, uint8 kernel": lambda _: resize(uint8_image, label, (360, 480)),
        "  scale ×2 of a 240×180 image, float kernel": lambda _: resize(uint8_image.float(), label, (360, 480)),
        "  photometric distortion, 240×180": lambda i: photometric_distortion(
            unit_image, torch.Generator().manual_seed(i)),
    }
    for dataset in (cached, cached_train):
        images_per_second(dataset.__getitem__, args.images)  # fills the caches
    best = dict.fromkeys(variants, 0.0)
    for _ in range(args.repeats):
        for name, get in variants.items():
            best[name] = max(best[name], images_per_second(get, args.images))
    baseline = best["full-size decode, torch resize to 240×180"]
    print(f"CamVid train, first {args.images} images, 1 thread, output 240×180, best of {args.repeats}")
    for name, rate in best.items():
        print(f"{name:74s} {rate:8.1f} /s  ×{rate / baseline:6.2f}")


if __name__ == "__main__":
    main()
