"""Regret of each searcher after 25/50/100/200 (and its full budget of) feasible evaluations and over
wall-clock time (``raynas compare``).

regret(k) = optimum − best feasible metric among a run's first k feasible
evaluations (completion order; repeats do not count); for ``mode="min"``
the sign flips. The optimum is the objective's own (a tabular benchmark's
best feasible entry under the sweep's constraint) where it has one, else the
best feasible result of the whole sweep. hit_rate(k) = share of seeds whose
best after k equals the optimum. Only runs with at least k feasible
evaluations count at budget k (``seeds`` says how many).

Each mean comes with a 95% bootstrap confidence interval over seeds (none
from one seed), and each pair of searchers with the 95% interval of their
mean difference over the seeds both ran (paired by seed: same seed, same
start) and the p-value of the paired sign-flip test of that difference: the
pair is *distinguishable* at that budget when p < 0.05. The test is exact
(every sign assignment up to 12 seeds) and holds its 5% at any number of
seeds, where a percentile bootstrap of a few seeds is far too narrow: it
needs at least 6 seeds to tell two searchers apart at all.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from analysis.curves import best_so_far, evaluations_of
from analysis.pareto import hypervolume_2d, ideal_scale, reference_point
from raynas.errors import UserError

BUDGETS = (25, 50, 100, 200)
TIME_FRACTIONS = (0.25, 0.5, 0.75, 1.0)  # of the sweep's wall time
CONFIDENCE = 0.95
RESAMPLES = 2000


def _objective_of(settings: dict):
    """The sweep's objective and constraint, or ``(None, None)`` away from its files (e.g. a moved table)."""
    from raynas.config import SweepConfig

    try:
        objective = SweepConfig.load(settings["config"]).objective()
        return objective, objective.constraint(settings["config"].get("max_flops"),
                                               settings["config"].get("max_latency"))
    except (UserError, KeyError):
        return None, None


def optimum(settings: dict, trials: pd.DataFrame) -> tuple[float, str]:
    """The reference best value and where it comes from (``"objective"`` or ``"sweep"``)."""
    objective, constraint = _objective_of(settings)
    value = objective.optimum(constraint) if objective is not None else None
    if value is not None:
        return float(value), "objective"
    feasible = evaluations_of(trials)[settings["metric"]]
    if feasible.empty:
        raise UserError("no feasible trial in the sweep: nothing to compare")
    return float(feasible.max() if settings["mode"] == "max" else feasible.min()), "sweep"


def budgets_of(budget: int) -> list[int]:
    """The budgets regret is reported at: those of ``BUDGETS`` a run reaches, and its own."""
    return sorted({k for k in BUDGETS if k <= budget} | {budget})


def bootstrap_ci(values, confidence: float = CONFIDENCE, resamples: int = RESAMPLES, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (NaN, NaN from fewer than two: no interval)."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(resamples, len(values)))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


EXACT_UP_TO = 12  # seeds: up to 2**12 sign assignments are enumerated, beyond that RESAMPLES are drawn
MIN_SEEDS = 6  # the fewest with which the sign-flip test can reach p < 0.05 (2 / 2**6)


def sign_flip_p(differences, resamples: int = RESAMPLES, seed: int = 0) -> float:
    """Two-sided p-value of the paired sign-flip test that ``differences`` (one per seed) have mean 0: the share of
    sign assignments whose mean is at least as far from 0 as the observed one (NaN without differences).

    >>> sign_flip_p([1, 2, 3, 4, 5]), sign_flip_p([1, 2, 3, 4, 5, 6])  # all of one sign: 2 of 2**n
    (0.0625, 0.03125)
    """
    differences = np.asarray(differences, dtype=float)
    n = len(differences)
    if n == 0:
        return float("nan")
    observed = abs(differences.mean())
    if n <= EXACT_UP_TO:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
        return float(np.mean(np.abs(signs @ differences) / n >= observed * (1 - 1e-12)))
    signs = np.random.default_rng(seed).choice((1.0, -1.0), size=(resamples, n))
    extreme = np.sum(np.abs(signs @ differences) / n >= observed * (1 - 1e-12))
    return float((1 + extreme) / (1 + resamples))  # the observed assignment counts as one of the draws


def _stats(regrets: pd.Series, hits: pd.Series) -> dict:
    low, high = bootstrap_ci(regrets.to_numpy())
    return {"mean_regret": float(regrets.mean()), "ci_low": low, "ci_high": high,
            "median_regret": float(regrets.median()), "hit_rate": float(hits.mean()), "seeds": int(len(regrets))}


def _pairs(per_seed: pd.DataFrame, order: list[str], value: str = "regret") -> list[dict]:
    """Paired differences of the mean ``value`` (first − second) per pair of searchers, over common seeds."""
    table = per_seed.pivot(index="seed", columns="searcher", values=value)
    out = []
    for a, b in itertools.combinations([s for s in order if s in table], 2):
        both = table[[a, b]].dropna()
        if both.empty:
            continue
        diff = (both[a] - both[b]).to_numpy()
        low, high = bootstrap_ci(diff)
        p = sign_flip_p(diff)
        out.append({"a": a, "b": b, "seeds": int(len(diff)), "mean_difference": float(diff.mean()),
                    "ci_low": low, "ci_high": high, "p_value": p, "distinguishable": bool(p < 1 - CONFIDENCE)})
    return out


def compare(trials: pd.DataFrame, settings: dict) -> dict:
    """Regret per searcher and budget (with intervals and pairwise tests), and over wall-clock time.

    ``{"optimum", "optimum_source", "metric", "constraint", "searchers": {name: {"25": stats}},
    "pairs": {"25": [pair]}, "time": {"seconds": [...], "searchers": {name: {"t": stats}}}}``.
    """
    metric, mode = settings["metric"], settings["mode"]
    best_value, source = optimum(settings, trials)
    curves = best_so_far(trials, metric, mode, optimum=best_value)
    order = [s for s in settings["searchers"] if s in set(curves["searcher"])]
    out = {"optimum": best_value, "optimum_source": source, "metric": metric,
           "constraint": settings["constraint"], "searchers": {s: {} for s in order}, "pairs": {}}
    for k in budgets_of(settings["budget"]):
        at_k = _at(curves[curves["evaluations"] == k], best_value)  # the runs that reached k feasible evaluations
        for name, group in at_k.groupby("searcher", sort=False):
            out["searchers"][name][str(k)] = _stats(group["regret"], group["hit"])
        out["pairs"][str(k)] = _pairs(at_k, order)
    out["searchers"] = {s: per for s, per in out["searchers"].items() if per}
    out["time"] = _over_time(trials, curves, best_value, order)
    if settings.get("trade_off"):
        out["hypervolume"] = hypervolume_per_budget(trials, settings, order)
    return out


def hypervolume_per_budget(trials: pd.DataFrame, settings: dict, order: list[str]) -> dict:
    """A multi-objective sweep (``trade_off``): each run's hypervolume of (metric, trade-off cost) among its
    first N feasible evaluations, divided by that of the true front where the objective knows it (else by the
    area between the reference point and the best values reached), with intervals and pairwise tests."""
    metric, mode, cost = settings["metric"], settings["mode"], settings["trade_off"]
    objectives = [(metric, mode), (cost, "min")]
    reference, source = reference_point(trials, objectives, settings.get("hv_reference"))
    objective, constraint = _objective_of(settings)
    front = objective.pareto_front(constraint, cost) if objective is not None else None
    if front:
        scale, scale_source = hypervolume_2d(front, [mode, "min"], reference), "the true front"
    else:
        scale, scale_source = ideal_scale(trials, objectives, reference), "the box up to the best values reached"
    rows = evaluations_of(trials, metric)
    out = {"cost": cost, "reference": reference, "reference_source": source, "scale": scale,
           "scale_source": scale_source, "searchers": {s: {} for s in order}, "pairs": {}}
    for k in budgets_of(settings["budget"]):
        values = [{"searcher": s, "seed": seed,
                   "hypervolume": hypervolume_2d(run.head(k)[[metric, cost]].to_numpy(dtype=float), [mode, "min"],
                                                 reference) / scale}
                  for (s, seed), run in rows.groupby(["searcher", "seed"]) if len(run) >= k]
        at_k = pd.DataFrame(values, columns=["searcher", "seed", "hypervolume"])
        for name, group in at_k.groupby("searcher", sort=False):
            low, high = bootstrap_ci(group["hypervolume"].to_numpy())
            out["searchers"][name][str(k)] = {"mean": float(group["hypervolume"].mean()), "ci_low": low,
                                              "ci_high": high, "seeds": int(len(group))}
        out["pairs"][str(k)] = _pairs(at_k, order, value="hypervolume")
    out["searchers"] = {s: per for s, per in out["searchers"].items() if per}
    return out


def _at(rows: pd.DataFrame, best_value: float) -> pd.DataFrame:
    return rows.assign(regret=rows["regret"].clip(lower=0.0),
                       hit=np.isclose(rows["best"], best_value, rtol=0, atol=1e-9))


def _over_time(trials: pd.DataFrame, curves: pd.DataFrame, best_value: float, order: list[str]) -> dict:
    """Regret after fractions of the sweep's wall time: the best a run had found by then."""
    if "wall_time_s" not in trials or curves.empty:
        return {"seconds": [], "searchers": {}}
    end = float(curves["wall_time_s"].max())
    seconds = [round(end * f, 3) for f in TIME_FRACTIONS]
    runs = curves[["searcher", "seed"]].drop_duplicates()
    out = {"seconds": seconds, "searchers": {s: {} for s in order}}
    for t in seconds:
        reached = curves[curves["wall_time_s"] <= t].groupby(["searcher", "seed"]).tail(1)
        rows = runs.merge(reached, on=["searcher", "seed"], how="left")
        rows = rows.dropna(subset=["regret"])  # a run with nothing by then has no regret yet
        for name, group in _at(rows, best_value).groupby("searcher", sort=False):
            out["searchers"][name][f"{t:g}"] = _stats(group["regret"], group["hit"])
    return out


def format_table(result: dict) -> str:
    """A readable table: mean regret [95% interval] (hit rate) per budget, then what is distinguishable."""
    budgets = sorted({k for per in result["searchers"].values() for k in per}, key=int)
    constraint = result["constraint"]
    lines = [f"optimum {result['metric']} = {result['optimum']:.3f} ({result['optimum_source']}"
             + (f", {constraint['metric']} <= {constraint['limit']})" if constraint else ", unconstrained)"),
             "mean regret [95% bootstrap interval over seeds] (hit rate) after N feasible evaluations:",
             f"{'searcher':<12}{'seeds':>6}" + "".join(f"{'N=' + k:>28}" for k in budgets)]
    for name, per in result["searchers"].items():
        cells = [_cell(per.get(k)) for k in budgets]
        seeds = max((r["seeds"] for r in per.values()), default=0)
        lines.append(f"{name:<12}{seeds:>6}" + "".join(f"{c:>28}" for c in cells))
    for k in budgets:
        pairs = result["pairs"].get(k, [])
        better = [f"{p['a'] if p['mean_difference'] < 0 else p['b']} < {p['b'] if p['mean_difference'] < 0 else p['a']}"
                  for p in pairs if p["distinguishable"]]
        tied = [f"{p['a']} ~ {p['b']}" for p in pairs if not p["distinguishable"]]
        few = max((p["seeds"] for p in pairs), default=0) < MIN_SEEDS
        lines.append(f"N={k}: distinguishable (paired sign-flip test, p < 0.05; lower regret first): "
                     f"{', '.join(better) or 'none'}; "
                     f"not distinguishable: {', '.join(tied) or 'none'}"
                     + (f" (fewer than {MIN_SEEDS} seeds: no pair can be told apart)" if pairs and few else ""))
    if "hypervolume" in result:
        lines += _hypervolume_lines(result["hypervolume"])
    timed = result.get("time", {})
    if timed.get("seconds"):
        lines.append("mean regret after wall-clock seconds (of the whole sweep):")
        lines.append(f"{'searcher':<12}" + "".join(f"{f't={t:g}s':>28}" for t in timed["seconds"]))
        for name, per in timed["searchers"].items():
            lines.append(f"{name:<12}" + "".join(f"{_cell(per.get(f'{t:g}')):>28}" for t in timed["seconds"]))
    return "\n".join(lines)


def _hypervolume_lines(hv: dict) -> list[str]:
    budgets = sorted({k for per in hv["searchers"].values() for k in per}, key=int)
    lines = [f"hypervolume of {hv['cost']} vs the metric from {hv['reference_source']}, as a fraction of "
             f"{hv['scale_source']} (higher is better), mean [95% interval]:",
             f"{'searcher':<12}" + "".join(f"{'N=' + k:>24}" for k in budgets)]
    for name, per in hv["searchers"].items():
        cells = [f"{per[k]['mean']:.3f} {interval(per[k]['ci_low'], per[k]['ci_high'])}" if k in per else "-"
                 for k in budgets]
        lines.append(f"{name:<12}" + "".join(f"{c:>24}" for c in cells))
    for k in budgets:
        better = [f"{p['a'] if p['mean_difference'] > 0 else p['b']} > {p['b'] if p['mean_difference'] > 0 else p['a']}"
                  for p in hv["pairs"].get(k, []) if p["distinguishable"]]
        lines.append(f"N={k}: distinguishable (higher hypervolume first): {', '.join(better) or 'none'}")
    return lines


def interval(low: float, high: float) -> str:
    """``[low, high]``, or ``[1 seed]`` where there is no interval."""
    return "[1 seed]" if np.isnan(low) else f"[{low:.3f}, {high:.3f}]"


def _cell(stats: dict | None) -> str:
    if not stats:
        return "-"
    return f"{stats['mean_regret']:.3f} {interval(stats['ci_low'], stats['ci_high'])} ({stats['hit_rate']:.0%})"
