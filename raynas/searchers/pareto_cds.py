"""Pareto Coordinate Descent Search (``cds_pareto``): CDS for several objectives, e.g. accuracy against latency.

The run keeps the non-dominated archive of its results (``front()``). Each
round optimises one coordinate block, cyclically as CDS does, for an
augmented Tchebycheff scalarisation of the objectives (normalised by the
range the run has seen). The weights aim at a gap of the archive's front: a
gap between neighbouring front points is drawn with probability
proportional to its length, and the weights make its midpoint the
direction of improvement. The round starts from the front point best for
those weights and searches its block as CDS's ranked sampler does, except
that the surrogate predicts each objective that is not a known cost (a cost
such as the table's latency is exact before any evaluation) and the ranking
is the scalarisation of those predictions. A result better for the weights
moves the round on; a whole cycle of rounds that adds nothing to the front
restarts from perturbations of front points.
"""

from __future__ import annotations

import math

import numpy as np

from raynas.errors import UserError, check_number
from raynas.searchers.cds import CoordinateDescentSearch
from raynas.searchers.surrogate import OneHotRidge
from search_spaces.base import Arch

MARGIN = 0.1  # the scalarisation's reference lies this far below the worst value seen (normalised)


def dominates(a, b) -> bool:
    """``a`` is no worse than ``b`` everywhere and better somewhere (higher is better)."""
    return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))


class ParetoCoordinateDescent(CoordinateDescentSearch):
    """CDS over several objectives (``metric`` and ``mode`` lists); ``rho`` is the augmentation weight."""

    STATE = CoordinateDescentSearch.STATE + ("weights",)

    def __init__(self, *args, rho: float = 0.05, **kwargs):
        super().__init__(*args, **kwargs)
        if isinstance(self.metric, str) or len(self.metric) < 2:
            raise UserError(f"searcher 'cds_pareto' optimises several metrics (e.g. accuracy and latency_ms); "
                            f"got {self.metric!r}")
        self.rho = float(check_number("cds_pareto rho", rho, 0))
        known = self.cost(self.space.min_arch())
        self.known = [m for m in self.metric if m in known]  # exact before any evaluation
        self.weights = [1.0 / len(self.metric)] * len(self.metric)
        self._build_models()

    def _build_models(self) -> None:
        self.models = {m: OneHotRidge(self.space) for m in self.metric if m not in self.known}

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self._build_models()

    def __getstate__(self) -> dict:
        return {k: v for k, v in super().__getstate__().items() if k != "models"}

    # --- the front and the scalarisation --------------------------------------
    def front(self) -> list[tuple[Arch, tuple]]:
        """The non-dominated results so far: (architecture, values in the metrics' own units)."""
        points = [(a, s) for a, s in self.observed]
        keep = [(a, s) for a, s in points if not any(dominates(t, s) for _, t in points)]
        signs = [1.0 if m == "max" else -1.0 for m in self.mode]
        return [(a, tuple(v * sign for v, sign in zip(s, signs))) for a, s in keep]

    def _bounds(self) -> tuple[np.ndarray, np.ndarray]:
        values = np.array([s for _, s in self.observed]) if self.observed else np.zeros((1, len(self.metric)))
        low, high = values.min(axis=0), values.max(axis=0)
        return low, np.where(high > low, high - low, 1.0)

    def utility(self, score) -> float:
        low, span = self._bounds()
        shifted = (np.asarray(score, dtype=float) - low) / span + MARGIN
        weighted = np.asarray(self.weights) * shifted
        return float(weighted.min() + self.rho * weighted.sum())

    def _choose_weights(self) -> None:
        """Weights whose direction points at the midpoint of a gap of the front (drawn by its length)."""
        front = [s for _, s in self.observed if not any(dominates(t, s) for _, t in self.observed)]
        low, span = self._bounds()
        points = sorted({tuple((np.asarray(s) - low) / span) for s in front})
        if len(points) < 2:
            self.weights = [1.0 / len(self.metric)] * len(self.metric)
            return
        gaps = [(np.linalg.norm(np.subtract(b, a)), a, b) for a, b in zip(points, points[1:])]
        lengths = np.array([g[0] for g in gaps])
        _, a, b = gaps[self.rng.choices(range(len(gaps)), weights=lengths + 1e-12)[0]]
        target = (np.asarray(a) + np.asarray(b)) / 2 + MARGIN
        inverse = 1.0 / target
        self.weights = list(inverse / inverse.sum())

    # --- rounds ----------------------------------------------------------------
    def _begin_round(self) -> None:
        self._choose_weights()
        if self.observed:  # start from the front point best for this round's weights
            self.incumbent = max(self.observed, key=lambda r: self.utility(r[1]))
        super()._begin_round()

    def _observe(self, trial_id, arch, score) -> None:
        new_front_point = all(map(math.isfinite, score)) and not any(
            dominates(t, score) or t == score for _, t in self.observed)
        super()._observe(trial_id, arch, score)
        if new_front_point and not self.starting:
            self.round_improved = True  # a cycle that adds nothing to the front restarts

    def _elites(self) -> list[Arch]:
        return [a for a, _ in self.front()]

    # --- the surrogate, one model per objective that is not a known cost ------------
    def _refit(self) -> None:
        archs = [a for a, _ in self.observed]
        for i, metric in enumerate(self.metric):
            if metric in self.models:
                self.models[metric].fit(archs, [s[i] for _, s in self.observed])

    def _predicted(self, candidates: list[Arch]):
        columns = []
        for metric, mode in zip(self.metric, self.mode):
            if metric in self.known:
                sign = 1.0 if mode == "max" else -1.0
                columns.append([sign * self.cost(a)[metric] for a in candidates])
            else:
                columns.append(self.models[metric].ucb(candidates, self.beta))
        return [self.utility(values) for values in zip(*columns)]
