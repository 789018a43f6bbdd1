"""NAS-Bench-201 as a sweep objective: a trial looks its cell up in the tabular benchmark."""

from __future__ import annotations

import time
from typing import Any, ClassVar, Mapping

from raynas.constraints import Constraint
from raynas.errors import UserError
from raynas.settings import NonNegative, Section
from search_spaces.nb201 import TabularBenchmark
from trainables.objective import Objective


class NB201Settings(Section):
    """The ``sweep`` fields of the ``nb201`` objective.

    ``eval_seconds`` makes each feasible evaluation take that many seconds of
    wall clock, a stand-in for an expensive evaluation, so scaling and
    any-time behaviour can be studied without a GPU.
    """

    SECTION = "sweep"

    table: str  # the Parquet/CSV table
    accuracy_column: str
    latency_column: str | None = None
    eval_seconds: NonNegative = 0.0


class NB201Objective(Objective):
    """Maximise a table's accuracy column; the latency column is the cost ``latency_ms``.

    >>> from raynas.paths import shared_data_dir
    >>> objective = NB201Objective(NB201Settings.load({"table": str(shared_data_dir() / "nb201/nb201_cifar10.parquet"),
    ...     "accuracy_column": "cifar10_test_acc", "latency_column": "lat_raspi4_ms"}))  # doctest: +SKIP
    >>> objective.optimum(None)  # doctest: +SKIP
    94.373
    """

    name: ClassVar[str] = "nb201"
    Settings: ClassVar[type[Section]] = NB201Settings
    metric: ClassVar[str] = "accuracy"
    mode: ClassVar[str] = "max"
    penalty: ClassVar[float] = 0.0
    default_resources: ClassVar[dict[str, float]] = {"CPU": 1}

    def __init__(self, settings: NB201Settings):
        super().__init__(settings)
        self.bench = TabularBenchmark(settings.table, settings.accuracy_column, settings.latency_column)

    @property
    def space(self):
        return self.bench.space

    def cost(self, arch: Mapping[str, Any]) -> dict[str, float]:
        return self.bench.cost(arch)

    def evaluate(self, config: Mapping[str, Any]) -> dict[str, Any]:
        arch = self.arch(config)
        row = self.bench.lookup(arch)
        if self.settings.eval_seconds:
            time.sleep(self.settings.eval_seconds)
        return {**row, "arch_id": self.space.arch_id(arch)}

    def constraint(self, max_flops: float | None, max_latency: float | None) -> Constraint | None:
        if max_flops is not None:
            raise UserError("sweep.max_flops: the nb201 table has no FLOPs; bound latency with sweep.max_latency")
        if max_latency is not None and not self.settings.latency_column:
            raise UserError("sweep.max_latency: needs sweep.latency_column (the table column it bounds)")
        return super().constraint(max_flops, max_latency)

    def _admitted(self, constraint: Constraint | None) -> list[dict]:
        return [row for _, row in self.bench.rows() if constraint is None or constraint.admits(row)]

    def optimum(self, constraint: Constraint | None) -> float:
        """The table's best accuracy among the cells ``constraint`` admits."""
        return max(row["accuracy"] for row in self._admitted(constraint))

    def worst_cost(self, name: str) -> float | None:
        return max(row[name] for _, row in self.bench.rows()) if name in self.reported_costs() else None

    def pareto_front(self, constraint: Constraint | None, cost: str) -> list[tuple[float, float]] | None:
        """The table's non-dominated (accuracy, ``cost``) pairs among the cells ``constraint`` admits."""
        if cost not in self.reported_costs():
            return None
        front, best = [], -float("inf")
        for row in sorted(self._admitted(constraint), key=lambda r: (r[cost], -r["accuracy"])):
            if row["accuracy"] > best:
                front.append((row["accuracy"], row[cost]))
                best = row["accuracy"]
        return front

    def record(self) -> dict[str, Any]:
        return {**super().record(), **self.bench.settings, "eval_seconds": self.settings.eval_seconds}
