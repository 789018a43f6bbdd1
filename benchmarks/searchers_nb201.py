"""Searchers compared on NAS-Bench-201: regret after 25/50/100/200 feasible evaluations, per task.

    python benchmarks/searchers_nb201.py --out runs/nb201 [--seeds 20] [--budget 200]
    python benchmarks/searchers_nb201.py --engine loop --seeds 100     # the same sweep searcher, no Ray Tune
    python benchmarks/searchers_nb201.py --engine loop --task unconstrained --task "lat_gold_6226_ms<=8"

A task is ``unconstrained`` or ``COLUMN<=LIMIT`` (a latency column of the
table). ``--engine tune`` (default) runs one ``raynas sweep`` per task into
``OUT/<task>`` (``--resume`` continues one); ``--engine loop`` drives the
same sweep searcher in a plain Python loop (``plain_loop.py``): many seeds
and tasks quickly. ``--json FILE`` writes every ``compare`` result.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

from plain_loop import run_loop

from analysis.regret import compare, format_table
from raynas.config import SweepConfig
from raynas.paths import shared_data_dir

SEARCHERS = ["cds", "cds_uniform", "evolution", "optuna", "nevergrad", "random"]
DEFAULT_TASKS = ["unconstrained", "lat_raspi4_ms<=20"]


def task_fields(task: str) -> dict:
    """The sweep fields of a task: its latency column and limit."""
    if task == "unconstrained":
        return {"latency_column": "lat_raspi4_ms", "max_latency": None}
    match = re.fullmatch(r"(\w+)<=([0-9.]+)", task)
    if not match:
        raise SystemExit(f"--task {task!r}: expected 'unconstrained' or COLUMN<=LIMIT, e.g. lat_raspi4_ms<=20")
    return {"latency_column": match.group(1), "max_latency": float(match.group(2))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", default=str(shared_data_dir() / "nb201" / "nb201_cifar10.parquet"))
    parser.add_argument("--accuracy-column", default="cifar10_test_acc")
    parser.add_argument("--engine", choices=["tune", "loop"], default="tune")
    parser.add_argument("--searchers", default=",".join(SEARCHERS))
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--budget", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=2, help="max_concurrent_trials per run")
    parser.add_argument("--task", action="append", help=f"default: {DEFAULT_TASKS}")
    parser.add_argument("--searcher-options", type=json.loads, default={})
    parser.add_argument("--out", default="runs/nb201_searchers")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--json", help="write every task's compare result here")
    args = parser.parse_args()

    results = {}
    for task in args.task or DEFAULT_TASKS:
        config = SweepConfig.load({
            "table": args.table, "accuracy_column": args.accuracy_column, **task_fields(task),
            "searchers": args.searchers, "budget": args.budget, "seeds": args.seeds,
            "max_concurrent_trials": args.concurrency, "searcher_options": args.searcher_options,
            "out": str(Path(args.out) / task.replace("<=", "_le_")),
        })
        started = time.time()
        if args.engine == "tune":
            from analysis.results import load_results
            from raynas.sweep import run_sweep

            trials, settings = load_results(run_sweep(config, resume=args.resume))
        else:
            trials, settings, _ = run_loop(config)
        results[task] = compare(trials, settings)
        print(f"\n== {task} ({args.engine}, {args.seeds} seeds, max_concurrent_trials {args.concurrency}, "
              f"{time.time() - started:.0f} s)")
        print(format_table(results[task]))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
