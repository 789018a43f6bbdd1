"""A resource constraint checked the same way for every searcher.

A cost function maps an architecture to named costs (``latency_ms``,
``flops``, ``params`` …); a ``Constraint`` bounds one of them from above.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from raynas.errors import UserError, check_positive

CostFn = Callable[[Mapping[str, Any]], Mapping[str, float]]


@dataclass(frozen=True)
class Constraint:
    """``costs[metric] <= limit``.

    >>> Constraint("latency_ms", 20).admits({"latency_ms": 12.5})
    True
    """

    metric: str
    limit: float

    def __post_init__(self) -> None:
        check_positive(f"constraint limit for {self.metric!r}", self.limit)

    def admits(self, costs: Mapping[str, float]) -> bool:
        if self.metric not in costs:
            raise UserError(
                f"constraint metric {self.metric!r} is not among the costs of this objective; costs: {sorted(costs)}"
            )
        return float(costs[self.metric]) <= self.limit

    def to_dict(self) -> dict:
        return {"metric": self.metric, "limit": self.limit}


def is_feasible(constraint: Constraint | None, cost: CostFn, arch: Mapping[str, Any]) -> bool:
    """Whether ``arch`` meets ``constraint`` (always, without one)."""
    return constraint is None or constraint.admits(cost(arch))
