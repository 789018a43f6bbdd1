"""Seed 000's claim in miniature: the best sub-network CDS finds under TopFormer-T's FLOPs against TopFormer-T.

    python benchmarks/paper_claim.py SUPERNET [--budget 30] [--seeds 6] [--epochs 4] [--steps 40] [--lr 5e-4]
        [--finetune-size 192 256] [--reference topformer-t] [--val-images 32] [--out runs/paper_claim]

``SUPERNET``: a trained ``efficient_topformer`` supernet (a checkpoint folder
or a training run, e.g. ``runs/demo/supernet`` after ``make demo``).

1. The architecture of the space nearest to ``--reference``
   (``arch_from_name``; FLOPs at 512² counted like the sweeps).
2. A CDS sweep over the supernet (inherited weights, BN recalibrated, mIoU
   on ``--val-images`` validation images) with ``max_flops`` = that
   architecture's FLOPs and ``--budget`` feasible evaluations; its cost is
   the trials' evaluation CPU-seconds (one CPU each).
3. Both architectures fine-tuned from the same supernet with the same recipe
   (``finetune``: Ray Train, 2 workers × 4 images, distilled from the max
   sub-network, ``--epochs`` × ``--steps`` at ``--lr`` with 10 warm-up steps, at
   ``--finetune-size``: the demo's recipe for the model it ships) for each of
   ``--seeds`` seeds, then scored on all validation images at that size:
   mean ± std mIoU of both, the paired difference and
   the p-value of the paired sign-flip test (``analysis.regret``; 6 seeds or
   more can reach p < 0.05).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np


def sample_std(values: np.ndarray) -> float:
    """The sample standard deviation; nan for one seed (no spread to estimate), without numpy's warnings."""
    return float(values.std(ddof=1)) if len(values) > 1 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("supernet")
    parser.add_argument("--budget", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--finetune-size", type=int, nargs=2, default=[192, 256], metavar=("H", "W"),
                        help="fine-tuning and scoring resolution (the demo ships its model at 192×256)")
    parser.add_argument("--reference", default="topformer-t")
    parser.add_argument("--val-images", type=int, default=32, help="validation images scoring a sweep trial")
    parser.add_argument("--out", default="runs/paper_claim")
    args = parser.parse_args()

    from analysis.results import load_results
    from raynas.cluster import connect
    from raynas.config import SweepConfig
    from raynas.latency.onnx_timing import LatencySettings
    from raynas.progress import Progress
    from raynas.sweep import run_sweep
    from raynas.training_config import DataSection
    from search_spaces import get_space
    from trainables.checkpoints import checkpoint_dir, read_meta
    from analysis.regret import sign_flip_p
    from trainables.finetune import METRICS, FinetuneSettings, export, make_job, train_one

    checkpoint = checkpoint_dir(args.supernet)
    meta = read_meta(checkpoint)
    space = get_space(meta["space"], **meta["space_options"])
    classes = meta["num_classes"]
    reference = space.arch_from_name(args.reference)
    budget_flops = space.cost(reference, 512, classes)["flops"]
    out = Path(args.out).resolve()
    progress = Progress(prefix="paper_claim: ")
    connect(None)
    started = time.time()

    sweep = SweepConfig.load({"benchmark": "supernet", "supernet": str(checkpoint), "searchers": ["cds"],
                              "budget": args.budget, "seeds": 1, "max_flops": budget_flops, "max_concurrent_trials": 2,
                              "evaluation": {"calibration_images": 32, "val_images": args.val_images,
                                             "resolution": 512}, "out": str(out / "sweep")})
    trials, settings = load_results(run_sweep(sweep, resume=(out / "sweep").exists(), progress=progress))
    rows = trials[trials["feasible"] & ~trials["repeat"]]
    best = rows.sort_values("miou").iloc[-1]
    found = space.validate({d: best[f"config/{d}"] for d in settings["dimensions"]})
    search_cpu_s = float(rows["eval_s"].sum())
    sweep_s = time.time() - started

    finetune = FinetuneSettings.load({"recipe": {"epochs": args.epochs, "steps_per_epoch": args.steps,
                                                 "batch_size": 4, "lr": args.lr, "warmup_steps": 10,
                                                 "distill": True},
                                      "scaling": {"num_workers": 2, "resources_per_worker": {"CPU": 1}},
                                      "evaluation": {"calibration_images": 32, "val_images": None}})
    height, width = args.finetune_size
    data = DataSection.load(meta["config"]["data"]).updated({"base_size": height, "crop_size": [height, width]})
    results: dict[str, list[float]] = {}
    for name, arch in ((args.reference, reference), ("cds", found)):
        for seed in range(args.seeds):
            folder = out / "models" / f"{name}_seed{seed}"
            if (folder / METRICS).is_file():  # measured by an earlier run of this command
                metrics = json.loads((folder / METRICS).read_text())
            else:
                recipe = finetune.recipe.updated({"seed": seed}, "finetune.recipe")
                job = make_job(arch, str(checkpoint), data, recipe, finetune.evaluation)
                trained = train_one(job, finetune, folder, progress)
                metrics = export(trained, folder, 512, LatencySettings(resolution=256, threads=1, repeats=5))
            results.setdefault(name, []).append(metrics["val_miou"])
            progress.line(f"{name} seed {seed}: val mIoU {metrics['val_miou']:.4f} "
                          f"(inherited {metrics['inherited_miou']:.4f})")

    ref_cost, found_cost = space.cost(reference, 512, classes), space.cost(found, 512, classes)
    print(f"\nsupernet {checkpoint} (epoch {meta['epoch']}); cpus {os.cpu_count()}, load {os.getloadavg()[0]:.1f}; "
          f"wall {time.time() - started:.0f} s (sweep {sweep_s:.0f} s)")
    print(f"CDS: {len(rows)} feasible sub-networks under {budget_flops / 1e9:.3f} GMACs at 512^2, "
          f"{search_cpu_s:.0f} CPU-s of evaluation; best inherited mIoU {best['miou']:.4f}")
    for name, cost in ((args.reference, ref_cost), ("cds", found_cost)):
        values = np.array(results[name])
        print(f"{name:>12}: {cost['flops'] / 1e9:.3f} GMACs, {cost['params'] / 1e6:.3f} M params; fine-tuned val mIoU "
              f"{values.mean():.4f} +- {sample_std(values):.4f} over {len(values)} seeds "
              f"{np.round(values, 4).tolist()}")
    diff = np.array(results["cds"]) - np.array(results[args.reference])
    print(f"paired difference (cds - {args.reference}): {diff.mean():+.4f} +- {sample_std(diff):.4f} "
          f"{np.round(diff, 4).tolist()}; sign-flip test p = {sign_flip_p(diff):.3f}")


if __name__ == "__main__":
    main()
