"""SSR against no regulariser and the entropy loss (seed 004, Tables 13-14, Fig. 8) on CamVid, as Tune trials.

    python benchmarks/ssr_regularizers.py [--regularizers ssr,none,entropy] [--seeds 3] [--epochs 10]
        [--steps 10] [--arch-lr 0.03] [--weight-lr 0.003] [--out runs/ssr_regularizers]

One Ray Tune trial per (regulariser, seed): the ``ssr`` objective's own
trainable (``run_training_trial``, an epoch per report) with the paper's
hyperparameters (ρ 0.15 / 0.3 / 0.3, h 0.1) except the learning rates, the
same for every regulariser (the paper's 0.002 barely moves the architecture
in a few hundred CPU steps). Per regulariser, mean ± std over seeds: the
epoch each run reached a discrete architecture (total entropy 0), the
discretisation gap at the end (relaxed supernet's val mIoU minus its
discretised architecture's, same weights), the found architecture's mIoU,
FLOPs and params; then the mean entropy per epoch, and
``OUT/entropy_curves.png``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pandas as pd

from raynas.paths import shared_data_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regularizers", default="ssr,none,entropy")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--steps", type=int, default=10, help="steps per epoch (an architecture and a weight step)")
    parser.add_argument("--arch-lr", type=float, default=0.03)
    parser.add_argument("--weight-lr", type=float, default=0.003)
    parser.add_argument("--data", default=None, help="dataset: camvid (default when ../shared/data/camvid exists)")
    parser.add_argument("--out", default="runs/ssr_regularizers")
    args = parser.parse_args()

    import ray
    from ray import tune

    from analysis.plots import epochs_figure, searcher_colours, to_png
    from raynas.cluster import connect
    from trainables.ssr_search import SSRObjective, SSRSettings

    camvid = shared_data_dir() / "camvid"
    data = ({"dataset": "camvid", "root": str(camvid), "base_size": 72, "cache": True, "crop_size": [64, 64],
             "scale_range": [0.75, 1.25]} if (args.data or "camvid") == "camvid" and camvid.is_dir()
            else {"dataset": "synthetic", "crop_size": 64})
    settings = SSRSettings.load({"data": data, "epochs": args.epochs, "steps_per_epoch": args.steps})
    objective = SSRObjective(settings)
    space = {**objective.space.paper(), "arch_lr": args.arch_lr, "weight_lr": args.weight_lr,
             "regularizer": tune.grid_search(args.regularizers.split(",")),
             "seed": tune.grid_search(list(range(args.seeds)))}
    out = Path(args.out).resolve()
    connect(None)
    trainable = tune.with_resources(tune.with_parameters(objective.trial_function(), objective=objective), {"CPU": 1})
    tuner = tune.Tuner(trainable, param_space=space,
                       tune_config=tune.TuneConfig(metric="miou", mode="max"),
                       run_config=tune.RunConfig(storage_path=str(out), name="tune", verbose=0))
    grid = tuner.fit()
    ray.shutdown()

    rows, epochs = [], []
    for result in grid:
        history = result.metrics_dataframe
        reg, seed = result.config["regularizer"], result.config["seed"]
        discrete = history.loc[history["entropy"] <= 1e-9, "epoch"]
        last = history.iloc[-1]
        rows.append({"regularizer": reg, "seed": seed, "discrete_epoch": discrete.min() if len(discrete) else np.nan,
                     "entropy": last["entropy"], "gap": last["discretization_gap"], "miou": last["miou"],
                     "relaxed_miou": last["relaxed_miou"], "gflops": last["flops"] / 1e9,
                     "mparams": last["params"] / 1e6, "epoch_s": history["epoch_s"].mean()})
        epochs.append(history.assign(trial_id=result.path, searcher=reg)[["trial_id", "searcher", "epoch", "entropy"]])
    runs = pd.DataFrame(rows)
    print(f"CamVid ({data['dataset']}), {args.epochs} epochs x {args.steps} steps, arch_lr {args.arch_lr}, "
          f"weight_lr {args.weight_lr}, {args.seeds} seeds; cpus {os.cpu_count()}, load {os.getloadavg()[0]:.1f}")
    print("| regulariser | discrete at epoch (runs that got there) | entropy at end | gap (relaxed - discrete) "
          "| found mIoU | GMACs at 360x480 | params M | s per epoch |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for reg, group in runs.groupby("regularizer", sort=False):
        reached = group["discrete_epoch"].dropna()
        when = (f"{reached.mean():.1f} ± {reached.std(ddof=0):.1f} ({len(reached)}/{len(group)})" if len(reached)
                else f"not within {args.epochs} (0/{len(group)})")
        cell = lambda c: f"{group[c].mean():.3f} ± {group[c].std(ddof=0):.3f}"  # noqa: E731
        print(f"| {reg} | {when} | {cell('entropy')} | {cell('gap')} | {cell('miou')} | {cell('gflops')} | "
              f"{cell('mparams')} | {group['epoch_s'].mean():.0f} |")
    curves = pd.concat(epochs, ignore_index=True)
    table = curves.groupby(["searcher", "epoch"])["entropy"].mean().unstack("epoch")
    print("\nmean total entropy per epoch:")
    print(table.round(2).to_string())
    figure = epochs_figure(curves, "entropy", dict(zip(curves["trial_id"], curves["searcher"])),
                           searcher_colours(curves["searcher"].unique()), "total architecture entropy per epoch")
    (out / "entropy_curves.png").write_bytes(to_png(figure))
    runs.to_csv(out / "runs.csv", index=False)
    print(f"\n{out / 'entropy_curves.png'}, {out / 'runs.csv'}")


if __name__ == "__main__":
    main()
