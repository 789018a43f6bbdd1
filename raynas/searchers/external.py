"""Optuna and Nevergrad through Ray Tune's own ``OptunaSearch`` / ``NevergradSearch``.

Both see the space as Tune's param space (``space.to_tune()``); feasibility and
budget are added around them by ``BudgetedSearch``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from ray.tune.search.nevergrad import NevergradSearch
from ray.tune.search.optuna import OptunaSearch

from raynas.errors import UserError


def optuna_search(metric: str | Sequence[str], mode: str | Sequence[str], seed: int) -> OptunaSearch:
    """TPE for one objective, NSGA-II when ``metric`` lists several."""
    import optuna

    if isinstance(metric, str):
        sampler = optuna.samplers.TPESampler(seed=seed)
    else:
        sampler = optuna.samplers.NSGAIISampler(seed=seed)
        metric, mode = list(metric), list(mode)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return OptunaSearch(metric=metric, mode=mode, sampler=sampler)


class SeededNevergradSearch(NevergradSearch):
    """``NevergradSearch`` whose parametrization draws from a seeded generator."""

    def __init__(self, *args, seed: int = 0, **kwargs):
        self._seed = seed
        super().__init__(*args, **kwargs)

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        ok = super().set_search_properties(metric, mode, config, **spec)
        if ok:
            self._nevergrad_opt.parametrization.random_state = np.random.RandomState(self._seed)
        return ok


def nevergrad_search(metric: str, mode: str, seed: int, budget: int, optimizer: str = "NGOpt") -> NevergradSearch:
    """A Nevergrad optimiser for categorical spaces (``NGOpt`` picks a discrete one from the budget)."""
    import nevergrad as ng

    if not isinstance(metric, str):
        raise UserError("nevergrad searcher: only one objective metric is supported; use optuna for several")
    try:
        factory = ng.optimizers.registry[optimizer]
    except KeyError:
        raise UserError(f"nevergrad optimizer {optimizer!r} is unknown; e.g. NGOpt, DiscreteLenglerOnePlusOne, "
                        "PortfolioDiscreteOnePlusOne") from None
    return SeededNevergradSearch(optimizer=factory, optimizer_kwargs={"budget": budget},
                                 metric=metric, mode=mode, seed=seed)
