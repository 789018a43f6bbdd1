"""Searchers as Ray Tune ``Searcher`` objects, built by name with ``make_searcher``."""

from __future__ import annotations

from typing import Sequence

from ray.tune.search import Searcher

from raynas.constraints import Constraint, CostFn
from raynas.errors import UserError, check_choice, check_whole
from raynas.searchers.base import ArchSearcher
from search_spaces.base import SearchSpace

SEARCHER_NAMES = ("cds", "cds_uniform", "cds_pareto", "evolution", "optuna", "nevergrad", "random")
MULTI_OBJECTIVE = ("cds_pareto", "optuna", "random")  # those that take several metrics


def make_searcher(name: str, space: SearchSpace, constraint: Constraint | None, metric: str | Sequence[str],
                  mode: str | Sequence[str], seed: int, budget: int, cost: CostFn, **options) -> Searcher:
    """The Tune ``Searcher`` called ``name`` for one run.

    ``options`` go to the searcher (e.g. ``population_size`` for evolution,
    ``candidates_per_round`` for CDS, ``optimizer`` for nevergrad).
    ``cds_uniform`` is CDS with the paper's uniform sampling inside a block (and
    the paper's random restarts). ``metric``/``mode`` lists ask for a multi-objective
    search (``MULTI_OBJECTIVE``). ``budget`` (feasible evaluations) sizes searchers that
    plan for it (Nevergrad).
    """
    check_choice("searcher", name, SEARCHER_NAMES)
    check_whole("budget", budget, 1)
    several = not isinstance(metric, str)
    if several and name not in MULTI_OBJECTIVE:
        raise UserError(f"searcher {name!r} optimises one metric, got {list(metric)}; "
                        f"for several use one of {list(MULTI_OBJECTIVE)}")
    if not several and name == "cds_pareto":
        raise UserError("searcher 'cds_pareto' optimises several metrics: give sweep.trade_off (e.g. latency_ms)")
    if name in ("optuna", "nevergrad"):
        from raynas.searchers import external

        inner = (external.optuna_search(metric, mode, seed, **options) if name == "optuna"
                 else external.nevergrad_search(metric, mode, seed, budget, **options))
    else:
        from raynas.searchers.cds import CoordinateDescentSearch
        from raynas.searchers.evolution import RegularizedEvolution
        from raynas.searchers.pareto_cds import ParetoCoordinateDescent
        from raynas.searchers.random_search import RandomSearch

        cls = {"cds": CoordinateDescentSearch, "cds_uniform": CoordinateDescentSearch,
               "cds_pareto": ParetoCoordinateDescent, "evolution": RegularizedEvolution, "random": RandomSearch}[name]
        if name == "cds_uniform":
            options = {"sampler": "uniform", "start_samples": 1, "restart": "random", **options}
        try:
            inner = cls(space, cost, constraint, metric=metric, mode=mode, seed=seed, **options)
        except TypeError as err:
            raise UserError(f"searcher {name!r}: bad option ({err})") from None
    return inner


__all__ = ["MULTI_OBJECTIVE", "SEARCHER_NAMES", "ArchSearcher", "make_searcher"]
