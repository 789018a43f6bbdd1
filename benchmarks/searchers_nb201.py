"""Searchers compared on NAS-Bench-201: regret after 25/50/100/200 feasible evaluations, per task.

    python benchmarks/searchers_nb201.py --out runs/nb201 [--seeds 20] [--budget 200]
    python benchmarks/searchers_nb201.py --engine loop --seeds 100     # the same sweep searcher, no Ray Tune
    python benchmarks/searchers_nb201.py --engine loop --task unconstrained --task "lat_gold_6226_ms<=8"
    python benchmarks/searchers_nb201.py --engine loop --searchers cds_pareto,optuna,random --trade-off latency_ms

A task is ``unconstrained`` or ``COLUMN<=LIMIT`` (a latency column of the
table). ``--engine tune`` (default) runs one ``raynas sweep`` per task into
``OUT/<task>`` (``--resume`` continues one); ``--engine loop`` drives the
same sweep searcher in a plain Python loop (``plain_loop.py``): many seeds
and tasks quickly, and ``--variant LABEL=SEARCHER:JSON`` adds a searcher
with other options under its own name (e.g. the previous CDS default:
``--variant 'cds_previous=cds:{"sampler": "neighbourhood", "restart": "random"}'``),
compared paired by seed with the others. ``--json FILE`` writes every
``compare`` result.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import pandas as pd
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


def parse_variant(text: str) -> tuple[str, str, dict]:
    """``LABEL=SEARCHER:JSON`` -> (label, searcher name, options)."""
    label, _, rest = text.partition("=")
    name, _, options = rest.partition(":")
    if not label or not name:
        raise SystemExit(f"--variant {text!r}: expected LABEL=SEARCHER:JSON, e.g. 'cds_uniform10=cds:{{}}'")
    return label, name, json.loads(options or "{}")


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
    parser.add_argument("--variant", action="append", default=[], help="LABEL=SEARCHER:JSON options (loop engine)")
    parser.add_argument("--json", help="write every task's compare result here")
    parser.add_argument("--trade-off", dest="trade_off", default=None,
                        help="multi-objective: also minimise this cost (e.g. latency_ms); compare adds hypervolume")
    args = parser.parse_args()
    variants = [parse_variant(text) for text in args.variant]
    if variants and args.engine != "loop":
        raise SystemExit("--variant: only with --engine loop")

    results = {}
    for task in args.task or DEFAULT_TASKS:
        config = SweepConfig.load({
            "table": args.table, "accuracy_column": args.accuracy_column, **task_fields(task),
            "searchers": args.searchers, "budget": args.budget, "seeds": args.seeds,
            "max_concurrent_trials": args.concurrency, "searcher_options": args.searcher_options,
            "trade_off": args.trade_off, "out": str(Path(args.out) / task.replace("<=", "_le_")),
        })
        started = time.time()
        if args.engine == "tune":
            from analysis.results import load_results
            from raynas.sweep import run_sweep

            trials, settings = load_results(run_sweep(config, resume=args.resume))
        else:
            trials, settings, _ = run_loop(config)
            for label, name, options in variants:
                extra, _, _ = run_loop(config.updated({"searchers": [name], "searcher_options": {name: options}}))
                trials = pd.concat([trials, extra.assign(searcher=label)], ignore_index=True)
                settings["searchers"].append(label)
            # the loop runs one run after another: a wall-clock comparison between searchers means nothing here
            trials = trials.drop(columns="wall_time_s", errors="ignore")
        results[task] = compare(trials, settings)
        print(f"\n== {task} ({args.engine}, {args.seeds} seeds, max_concurrent_trials {args.concurrency}, "
              f"{time.time() - started:.0f} s)")
        print(format_table(results[task]))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
