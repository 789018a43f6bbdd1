"""A Tune trainable that looks an NB201 architecture up in a tabular benchmark."""

from __future__ import annotations

from ray import tune

from raynas.searchers import FEASIBLE_KEY
from search_spaces.nb201 import TabularBenchmark
from trainables import Objective


def tabular_trainable(config: dict) -> None:
    """Report ``accuracy``, ``latency_ms``, ``feasible`` and ``arch_id`` of the trial's architecture."""
    bench = TabularBenchmark(config["table"], config["accuracy_column"], config["latency_column"])
    arch = bench.space.from_config(config)
    row = bench.lookup(arch)
    feasible = bool(config.get(FEASIBLE_KEY, True))
    if not feasible:
        row["accuracy"] = config["penalty"]
    tune.report({**row, FEASIBLE_KEY: feasible, "arch_id": bench.space.arch_id(arch)})


def nb201_objective(table: str, accuracy_column: str, latency_column: str | None = None) -> Objective:
    """Maximise a table's accuracy column; the latency column is the cost ``latency_ms``."""
    bench = TabularBenchmark(table, accuracy_column, latency_column)
    return Objective(
        name="nb201",
        space=bench.space,
        trainable=tabular_trainable,
        metric="accuracy",
        mode="max",
        cost=bench.cost,
        config={**bench.settings, "penalty": 0.0},
        penalty=0.0,
        settings={"benchmark": "nb201", **bench.settings},
    )
