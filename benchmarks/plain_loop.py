"""A sweep without Ray Tune: the sweep's own searcher, driven by a plain Python loop.

The same ``SweepPlan`` and ``SweepSearcher`` a Tune sweep uses (every run
multiplexed, budgets, constraint, answered proposals), Tune's protocol
without Tune: proposals taken while the runs allow them (``slots`` in
flight at most, if given), completed oldest first, evaluated in this
process. For tabular benchmarks this gives many seeds and tasks in minutes:
``searchers_nb201.py --engine loop`` and ``tune_overhead.py`` use it.
"""

from __future__ import annotations

import time
from collections import deque

import pandas as pd
from ray.tune.search import Searcher

from analysis.results import tidy
from raynas.config import SweepConfig
from raynas.sweep import SweepPlan


def run_loop(config: SweepConfig, slots: int | None = None) -> tuple[pd.DataFrame, dict, dict]:
    """``(tidy trials, sweep settings, seconds spent)`` of ``config`` run in this process."""
    plan = SweepPlan(config)
    plan.preflight()
    searcher = plan.searcher()
    searcher.folder = None  # no journal: nothing to resume
    live: deque = deque()
    rows, count, finished = [], 0, False
    spent = {"searcher_s": 0.0, "evaluation_s": 0.0}
    start = time.perf_counter()
    while True:
        t = time.perf_counter()
        while not finished and (slots is None or len(live) < slots):
            count += 1
            proposal = searcher.suggest(f"t{count}")
            if proposal == Searcher.FINISHED:
                finished = True
            elif proposal is None:
                break
            else:
                live.append((f"t{count}", proposal))
        spent["searcher_s"] += time.perf_counter() - t
        if not live:
            break
        trial_id, proposal = live.popleft()
        t = time.perf_counter()
        metrics = plan.objective.evaluate(proposal)
        spent["evaluation_s"] += time.perf_counter() - t
        result = {**metrics, "feasible": True, "finished_at": time.time()}
        t = time.perf_counter()
        searcher.on_trial_complete(trial_id, result)
        spent["searcher_s"] += time.perf_counter() - t
        rows.append({**metrics, "searcher": proposal["searcher"], "seed": proposal["seed"], "trial_id": trial_id,
                     "arch": plan.objective.arch(proposal), "feasible": True, "repeat": False,
                     "finished_at": result["finished_at"]})
    spent["total_s"] = time.perf_counter() - start
    rows += [{**row, "trial_id": ""} for run in searcher.runs.values() for row in run.record.answered]
    settings = plan.settings
    return tidy(rows, settings["dimensions"], searcher.started), settings, spent
