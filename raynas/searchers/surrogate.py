"""A cheap surrogate fitted online on one run's own results: ridge regression on one-hot dimension values.

Each architecture is one indicator per (dimension, value); the model is
``score ≈ mean + Σ weights`` with an L2 penalty, refitted from scratch after
every result (tens of features, hundreds of results: microseconds to
milliseconds). ``ucb`` adds ``beta`` times the predictive standard deviation
(from the ridge posterior), so settings the run has seen little of get a
chance. Searchers use it to *rank* candidates they would propose anyway; it
never decides feasibility.

>>> from search_spaces.nb201 import make_space
>>> space = make_space(); model = OneHotRidge(space)
>>> archs = [space.sample(__import__("random").Random(i)) for i in range(40)]
>>> model.fit(archs, [10.0 * (a["edge_1_0"] == "nor_conv_3x3") for a in archs])
>>> best = dict(archs[0], edge_1_0="nor_conv_3x3"); worst = dict(archs[0], edge_1_0="none")
>>> bool(model.predict([best])[0] > model.predict([worst])[0] + 5)
True
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from search_spaces.base import SearchSpace


class OneHotRidge:
    """Ridge regression of a score on one-hot dimension values (``penalty``: the L2 weight)."""

    def __init__(self, space: SearchSpace, penalty: float = 1.0):
        self.space = space
        self.penalty = penalty
        self.columns = {(d.name, c): i for i, (d, c) in enumerate((d, c) for d in space.dimensions for c in d.choices)}
        self.mean = 0.0
        self.weights = np.zeros(len(self.columns))
        self.inverse = np.eye(len(self.columns)) / penalty
        self.noise = 1.0
        self.fitted = 0

    def features(self, archs: Sequence[Mapping]) -> np.ndarray:
        x = np.zeros((len(archs), len(self.columns)))
        for row, arch in enumerate(archs):
            for name, value in arch.items():
                x[row, self.columns[(name, value)]] = 1.0
        return x

    def fit(self, archs: Sequence[Mapping], scores: Sequence[float]) -> None:
        """Refit on every (architecture, score) so far (non-finite scores are left out)."""
        y = np.asarray(scores, dtype=float)
        keep = np.isfinite(y)
        if keep.sum() < 2:
            return
        x, y = self.features([a for a, k in zip(archs, keep) if k]), y[keep]
        self.mean = float(y.mean())
        a = x.T @ x + self.penalty * np.eye(x.shape[1])
        self.inverse = np.linalg.inv(a)
        self.weights = self.inverse @ x.T @ (y - self.mean)
        residual = y - self.mean - x @ self.weights
        self.noise = float((residual @ residual + self.penalty * self.weights @ self.weights) / len(y)) or 1e-12
        self.fitted = len(y)

    def predict(self, archs: Sequence[Mapping]) -> np.ndarray:
        return self.mean + self.features(archs) @ self.weights

    def ucb(self, archs: Sequence[Mapping], beta: float) -> np.ndarray:
        """Predicted score plus ``beta`` predictive standard deviations."""
        x = self.features(archs)
        spread = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", x, self.inverse, x), 0.0) * self.noise)
        return self.mean + x @ self.weights + beta * spread
