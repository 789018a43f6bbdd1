"""The reference without Ray Tune: a searcher driven by a plain Python loop (Tune's protocol, no Tune).

Same searcher objects, same objective lookups, up to ``concurrency`` proposals in
flight completed oldest first (as Tune with ``max_concurrent_trials``). Used by
``tune_overhead.py`` (time per trial) and ``searchers_nb201.py --engine loop``.
"""

from __future__ import annotations

import time

import pandas as pd
from ray.tune.search import Searcher

from raynas.config import SweepConfig
from raynas.searchers import FEASIBLE_KEY, make_searcher
from raynas.sweep import constraint_of
from search_spaces.nb201 import TabularBenchmark
from trainables import Objective


def run_loop(objective: Objective, config: SweepConfig, searcher: str, seed: int) -> tuple[pd.DataFrame, dict]:
    """Tidy rows (as ``analysis.results``) of one run, and the seconds spent in searcher and evaluation."""
    bench = TabularBenchmark(config.table, config.accuracy_column, config.latency_column)
    s = make_searcher(searcher, objective.space, constraint_of(config), objective.metric, objective.mode, seed,
                      config.budget, objective.cost, **config.searcher_options.get(searcher, {}))
    s.set_search_properties(None, None, objective.space.to_tune())
    live, rows, count, finished = [], [], 0, False
    spent = {"searcher_s": 0.0, "evaluation_s": 0.0}
    start = time.perf_counter()
    while True:
        t = time.perf_counter()
        while not finished and len(live) < config.max_concurrent_trials:
            count += 1
            proposal = s.suggest(f"t{count}")
            if proposal == Searcher.FINISHED:
                finished = True
            elif proposal is None:
                break
            else:
                live.append((f"t{count}", proposal))
        spent["searcher_s"] += time.perf_counter() - t
        if not live:
            break
        trial_id, proposal = live.pop(0)
        t = time.perf_counter()
        arch = objective.space.from_config(proposal)
        result = bench.lookup(arch)
        if not proposal[FEASIBLE_KEY]:
            result["accuracy"] = objective.penalty
        spent["evaluation_s"] += time.perf_counter() - t
        t = time.perf_counter()
        s.on_trial_complete(trial_id, result)
        spent["searcher_s"] += time.perf_counter() - t
        rows.append({"searcher": searcher, "seed": seed, "order": len(rows) + 1, "trial_id": trial_id,
                     "arch_id": objective.space.arch_id(arch), **{f"config/{k}": v for k, v in arch.items()},
                     **result, "feasible": bool(proposal[FEASIBLE_KEY]),
                     "wall_time_s": time.perf_counter() - start})
    spent["total_s"] = time.perf_counter() - start
    return pd.DataFrame(rows), spent
