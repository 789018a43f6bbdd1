"""Supernet training throughput (images/s) with 1 and 2 Ray Train workers, side by side in one run.

Each run trains the sandwich rule (max + 2 random + min per step) on CamVid
crops for a fixed number of steps; images/s counts the training images of
all workers per second of the training loop (worker start-up, validation
and checkpointing excluded); images per CPU-second divides by the CPU time
of all workers' loops, which shows the cost of the gradient all-reduce
apart from how busy the machine is. Every worker is one Ray CPU (one torch
thread).

    python benchmarks/training_throughput.py                      # 1 vs 2 workers
    python benchmarks/training_throughput.py --workers 1 2 4 --steps 30
"""

from __future__ import annotations

import argparse
import os
import tempfile

os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")

from raynas.paths import shared_data_dir  # noqa: E402


def config(workers: int, steps: int, batch: int, crop: int, storage: str) -> dict:
    return {
        "space_options": {"head_channels": 64},
        "data": {"dataset": "camvid", "root": str(shared_data_dir() / "camvid"), "base_size": 96, "cache": True,
                 "crop_size": crop},
        "training": {"epochs": 1, "steps_per_epoch": steps, "batch_size": batch, "lr": 1e-3},
        "evaluation": {"calibration_images": 0, "val_images": 1},
        "scaling": {"num_workers": workers, "resources_per_worker": {"CPU": 1}},
        "run": {"storage_path": storage, "name": f"throughput_{workers}"},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=4, help="images per worker per step")
    parser.add_argument("--crop", type=int, default=64)
    args = parser.parse_args()

    import ray

    from trainables.supernet_training import train_supernet

    ray.init(address="local", num_cpus=max(args.workers), include_dashboard=False, log_to_driver=False)
    from raynas.progress import Progress

    quiet = Progress(stream=open(os.devnull, "w"))
    rates, per_cpu = {}, {}
    with tempfile.TemporaryDirectory() as storage:
        for workers in args.workers:
            metrics = train_supernet(config(workers, args.steps, args.batch, args.crop, storage), progress=quiet).metrics
            images = args.steps * args.batch * workers
            rates[workers], per_cpu[workers] = metrics["images_per_s"], images / metrics["cpu_seconds"]
            print(f"{workers} worker(s): {rates[workers]:.2f} images/s, {per_cpu[workers]:.2f} images per CPU-second "
                  f"({args.steps} steps × {args.batch} images × {workers}, {args.crop}×{args.crop} crops, "
                  f"{metrics['train_seconds']:.1f} s)", flush=True)
    base = args.workers[0]
    for workers in args.workers:
        print(f"{workers} vs {base} worker(s): {rates[workers] / rates[base]:.2f}× images/s, "
              f"{per_cpu[workers] / per_cpu[base]:.2f}× images per CPU-second")


if __name__ == "__main__":
    main()
