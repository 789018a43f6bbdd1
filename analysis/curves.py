"""Best-so-far curves with their spread over seeds, regret, and the searchers' ranking table.

The x axis of every curve is the number of *feasible* evaluations (a sweep's
budget counts feasible architectures evaluated); infeasible proposals and
repeats are counted separately (:func:`proposal_counts`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.pareto import MODES, check_columns, feasible_rows, is_evaluation, is_feasible
from raynas.errors import check_choice

REQUIRED_COLUMNS = ("searcher", "seed", "order")


def evaluations_of(df: pd.DataFrame, metric: str | None = None) -> pd.DataFrame:
    """The rows a budget counts (feasible, not repeats; with a finite ``metric``), in completion order per run."""
    check_columns(df, (*REQUIRED_COLUMNS, *([metric] if metric else [])))
    return feasible_rows(df, [metric] if metric else []).sort_values(["searcher", "seed", "order"], kind="stable")


def regret(best, optimum: float, mode: str):
    """How far ``best`` is from ``optimum`` (≥ 0 when the optimum is the true best)."""
    return optimum - best if check_choice("mode", mode, MODES) == "max" else best - optimum


def best_so_far(df: pd.DataFrame, metric: str, mode: str, optimum: float | None = None) -> pd.DataFrame:
    """One row per (searcher, seed, feasible evaluation): columns ``searcher, seed,
    evaluations`` (1-based count of feasible evaluations), ``best`` (best ``metric``
    so far), ``wall_time_s`` where the trials have it, and ``regret`` when ``optimum`` is given."""
    rows = evaluations_of(df, metric)
    groups = rows.groupby(["searcher", "seed"], sort=True)[metric]
    cumulative = groups.cummax() if check_choice("mode", mode, MODES) == "max" else groups.cummin()
    curves = pd.DataFrame(
        {
            "searcher": rows["searcher"].to_numpy(),
            "seed": rows["seed"].to_numpy(),
            "evaluations": groups.cumcount().to_numpy() + 1,
            "best": cumulative.to_numpy(dtype=float),
        }
    )
    if "wall_time_s" in rows:
        curves["wall_time_s"] = rows["wall_time_s"].to_numpy(dtype=float)
    if optimum is not None:
        curves["regret"] = regret(curves["best"], optimum, mode)
    return curves


def summarise_curves(curves: pd.DataFrame, value: str = "best") -> pd.DataFrame:
    """Spread of ``value`` over seeds per (searcher, evaluations): columns ``seeds, mean,
    median, q25, q75, min, max``. Seeds that stopped early count only up to their length."""
    check_columns(curves, ("searcher", "evaluations", value))
    grouped = curves.groupby(["searcher", "evaluations"], sort=True)[value]
    summary = grouped.agg(seeds="count", mean="mean", median="median", min="min", max="max")
    summary["q25"] = grouped.quantile(0.25)
    summary["q75"] = grouped.quantile(0.75)
    return summary[["seeds", "mean", "median", "q25", "q75", "min", "max"]].reset_index()


def proposal_counts(df: pd.DataFrame) -> pd.DataFrame:
    """Per searcher: ``seeds, proposals, evaluated, infeasible, repeats`` (all seeds together).

    ``evaluated`` are the proposals the budget counts; infeasible ones broke the
    constraint and repeats named an architecture the run had evaluated already
    (both answered without an evaluation).
    """
    check_columns(df, REQUIRED_COLUMNS)
    counts = (
        df.assign(_evaluated=is_evaluation(df), _infeasible=~is_feasible(df))
        .groupby("searcher", sort=True)
        .agg(seeds=("seed", "nunique"), proposals=("seed", "size"), evaluated=("_evaluated", "sum"),
             infeasible=("_infeasible", "sum"))
    )
    counts["repeats"] = counts["proposals"] - counts["evaluated"] - counts["infeasible"]
    return counts.reset_index()


def final_best(df: pd.DataFrame, metric: str, mode: str) -> pd.DataFrame:
    """Best feasible ``metric`` of every (searcher, seed) in ``df``; NaN where none was feasible."""
    check_columns(df, (*REQUIRED_COLUMNS, metric))
    rows = evaluations_of(df, metric)
    reduce = "max" if check_choice("mode", mode, MODES) == "max" else "min"
    best = rows.groupby(["searcher", "seed"])[metric].agg(reduce)
    runs = df[["searcher", "seed"]].drop_duplicates().set_index(["searcher", "seed"]).sort_index()
    return runs.join(best.rename("best").astype(float)).reset_index()


def ranking_table(
    df: pd.DataFrame,
    metric: str,
    mode: str,
    hypervolumes: pd.DataFrame | None = None,
    optimum: float | None = None,
) -> pd.DataFrame:
    """One row per searcher, best mean rank first.

    Columns: ``seeds``, ``final_best_mean/std`` (best feasible ``metric`` per seed),
    ``final_regret_mean`` when ``optimum`` is known, ``hypervolume_mean/std`` when
    ``hypervolumes`` (from :func:`analysis.pareto.hypervolume_table`) is given,
    ``mean_rank`` (per seed, searchers are ranked 1 = best by final best, ties
    share the average rank, a run with nothing feasible ranks last), and
    ``proposals``/``infeasible``/``repeats`` from :func:`proposal_counts`.
    """
    finals = final_best(df, metric, mode)
    worst = -np.inf if mode == "max" else np.inf
    finals["rank"] = finals.fillna({"best": worst}).groupby("seed")["best"].rank(
        ascending=(mode == "min"), method="average"
    )
    grouped = finals.groupby("searcher", sort=True)
    table = pd.DataFrame(
        {
            "seeds": grouped["seed"].nunique(),
            "final_best_mean": grouped["best"].mean(),
            "final_best_std": grouped["best"].std(),
        }
    )
    if optimum is not None:
        table["final_regret_mean"] = regret(table["final_best_mean"], optimum, mode)
    if hypervolumes is not None:
        hv = hypervolumes.groupby("searcher")["hypervolume"]
        table["hypervolume_mean"] = hv.mean()
        table["hypervolume_std"] = hv.std()
    table["mean_rank"] = grouped["rank"].mean()
    counts = proposal_counts(df).set_index("searcher")
    table = table.join(counts[["proposals", "infeasible", "repeats"]])
    best_first = table["final_best_mean"] * (-1 if mode == "max" else 1)
    table = table.assign(_tiebreak=best_first).sort_values(["mean_rank", "_tiebreak"], kind="stable")
    return table.drop(columns="_tiebreak").rename_axis("searcher").reset_index()
