"""HR-NAS's progressive shrinking on CamVid (seed 001): a λ sweep, random sub-networks at equal FLOPs, Table 6.

    python benchmarks/hr_nas_shrinking.py [--penalties 2,5,10,20] [--seeds 2] [--epochs 10] [--steps 20]
        [--interval 2] [--data camvid|synthetic] [--config configs/hr_nas_camvid.yaml] [--out runs/hr_nas_shrinking]

Three measurements with the layout, data and budget of ``--config``'s sweep
section (every training the same number of steps of the same batch size):

1. **λ sweep** — one Ray Tune trial per (λ, seed): the ``shrinking``
   objective's own trainable (an epoch per report, ``run_training_trial``),
   ε = 0.001 (§4.1), removal every ``--interval`` epochs. Per run: the FLOPs
   of what is left after every epoch (``OUT/flops_per_epoch.png``) and, at
   the end, the found architecture's mIoU with the run's weights (BN
   recalibrated), FLOPs and params at 512×1024 (``OUT/front.png``).
2. **Random sub-networks at equal FLOPs** (Table 2's "Random Search" row):
   per run, a random architecture of the same space brought to at most the
   found one's FLOPs (a uniform sample, then random one-step reductions),
   trained from scratch for the same steps and scored the same way.
3. **Table 6 in miniature** — single-branch (every module cut to one
   branch at 1/4, its width chosen for the FLOPs of the next row, 3×3 only)
   → multi-branch (3×3 only) → +MixConv → +Transformer, each trained from
   scratch for the same steps, ``--seeds`` seeds each.

Trainings from scratch are Ray tasks of one CPU each; everything runs on the
local Ray (or ``RAY_ADDRESS``).
"""

from __future__ import annotations

import argparse
import os
import random
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import yaml


def random_at_flops(space, flops: float, resolution, classes: int, rng: random.Random) -> dict:
    """A uniform sample of ``space``, then random one-step reductions until its FLOPs are at most ``flops``."""
    arch = space.sample(rng)
    while space.cost(arch, resolution, classes)["flops"] > flops:
        reducible = [d for d in space.dimensions if d.index(arch[d.name]) > 0]
        d = rng.choice(reducible)
        arch[d.name] = d.choices[d.index(arch[d.name]) - 1]
    return arch


def single_branch(options: Mapping[str, Any], flops: float, resolution, classes: int) -> dict:
    """The layout of ``options`` with every module cut to one branch (the 1/4 one), its width chosen (a multiple
    of 8) so that its 3x3-only network costs about ``flops`` — Table 6's single-branch baseline."""
    from search_spaces import get_space

    modules = get_space("hr_nas", **options).layout.options()["modules"]

    def layout(width: int) -> dict:
        return {**options, "stem": [width, width], "modules": [[blocks[:1], [width]] for blocks, _ in modules]}

    def cost(width: int) -> float:
        space = get_space("hr_nas", **layout(width))
        return space.cost(space.arch_from_name("k3"), resolution, classes)["flops"]

    return layout(min(range(8, 513, 8), key=lambda width: abs(cost(width) - flops)))


def train_from_scratch(space_options: Mapping[str, Any], arch: Mapping[str, Any], settings: Mapping[str, Any],
                       lr: float, seed: int) -> dict:
    """A static network of ``arch`` trained with the shrinking runs' recipe (AdamW, poly decay, same steps),
    scored like them (BN recalibrated on the calibration images, mIoU on the validation images)."""
    import torch
    import torch.nn.functional as F

    from search_spaces import get_space
    from trainables.recalibration import evaluate_model, evaluation_batches, recalibrate_bn
    from trainables.searching import forever
    from trainables.shrinking import ShrinkingSettings
    from trainables.training import warmup_poly

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    cfg = ShrinkingSettings.load(settings)
    space = get_space("hr_nas", **space_options)
    train, calibration, val = cfg.data.build()
    model = space.build_model(arch, train.num_classes)
    decay = [p for p in model.parameters() if p.ndim > 1]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": [p for p in model.parameters() if p.ndim <= 1], "weight_decay": 0.0}],
                                  lr=lr)
    total = cfg.epochs * cfg.steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_poly(s, total, 0, 1.0, 0.9))
    batches = forever(torch.utils.data.DataLoader(train, batch_size=cfg.batch_size, shuffle=True, drop_last=True))
    started = time.process_time()
    model.train()
    for _ in range(total):
        image, label = next(batches)
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(image), label, ignore_index=train.ignore_index).backward()
        optimizer.step()
        scheduler.step()
    calibration_batches, val_batches = evaluation_batches(calibration, val, cfg.evaluation)
    recalibrate_bn(model, calibration_batches)
    miou = evaluate_model(model, val_batches, train.num_classes, train.ignore_index, "cpu").compute()["miou"]
    cost = space.cost(arch, tuple(cfg.resolution), train.num_classes)
    return {"miou": miou, **cost, "cpu_s": time.process_time() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--penalties", default="2,5,10,20")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--steps", type=int, default=20, help="steps per epoch")
    parser.add_argument("--interval", type=int, default=2, help="epochs between removals")
    parser.add_argument("--lr", type=float, default=4e-3)
    parser.add_argument("--data", default=None, help="camvid (default when ../shared/data/camvid exists) or synthetic")
    parser.add_argument("--config", default="configs/hr_nas_camvid.yaml")
    parser.add_argument("--out", default="runs/hr_nas_shrinking")
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import ray
    from ray import tune

    from raynas.cluster import connect
    from raynas.paths import shared_data_dir
    from search_spaces import get_space
    from trainables.shrinking import ShrinkingObjective, ShrinkingSettings

    sweep = yaml.safe_load(Path(args.config).read_text())["sweep"]
    fields = {k: sweep[k] for k in ("space_options", "data", "batch_size", "evaluation", "resolution") if k in sweep}
    fields |= {"epochs": args.epochs, "steps_per_epoch": args.steps}
    camvid = shared_data_dir() / "camvid"
    fields["data"] = ({**fields["data"], "root": str(camvid)} if (args.data or "camvid") == "camvid" and camvid.is_dir()
                      else {"dataset": "synthetic", "crop_size": 64})
    settings = ShrinkingSettings.load(fields)
    objective = ShrinkingObjective(settings)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    resolution, options = tuple(settings.resolution), settings.space_options
    connect(None)
    started = time.time()

    # 1. the λ sweep
    penalties = [float(p) for p in args.penalties.split(",")]
    space = {**objective.space.paper(), "interval": args.interval, "lr": args.lr,
             "penalty": tune.grid_search(penalties), "seed": tune.grid_search(list(range(args.seeds)))}
    trainable = tune.with_resources(tune.with_parameters(objective.trial_function(), objective=objective), {"CPU": 1})
    grid = tune.Tuner(trainable, param_space=space, tune_config=tune.TuneConfig(metric="miou", mode="max"),
                      run_config=tune.RunConfig(storage_path=str(out), name="tune", verbose=0)).fit()
    runs, paths = [], []
    for result in grid:
        history = result.metrics_dataframe.sort_values("epoch")
        last = history.iloc[-1]
        runs.append({"penalty": result.config["penalty"], "seed": result.config["seed"], "miou": last["miou"],
                     "gflops": last["flops"] / 1e9, "mparams": last["params"] / 1e6,
                     "units_left": last["units_left"], "epoch_s": history["epoch_s"].mean()})
        paths.append((result.config["penalty"], result.config["seed"], history["epoch"], history["flops"] / 1e9))
    runs = pd.DataFrame(runs).sort_values(["penalty", "seed"]).reset_index(drop=True)
    sweep_s = time.time() - started

    # 2. random sub-networks at the found FLOPs, and 3. the ablation: trained from scratch
    arch_space = get_space("hr_nas", **options)
    classes = objective.datasets()[3]
    recipe = settings.dump()
    scratch = ray.remote(num_cpus=1)(train_from_scratch)
    rng = random.Random(0)
    random_archs = [random_at_flops(arch_space, row.gflops * 1e9, resolution, classes, rng) for row in runs.itertuples()]
    single = single_branch(options, arch_space.cost(arch_space.arch_from_name("k3"), resolution, classes)["flops"],
                           resolution, classes)
    variants = [("single-branch (3x3)", single, get_space("hr_nas", **single).arch_from_name("k3")),
                ("multi-branch (3x3)", options, arch_space.arch_from_name("k3")),
                ("+MixConv", options, arch_space.arch_from_name("mixconv")),
                ("+Transformer", options, arch_space.max_arch())]
    futures = [scratch.remote(options, arch, recipe, args.lr, int(row.seed))
               for arch, row in zip(random_archs, runs.itertuples())]
    futures += [scratch.remote(opts, arch, recipe, args.lr, seed) for _, opts, arch in variants
                for seed in range(args.seeds)]
    done = ray.get(futures)
    ray.shutdown()
    randoms, ablation = done[:len(runs)], done[len(runs):]
    runs["random_miou"] = [r["miou"] for r in randoms]
    runs["random_gflops"] = [r["flops"] / 1e9 for r in randoms]

    print(f"data {settings.data.dataset}, {args.epochs} epochs x {args.steps} steps x {settings.batch_size} images, "
          f"removal every {args.interval} epochs, lr {args.lr}; FLOPs at {resolution[0]}x{resolution[1]}; "
          f"cpus {os.cpu_count()}, load {os.getloadavg()[0]:.1f}; wall {time.time() - started:.0f} s "
          f"(lambda sweep {sweep_s:.0f} s)")
    full = arch_space.cost(arch_space.max_arch(), resolution, classes)
    print(f"full supernet: {full['flops'] / 1e9:.3f} GMACs, {full['params'] / 1e6:.3f} M params\n")
    print(runs.to_string(index=False, float_format="{:.3f}".format))
    summary = runs.groupby("penalty").agg(miou=("miou", "mean"), miou_std=("miou", "std"), gflops=("gflops", "mean"),
                                          random_miou=("random_miou", "mean"),
                                          random_std=("random_miou", "std"))
    print("\nper lambda, mean over seeds:\n")
    print(summary.to_string(float_format="{:.3f}".format))
    print(f"\nall runs: shrinking {runs['miou'].mean():.3f} +- {runs['miou'].std():.3f} vs random at equal FLOPs "
          f"{runs['random_miou'].mean():.3f} +- {runs['random_miou'].std():.3f} "
          f"(paired difference {np.mean(runs['miou'] - runs['random_miou']):+.3f})")
    table6 = pd.DataFrame([{"variant": name, "seed": seed, "mparams": r["params"] / 1e6, "gflops": r["flops"] / 1e9,
                            "miou": r["miou"], "cpu_s": r["cpu_s"]}
                           for ((name, _, _), seed), r in zip([(v, s) for v in variants for s in range(args.seeds)],
                                                              ablation)])
    table6 = table6.groupby("variant", sort=False).agg(mparams=("mparams", "first"), gflops=("gflops", "first"),
                                                       miou=("miou", "mean"), miou_std=("miou", "std"),
                                                       cpu_s=("cpu_s", "mean")).reset_index()
    print(f"\nTable 6 in miniature (trained from scratch, same steps, mean over {args.seeds} seeds):\n")
    print(table6.to_string(index=False, float_format="{:.3f}".format))

    fig, ax = plt.subplots(figsize=(6, 4))
    for penalty, seed, epochs, gflops in paths:
        ax.plot(epochs, gflops, marker="o", markersize=3, label=f"lambda {penalty:g}, seed {seed}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("GMACs at 512x1024")
    ax.set_yscale("log")
    ax.legend(fontsize="x-small")
    fig.savefig(out / "flops_per_epoch.png", dpi=120, bbox_inches="tight")
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(runs["gflops"], runs["miou"], label="progressive shrinking")
    ax.scatter(runs["random_gflops"], runs["random_miou"], marker="x", label="random, equal FLOPs, from scratch")
    ax.set_xlabel("GMACs at 512x1024")
    ax.set_ylabel("val mIoU")
    ax.legend(fontsize="small")
    fig.savefig(out / "front.png", dpi=120, bbox_inches="tight")
    runs.to_csv(out / "runs.csv", index=False)
    table6.to_csv(out / "table6.csv", index=False)


if __name__ == "__main__":
    main()
