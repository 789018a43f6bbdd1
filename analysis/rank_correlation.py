"""How far a ranking holds: rank correlation between two scores of the same items, with bootstrap intervals.

``rank_agreement(x, y)`` gives Kendall's τ (τ-b, ties counted) and Spearman's ρ
between the paired scores, and a percentile bootstrap interval of each:
the items are resampled with replacement ``resamples`` times and the
coefficient recomputed (a resample in which one score is constant has no
coefficient and is left out). The interval says how far the τ of these few
items can be trusted, not how the scores themselves vary.

>>> r = rank_agreement([0.1, 0.2, 0.3, 0.4, 0.5], [0.11, 0.25, 0.24, 0.41, 0.52], resamples=200)
>>> r["n"], round(r["kendall_tau"], 2), round(r["spearman"], 2)
(5, 0.8, 0.9)
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import stats


def _coefficients(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan, math.nan
    return float(stats.kendalltau(x, y).statistic), float(stats.spearmanr(x, y).statistic)


def rank_agreement(x: Sequence[float], y: Sequence[float], resamples: int = 2000, confidence: float = 0.95,
                   seed: int = 0) -> dict[str, float | int]:
    """``n``, ``kendall_tau``, ``ci_low``, ``ci_high`` (τ's interval), ``spearman``, ``spearman_ci_low``,
    ``spearman_ci_high`` of the paired scores ``x`` and ``y`` (NaN where fewer than 3 items or a constant
    score leave nothing to rank)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"paired scores differ in length: {len(x)} and {len(y)}")
    n = len(x)
    tau, rho = _coefficients(x, y) if n >= 3 else (math.nan, math.nan)
    low = high = rho_low = rho_high = math.nan
    if n >= 3 and not math.isnan(tau):
        rng = np.random.default_rng(seed)
        draws = np.array([_coefficients(x[i], y[i]) for i in rng.integers(0, n, size=(resamples, n))])
        draws = draws[~np.isnan(draws).any(axis=1)]
        if len(draws):
            tail = (1 - confidence) / 2 * 100
            low, high = np.percentile(draws[:, 0], [tail, 100 - tail])
            rho_low, rho_high = np.percentile(draws[:, 1], [tail, 100 - tail])
    return {"n": n, "kendall_tau": tau, "ci_low": float(low), "ci_high": float(high), "spearman": rho,
            "spearman_ci_low": float(rho_low), "spearman_ci_high": float(rho_high)}
