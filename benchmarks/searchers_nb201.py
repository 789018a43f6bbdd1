"""Searchers compared on NAS-Bench-201 CIFAR-10: mean regret after 25/50/100/200 feasible evaluations.

    python benchmarks/searchers_nb201.py --out runs/nb201 [--seeds 20] [--budget 200]
    python benchmarks/searchers_nb201.py --engine loop --seeds 100     # same searchers, no Ray Tune

``--engine tune`` (default) runs ``raynas sweep`` twice (unconstrained and
``lat_raspi4_ms <= 20``) into ``OUT/unconstrained`` and ``OUT/lat20``; an
interrupted run continues with ``--resume``; ``raynas compare`` reads them.
``--engine loop`` drives the same searcher objects in a plain Python loop
(``plain_loop.py``) as a fast cross-check with many seeds.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
from plain_loop import run_loop

from analysis.regret import compare, format_table
from raynas.config import SweepConfig, build
from raynas.paths import shared_data_dir
from raynas.sweep import run_sweep, sweep_settings
from trainables import make_objective

SEARCHERS = ["cds", "cds_uniform", "evolution", "optuna", "nevergrad", "random"]
SETTINGS = {"unconstrained": None, "lat20": 20.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", default=str(shared_data_dir() / "nb201" / "nb201_cifar10.parquet"))
    parser.add_argument("--engine", choices=["tune", "loop"], default="tune")
    parser.add_argument("--searchers", default=",".join(SEARCHERS))
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--budget", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=2, help="max_concurrent_trials per run")
    parser.add_argument("--setting", choices=list(SETTINGS), action="append", help="default: both")
    parser.add_argument("--out", default="runs/nb201_searchers")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()

    for name in args.setting or list(SETTINGS):
        config = build(SweepConfig, {
            "table": args.table, "accuracy_column": "cifar10_test_acc", "latency_column": "lat_raspi4_ms",
            "max_latency": SETTINGS[name], "searchers": args.searchers, "budget": args.budget,
            "seeds": args.seeds, "max_concurrent_trials": args.concurrency, "out": str(Path(args.out) / name),
        }, "sweep")
        if args.engine == "tune":
            from analysis.results import load_results

            trials, settings = load_results(run_sweep(config, resume=args.resume))
        else:
            objective = make_objective("nb201", **config.objective_options())
            settings = sweep_settings(config, objective)
            trials = pd.concat([run_loop(objective, config, s, k)[0]
                                for s in config.searchers for k in range(config.seeds)], ignore_index=True)
        print(f"\n== {name} ({args.engine}, {args.seeds} seeds, max_concurrent_trials {args.concurrency})")
        print(format_table(compare(trials, settings)))


if __name__ == "__main__":
    main()
