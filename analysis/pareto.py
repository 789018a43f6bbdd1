"""Pareto fronts and 2-D hypervolume over a sweep's trials, each objective with its own direction.

An objective is a ``(column, mode)`` pair with mode ``"max"`` (mIoU, accuracy)
or ``"min"`` (FLOPs, latency). Internally every objective is turned into a
cost to minimise (``"max"`` columns are negated).

Ties and duplicates: a point dominates another when it is no worse in every
objective and strictly better in at least one, so two points with equal
objective values never dominate each other and both stay on the front.

Hypervolume is measured from a reference point a user can read: the worst
possible metric (0 for accuracy or mIoU) and the constraint's limit on the
cost (else the worst cost of the space, or one the sweep's config gives;
``reference_point``), so every front with a feasible architecture counts.
``hypervolume_table`` divides it by ``scale`` — the area between the
reference point and the best values any run reached, or the hypervolume of
the true front where a benchmark table has one — so values lie in [0, 1].
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from raynas.errors import UserError, check_choice

Objective = tuple[str, str]
MODES = ("max", "min")


def _signs(modes: Sequence[str]) -> np.ndarray:
    return np.array([-1.0 if check_choice("mode", m, MODES) == "max" else 1.0 for m in modes])


def non_dominated(values, modes: Sequence[str]) -> np.ndarray:
    """Boolean mask of the rows of ``values`` (n × k) that no other row dominates.

    Rows with a NaN or infinite value are never on the front.
    """
    points = np.asarray(values, dtype=float)
    if points.ndim != 2 or points.shape[1] != len(modes):
        raise ValueError(f"values must be (n, {len(modes)}), got shape {points.shape}")
    costs = points * _signs(modes)
    keep = np.zeros(len(points), dtype=bool)
    candidates = np.flatnonzero(np.isfinite(costs).all(axis=1))
    if costs.shape[1] == 2:
        # Sorted by (x, y), a distinct point is on the front iff its y is below every earlier y;
        # duplicates share the verdict of their distinct point.
        distinct, inverse = np.unique(costs[candidates], axis=0, return_inverse=True)
        earlier_min = np.minimum.accumulate(np.concatenate(([np.inf], distinct[:-1, 1])))
        keep[candidates] = (distinct[:, 1] < earlier_min)[inverse.ravel()]
        return keep
    # In lexicographic order a dominating point always comes before the points it
    # dominates, and a dominated point's dominator is itself dominated by a front
    # member (transitivity), so comparing each point with the front so far suffices.
    ordered = candidates[np.lexsort(costs[candidates].T[::-1])]
    front = np.empty((0, costs.shape[1]))
    for i in ordered:
        c = costs[i]
        if (np.all(front <= c, axis=1) & np.any(front < c, axis=1)).any():
            continue
        keep[i] = True
        front = np.vstack([front, c])
    return keep


def check_columns(df: pd.DataFrame, columns: Sequence[str]) -> None:
    """Raise a UserError naming the columns of ``columns`` that ``df`` lacks."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise UserError(f"results lack columns {missing}; they have {sorted(map(str, df.columns))}")


def is_feasible(df: pd.DataFrame) -> pd.Series:
    """Which trials are feasible: ``feasible`` is True (a missing value is not); all without the column."""
    if "feasible" not in df.columns:
        return pd.Series(True, index=df.index)
    return df["feasible"].eq(True)


def is_evaluation(df: pd.DataFrame) -> pd.Series:
    """The rows a budget counts: feasible, and not a repeat answered from an earlier result."""
    repeat = df["repeat"].eq(True) if "repeat" in df.columns else pd.Series(False, index=df.index)
    return is_feasible(df) & ~repeat


def feasible_rows(df: pd.DataFrame, columns: Sequence[str] = ()) -> pd.DataFrame:
    """The feasible evaluations (repeats left out) with finite values in ``columns``."""
    check_columns(df, columns)
    rows = df[is_evaluation(df)]
    values = rows[list(columns)].astype(float)
    return rows[np.isfinite(values.to_numpy()).all(axis=1)]


def pareto_front(df: pd.DataFrame, objectives: Sequence[Objective]) -> pd.DataFrame:
    """The feasible, non-dominated rows of ``df``, sorted by the first objective's column."""
    columns = [c for c, _ in objectives]
    rows = feasible_rows(df, columns)
    mask = non_dominated(rows[columns].to_numpy(dtype=float), [m for _, m in objectives])
    return rows[mask].sort_values(columns, kind="stable")


def hypervolume_2d(points, modes: Sequence[str], reference: Sequence[float]) -> float:
    """Exact area dominated by ``points`` (n × 2) and bounded by ``reference``.

    Points not strictly better than the reference in both objectives add nothing.
    """
    if len(modes) != 2 or len(reference) != 2:
        raise UserError(f"hypervolume_2d needs exactly 2 objectives, got modes={list(modes)}")
    signs = _signs(modes)
    costs = np.asarray(points, dtype=float).reshape(-1, 2) * signs
    ref = np.asarray(reference, dtype=float) * signs
    costs = costs[np.isfinite(costs).all(axis=1) & (costs < ref).all(axis=1)]
    if len(costs) == 0:
        return 0.0
    front = costs[non_dominated(costs, ("min", "min"))]
    front = front[np.argsort(front[:, 0], kind="stable")]  # x ascending, so y descending
    next_x = np.append(front[1:, 0], ref[0])
    return float(np.sum((next_x - front[:, 0]) * (ref[1] - front[:, 1])))


def reference_point(df: pd.DataFrame, objectives: Sequence[Objective],
                    given: Mapping[str, float] | None = None) -> tuple[list[float], str]:
    """The reference point in raw units and where it comes from: ``given`` values (the sweep's
    ``hv_reference``) where present, else each objective's worst value over the feasible trials."""
    given = dict(given or {})
    point, sources = [], []
    for column, mode in objectives:
        if column in given:
            point.append(float(given[column]))
            sources.append(f"{column} {given[column]:g} (the sweep's reference)")
            continue
        values = feasible_rows(df, [column])[column].astype(float)
        if values.empty:
            raise UserError(f"no feasible trial has a {column!r} value; no hypervolume reference")
        worst = float(values.min() if mode == "max" else values.max())
        point.append(worst)
        sources.append(f"{column} {worst:g} (the worst of the sweep's feasible trials)")
    return point, "; ".join(sources)


def ideal_scale(df: pd.DataFrame, objectives: Sequence[Objective], reference: Sequence[float]) -> float:
    """The area between ``reference`` and the best value of each objective over the feasible trials."""
    area = 1.0
    for (column, mode), ref in zip(objectives, reference):
        values = feasible_rows(df, [column])[column].astype(float)
        best = float(values.max() if mode == "max" else values.min()) if len(values) else ref
        area *= abs(best - ref)
    return area or 1.0


def hypervolume_table(df: pd.DataFrame, objectives: Sequence[Objective], reference: Sequence[float],
                      scale: float = 1.0) -> pd.DataFrame:
    """Hypervolume of each (searcher, seed)'s feasible evaluations from ``reference`` (raw units), divided
    by ``scale``: columns ``searcher, seed, hypervolume``. A run without a feasible trial has 0."""
    if len(objectives) != 2:
        raise UserError(f"hypervolume is computed for 2 objectives, got {[c for c, _ in objectives]}")
    columns, modes = [c for c, _ in objectives], [m for _, m in objectives]
    runs = df[["searcher", "seed"]].drop_duplicates().sort_values(["searcher", "seed"]).reset_index(drop=True)
    feasible = feasible_rows(df, columns).groupby(["searcher", "seed"])
    volumes = {run: hypervolume_2d(group[columns].to_numpy(dtype=float), modes, reference) / scale
               for run, group in feasible}
    runs["hypervolume"] = [volumes.get((searcher, seed), 0.0) for searcher, seed in zip(runs["searcher"], runs["seed"])]
    return runs
