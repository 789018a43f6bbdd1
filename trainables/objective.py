"""The ``Objective`` contract: what the trials of a sweep evaluate.

A sweep (``raynas.sweep``) asks its objective for everything it does not
decide itself: the search space, how to score one architecture, the metric
and its direction, the costs a constraint may bound, the metric an
infeasible proposal is answered with, the resources one trial needs, and the
best value reachable when it is known (for regret). Each objective also owns
its fields of the ``sweep`` section. Register a subclass by name in
``trainables.OBJECTIVES``.

A trial's config is the architecture (flat dimension names) plus
``objective.config`` (constants every trial needs); ``evaluate(config)`` runs
on a Ray worker and returns the metrics, which the sweep reports to Tune.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Mapping

from raynas.constraints import Constraint, CostFn
from raynas.errors import UserError
from raynas.settings import Section
from search_spaces.base import Arch, SearchSpace

ANSWER_KEY = "recorded_result"  # a trial config's result recorded earlier (JSON): reported, not evaluated again


class Objective(ABC):
    """What a sweep's trials evaluate; subclasses set the class attributes and implement the methods.

    - ``name``: the registered name (``sweep.benchmark``);
    - ``Settings``: its fields of the ``sweep`` section (validated with it);
    - ``metric`` and ``mode`` (``"max"`` or ``"min"``); ``penalty``: the metric an
      infeasible proposal is answered with (never evaluated);
    - ``space``: the search space the searchers propose from;
    - ``config``: constant keys every trial config carries;
    - ``default_resources``: what one trial asks the cluster for (``sweep.trial_resources``
      overrides it); a trial given a GPU evaluates on it;
    - ``worst_metric``: no architecture scores worse (the hypervolume's reference).
    """

    name: ClassVar[str]
    Settings: ClassVar[type[Section]]
    metric: ClassVar[str]
    mode: ClassVar[str] = "max"
    penalty: ClassVar[float] = 0.0
    worst_metric: ClassVar[float] = 0.0
    default_resources: ClassVar[dict[str, float]] = {"CPU": 1}

    def __init__(self, settings: Section):
        self.settings = settings

    @property
    @abstractmethod
    def space(self) -> SearchSpace:
        """The search space of this objective."""

    @property
    def config(self) -> dict[str, Any]:
        """Constant keys of every trial config (none by default)."""
        return {}

    @abstractmethod
    def cost(self, arch: Mapping[str, Any]) -> dict[str, float]:
        """Costs of ``arch`` known before evaluating it (what a constraint can bound)."""

    @abstractmethod
    def evaluate(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """Score the architecture in a trial ``config`` (runs on a Ray worker).

        Returns ``metric``, the costs known after evaluation and ``arch_id``.
        """

    def check_resources(self, resources: Mapping[str, float]) -> None:
        """A ``UserError`` when one trial's ``resources`` (``sweep.trial_resources``, ``CPU``/``GPU`` keys) cannot
        run this objective as its settings ask (none by default)."""

    def constraint(self, max_flops: float | None, max_latency: float | None) -> Constraint | None:
        """The sweep's one constraint on this objective's costs (None: unconstrained).

        A latency limit bounds ``latency_cost``; an objective that cannot provide the
        bounded cost raises a ``UserError`` saying which setting is missing.
        """
        if max_flops is not None and max_latency is not None:
            raise UserError("sweep: give one constraint, max_latency or max_flops, not both")
        if max_flops is not None:
            return Constraint("flops", float(max_flops))
        if max_latency is not None:
            return Constraint(self.latency_cost, float(max_latency))
        return None

    def cost_for(self, constraint: Constraint | None) -> CostFn:
        """The cost function searchers check ``constraint`` with (``cost`` unless a bounded cost must be measured)."""
        return self.cost

    @property
    def latency_cost(self) -> str:
        """The name of the latency cost a latency limit bounds."""
        return "latency_ms"

    def optimum(self, constraint: Constraint | None) -> float | None:
        """The best feasible metric reachable, where known (a tabular benchmark); None otherwise."""
        return None

    def reported_costs(self) -> tuple[str, ...]:
        """The costs every evaluated trial reports (what a multi-objective sweep can trade the metric off against)."""
        return tuple(self.cost(self.space.min_arch()))

    def worst_cost(self, name: str) -> float | None:
        """The largest value of cost ``name`` over the space, where known (a hypervolume reference)."""
        return None

    def pareto_front(self, constraint: Constraint | None, cost: str) -> list[tuple[float, float]] | None:
        """The true front of (metric, ``cost``) among the architectures ``constraint`` admits, where known."""
        return None

    def record(self) -> dict[str, Any]:
        """What sweep.json, the Parquet metadata and the report show of this objective."""
        return {"benchmark": self.name, "metric": self.metric, "mode": self.mode}

    def admits_some(self, constraint: Constraint | None, samples: int = 20_000, seed: int = 0) -> bool:
        """Whether ``constraint`` admits any of ``samples`` random architectures (checked before a sweep starts)."""
        import random

        if constraint is None:
            return True
        rng = random.Random(seed)
        cost = self.cost_for(constraint)
        return any(constraint.admits(cost(self.space.sample(rng))) for _ in range(samples))

    def arch(self, config: Mapping[str, Any]) -> Arch:
        """The architecture inside a trial config."""
        return self.space.from_config(config)

    trains: ClassVar[bool] = False  # a trial reports once (False) or every epoch, with checkpoints (True)

    def trial_function(self):
        """The Tune function of this objective's trials (called with ``objective=self``)."""
        return run_trial


def run_trial(config: dict, objective: Objective) -> None:
    """The Tune function of a sweep trial: evaluate the architecture (or report its recorded result).

    Reports the objective's metrics, ``feasible`` (a sweep runs only feasible
    architectures) and ``finished_at`` (wall clock, orders trials that finish in
    the same second).
    """
    from ray import tune

    recorded = config.get(ANSWER_KEY)
    metrics = json.loads(recorded) if recorded else objective.evaluate(config)
    tune.report({**metrics, "feasible": True, "finished_at": time.time()})
