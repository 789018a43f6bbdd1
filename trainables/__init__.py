"""What Ray runs, and the objectives a sweep can search.

An ``Objective`` says what one Tune trial evaluates: the search space, the
Tune trainable, the metric and its mode, the cost function the constraint
reads, and the constant trial config. Register a new one in ``OBJECTIVES``
(name -> "module:factory"; the factory takes keyword options).

Every trainable reports the objective metric (e.g. ``accuracy``, ``miou``),
its costs (``latency_ms``, ``flops``, ``params`` where known), ``feasible`` and
``arch_id``. A trial whose config says ``feasible: False`` is answered at once
with ``penalty`` as its metric, without the expensive evaluation.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

from raynas.constraints import CostFn
from raynas.errors import UserError
from search_spaces.base import SearchSpace

OBJECTIVES = {
    "nb201": "trainables.tabular_benchmark:nb201_objective",
    "supernet": "trainables.subnet_evaluation:supernet_objective",
}


@dataclass
class Objective:
    """What a sweep's trials evaluate."""

    name: str
    space: SearchSpace
    trainable: Callable[[dict], None]
    metric: str
    mode: str
    cost: CostFn
    config: dict[str, Any] = field(default_factory=dict)  # constant keys of every trial config
    penalty: float = 0.0  # metric reported for an infeasible proposal
    settings: dict[str, Any] = field(default_factory=dict)  # recorded in sweep.json / Parquet metadata
    resources: dict[str, float] = field(default_factory=lambda: {"cpu": 0.01})
    latency_cost: str = "latency_ms"  # the cost a latency constraint bounds (measured or predicted)


def make_objective(name: str, **options) -> Objective:
    """The objective registered as ``name``, built with ``options``."""
    if name not in OBJECTIVES:
        raise UserError(f"benchmark: {name!r} is unknown; allowed values: {list(OBJECTIVES)}")
    module, factory = OBJECTIVES[name].split(":")
    return getattr(importlib.import_module(module), factory)(**options)
