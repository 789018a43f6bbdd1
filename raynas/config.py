"""Experiment YAML files → validated dataclasses.

The pattern: one dataclass per top-level section, every field with a default,
a ``check()`` that validates values with ``raynas.errors`` helpers. ``build``
turns a mapping into that dataclass and rejects unknown keys, naming the
section's allowed fields. ``load_sections`` reads a YAML file and builds the
sections a command asks for.

>>> build(SweepConfig, {"table": "nb201.parquet", "accuracy_column": "acc", "out": "runs/x",
...                     "searchers": ["cds", "random"], "budget": 50}, "sweep").budget
50
>>> build(SweepConfig, {"budgett": 50}, "sweep")  # doctest: +ELLIPSIS
Traceback (most recent call last):
raynas.errors.UserError: sweep: unknown field(s) ['budgett']; allowed fields: ['benchmark', ...
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, TypeVar

from raynas.errors import UserError, check_whole

T = TypeVar("T")


def build(cls: type[T], data: Mapping[str, Any] | None, section: str) -> T:
    """``cls(**data)`` after rejecting unknown keys, then ``check()``; errors name ``section.field``."""
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise UserError(f"{section}: must be a mapping of fields, got {data!r}")
    allowed = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise UserError(f"{section}: unknown field(s) {unknown}; allowed fields: {allowed}")
    obj = cls(**data)
    obj.check()
    return obj


def read_sections(path: str | Path, allowed: Iterable[str]) -> dict[str, Any]:
    """The top-level mapping of a YAML file; keys other than ``allowed`` are rejected, naming the allowed ones."""
    import yaml

    allowed = list(allowed)
    file = Path(path)
    if not file.is_file():
        raise UserError(f"config: file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as err:
        raise UserError(f"config: {path} is not valid YAML ({err})") from None
    if not isinstance(data, Mapping):
        raise UserError(f"config: {path} must hold a mapping of sections {allowed}")
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise UserError(f"config: unknown section(s) {unknown} in {path}; allowed sections: {allowed}")
    return dict(data)


def load_sections(path: str | Path, sections: Mapping[str, type]) -> dict[str, Any]:
    """Read a YAML experiment file and build each of ``sections`` (name -> dataclass)."""
    data = read_sections(path, sections)
    return {name: build(cls, data.get(name), name) for name, cls in sections.items()}


@dataclass
class SweepConfig:
    """The ``sweep`` section: which objective, searchers, budget, seeds, constraint and output."""

    benchmark: str = "nb201"
    table: str | None = None  # nb201: the Parquet/CSV table
    accuracy_column: str | None = None
    latency_column: str | None = None
    max_latency: float | None = None  # constraint latency_ms <= max_latency (None: unconstrained)
    max_flops: float | None = None  # constraint flops (MACs) <= max_flops
    supernet: str | None = None  # supernet: the checkpoint (folder, its supernet.pt or the training run)
    evaluation: dict[str, Any] = field(default_factory=dict)  # supernet: EvaluationSettings fields
    latency: dict[str, Any] | None = None  # supernet: measure each trial's latency ({resolution, threads, ...})
    latency_model: str | None = None  # supernet: a fitted LatencyModel (JSON) predicting latency_pred_ms
    searchers: list[str] = field(default_factory=lambda: ["cds", "evolution", "optuna", "nevergrad", "random"])
    budget: int = 200  # feasible architectures evaluated per (searcher, seed)
    seeds: int = 1  # seeds 0 .. seeds-1
    out: str | None = None
    max_concurrent_trials: int = 2  # per Tuner
    max_failures: int = 2  # retries of a trial that raises (Tune's FailureConfig) before it is recorded failed
    searcher_options: dict[str, dict[str, Any]] = field(default_factory=dict)

    def check(self) -> None:
        from raynas.searchers import SEARCHER_NAMES
        from trainables import OBJECTIVES

        if self.benchmark not in OBJECTIVES:
            raise UserError(f"sweep.benchmark: {self.benchmark!r} is not allowed; allowed values: {list(OBJECTIVES)}")
        if isinstance(self.searchers, str):
            self.searchers = [s.strip() for s in self.searchers.split(",") if s.strip()]
        if not isinstance(self.searchers, list) or not self.searchers:
            raise UserError(f"sweep.searchers: must be a non-empty list; allowed values: {list(SEARCHER_NAMES)}")
        for name in self.searchers:
            if name not in SEARCHER_NAMES:
                raise UserError(f"sweep.searchers: {name!r} is not allowed; allowed values: {list(SEARCHER_NAMES)}")
        if len(set(self.searchers)) != len(self.searchers):
            raise UserError(f"sweep.searchers: {self.searchers} repeats a searcher")
        check_whole("sweep.budget", self.budget, 1)
        check_whole("sweep.seeds", self.seeds, 1)
        check_whole("sweep.max_concurrent_trials", self.max_concurrent_trials, 1)
        check_whole("sweep.max_failures", self.max_failures, 0)
        for name in ("max_latency", "max_flops"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
                raise UserError(f"sweep.{name}: must be a number > 0, got {value!r}")
        if self.max_latency is not None and self.max_flops is not None:
            raise UserError("sweep: give one constraint, max_latency or max_flops, not both")
        if self.max_latency is not None and self.benchmark == "nb201" and not self.latency_column:
            raise UserError("sweep.max_latency: needs sweep.latency_column (the table column it bounds)")
        if self.max_latency is not None and self.benchmark == "supernet" \
                and self.latency is None and self.latency_model is None:
            raise UserError("sweep.max_latency: needs sweep.latency (measured) or sweep.latency_model (predicted)")
        if not isinstance(self.searcher_options, Mapping):
            raise UserError(f"sweep.searcher_options: must map searcher names to options, got {self.searcher_options!r}")
        for name, options in self.searcher_options.items():
            if name not in SEARCHER_NAMES:
                raise UserError(f"sweep.searcher_options: {name!r} is not a searcher; allowed values: "
                                f"{list(SEARCHER_NAMES)}")
            if not isinstance(options, Mapping):
                raise UserError(f"sweep.searcher_options.{name}: must be a mapping, got {options!r}")
        if self.benchmark == "nb201":
            for name in ("table", "accuracy_column"):
                if not getattr(self, name):
                    raise UserError(f"sweep.{name}: required for benchmark nb201")
        if self.benchmark == "supernet" and not self.supernet:
            raise UserError("sweep.supernet: required for benchmark supernet (a checkpoint of train-supernet)")
        for name in ("evaluation", "latency"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), Mapping):
                raise UserError(f"sweep.{name}: must be a mapping of settings, got {getattr(self, name)!r}")
        if self.out is None:
            raise UserError("sweep.out: required (the sweep directory)")

    def objective_options(self) -> dict[str, Any]:
        """Keyword options of the objective factory (``trainables.make_objective``)."""
        if self.benchmark == "supernet":
            return {"supernet": self.supernet, "latency": self.latency, "latency_model": self.latency_model,
                    "latency_constraint": self.max_latency is not None, **self.evaluation}
        return {"table": self.table, "accuracy_column": self.accuracy_column, "latency_column": self.latency_column}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
