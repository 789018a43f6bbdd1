"""Regret of each searcher after 25/50/100/200 feasible evaluations (``raynas compare``).

regret(k) = optimum − best feasible metric among a run's first k feasible
evaluations (completion order); for ``mode="min"`` the sign flips. The
optimum of a tabular benchmark is its best feasible entry under the sweep's
constraint; for other objectives, the best feasible result of the whole sweep.
hit_rate(k) = share of seeds whose best after k equals the optimum. Only runs
with at least k feasible evaluations count at budget k (``seeds`` says how many).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.curves import best_so_far
from raynas.errors import UserError

BUDGETS = (25, 50, 100, 200)


def optimum(settings: dict, trials: pd.DataFrame) -> tuple[float, str]:
    """The reference best value and where it comes from (``"table"`` or ``"sweep"``)."""
    metric, sign = settings["metric"], 1.0 if settings["mode"] == "max" else -1.0
    if settings.get("benchmark") == "nb201":
        from search_spaces.nb201 import TabularBenchmark

        bench = TabularBenchmark(settings["table"], settings["accuracy_column"], settings["latency_column"])
        constraint = settings["constraint"]
        values = [row[metric] for _, row in bench.rows()
                  if constraint is None or row[constraint["metric"]] <= constraint["limit"]]
        return sign * max(sign * v for v in values), "table"
    feasible = trials.loc[trials["feasible"], metric]
    if feasible.empty:
        raise UserError("no feasible trial in the sweep: nothing to compare")
    return float(feasible.max() if sign > 0 else feasible.min()), "sweep"


def compare(trials: pd.DataFrame, settings: dict) -> dict:
    """``{"optimum", "optimum_source", "searchers": {name: {"25": {mean_regret, median_regret, hit_rate}}}}``."""
    metric, mode = settings["metric"], settings["mode"]
    best_value, source = optimum(settings, trials)
    curves = best_so_far(trials, metric, mode, optimum=best_value)
    out = {"optimum": best_value, "optimum_source": source, "metric": metric,
           "constraint": settings["constraint"], "searchers": {}}
    for k in [k for k in BUDGETS if k <= settings["budget"]]:
        at_k = curves[curves["evaluations"] == k]  # the runs that reached k feasible evaluations
        at_k = at_k.assign(regret=at_k["regret"].clip(lower=0.0),
                           hit=np.isclose(at_k["best"], best_value, rtol=0, atol=1e-9))
        for name, group in at_k.groupby("searcher", sort=False):
            out["searchers"].setdefault(name, {})[str(k)] = {
                "mean_regret": float(group["regret"].mean()),
                "median_regret": float(group["regret"].median()),
                "hit_rate": float(group["hit"].mean()),
                "seeds": int(len(group)),
            }
    order = [s for s in settings["searchers"] if s in out["searchers"]]
    out["searchers"] = {s: out["searchers"][s] for s in order}
    return out


def format_table(result: dict) -> str:
    """A readable table: one line per searcher, mean regret (hit rate) per budget."""
    budgets = sorted({k for per in result["searchers"].values() for k in per}, key=int)
    constraint = result["constraint"]
    lines = [f"optimum {result['metric']} = {result['optimum']:.3f} ({result['optimum_source']}"
             + (f", {constraint['metric']} <= {constraint['limit']})" if constraint else ", unconstrained)"),
             "mean regret (median, hit rate) after N feasible evaluations:",
             f"{'searcher':<12}{'seeds':>6}" + "".join(f"{'N=' + k:>24}" for k in budgets)]
    for name, per in result["searchers"].items():
        cells = []
        for k in budgets:
            r = per.get(k)
            cells.append(f"{r['mean_regret']:.3f} ({r['median_regret']:.3f}, {r['hit_rate']:.0%})" if r else "-")
        seeds = max((r["seeds"] for r in per.values()), default=0)
        lines.append(f"{name:<12}{seeds:>6}" + "".join(f"{c:>24}" for c in cells))
    return "\n".join(lines)
