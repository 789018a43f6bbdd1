"""The ``sweep`` section: which objective, searchers, budget, seeds, constraint, resources and output.

Its fields are the sweep's own (below) plus those of its objective
(``trainables.OBJECTIVES[benchmark].Settings``: e.g. ``table`` and
``accuracy_column`` for ``nb201``, ``supernet`` and ``evaluation`` for
``supernet``), all at the same level of the YAML section. ``dump()`` is the
sweep's record in ``sweep.json``; ``SweepConfig.load(dump)`` rebuilds it,
which is how ``--resume`` continues a sweep from its folder alone.

>>> config = SweepConfig.load({"table": "../shared/data/nb201/nb201_cifar10.parquet",
...     "accuracy_column": "cifar10_test_acc", "out": "runs/x", "searchers": "cds,random", "budget": 50})
>>> config.searchers, config.objective_settings.accuracy_column
(['cds', 'random'], 'cifar10_test_acc')
>>> SweepConfig.load({"budgett": 50})  # doctest: +ELLIPSIS
Traceback (most recent call last):
raynas.errors.UserError: sweep: unknown field(s) ['budgett']; allowed fields: ['accuracy_column', ...
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import BeforeValidator, ConfigDict, Field, PrivateAttr

from raynas.errors import UserError
from raynas.searchers import SEARCHER_NAMES
from raynas.settings import Choice, Positive, Section, Whole


class EarlyStopping(Section):
    """ASHA over the epochs of trials that train: every trial gets ``grace_period`` epochs, then only the
    best 1/``reduction_factor`` of those at each rung go on."""

    SECTION = "sweep.early_stopping"

    grace_period: Whole(1) = 2
    reduction_factor: Whole(2) = 3


def _names(value: Any) -> Any:
    """``"cds,random"`` (a CLI flag) or a list."""
    return [s.strip() for s in value.split(",") if s.strip()] if isinstance(value, str) else value


class SweepConfig(Section):
    """What a sweep runs; see the module docstring for the objective's fields.

    - ``searchers`` × ``seeds`` (0 .. seeds-1) runs, each evaluating ``budget`` feasible
      architectures under one constraint (``max_flops`` or ``max_latency``);
    - ``max_concurrent_trials``: trials in flight per run (None, the default: no limit of its
      own, the cluster is shared fairly); ``max_concurrent_total``: for the whole sweep (None:
      as many as the cluster runs);
    - ``trial_resources``: what one trial asks the cluster for (default: the objective's),
      e.g. ``{"CPU": 2, "GPU": 0.25}``;
    - ``max_failures``: Tune's retries of a trial that raises before it is recorded failed;
    - ``searcher_options``: keyword options per searcher name;
    - ``trade_off``: a multi-objective sweep: optimise the metric and minimise this cost
      (e.g. ``latency_ms``) together (searchers ``cds_pareto``, ``optuna`` — NSGA-II — and ``random``);
    - ``hv_reference``: the hypervolume's reference point, e.g. ``{"accuracy": 0, "latency_ms": 20}``
      (default: the worst possible metric and the constraint's limit, else the worst cost of the space);
    - ``early_stopping``: for objectives whose trials train epoch by epoch (searches that train),
      ASHA on the metric: ``{"grace_period": 2, "reduction_factor": 3}``.
    """

    SECTION: ClassVar[str] = "sweep"
    model_config = ConfigDict(extra="allow")  # the objective's fields, validated by its Settings in check()

    benchmark: str = "nb201"
    searchers: Annotated[list[Choice(*SEARCHER_NAMES)], BeforeValidator(_names)] = \
        Field(default_factory=lambda: ["cds", "evolution", "optuna", "nevergrad", "random"])
    budget: Whole(1) = 200
    seeds: Whole(1) = 1
    out: str | None = None
    max_latency: Positive | None = None
    max_flops: Positive | None = None
    max_concurrent_trials: Whole(1) | None = None
    max_concurrent_total: Whole(1) | None = None
    trial_resources: dict[str, Positive] | None = None
    max_failures: Whole(0) = 2
    searcher_options: dict[Choice(*SEARCHER_NAMES), dict[str, Any]] = Field(default_factory=dict)
    trade_off: str | None = None
    hv_reference: dict[str, float] | None = None
    early_stopping: EarlyStopping | None = None

    _objective_settings: Section | None = PrivateAttr(default=None)

    def check(self, section: str) -> None:
        from trainables import OBJECTIVES, objective_class

        if self.benchmark not in OBJECTIVES:
            raise UserError(f"{section}.benchmark: {self.benchmark!r} is not allowed; "
                            f"allowed values: {list(OBJECTIVES)}")
        if not self.searchers:
            raise UserError(f"{section}.searchers: must name at least one searcher; "
                            f"allowed values: {list(SEARCHER_NAMES)}")
        if len(set(self.searchers)) != len(self.searchers):
            raise UserError(f"{section}.searchers: {self.searchers} repeats a searcher")
        if self.max_latency is not None and self.max_flops is not None:
            raise UserError(f"{section}: give one constraint, max_latency or max_flops, not both")
        settings_cls = objective_class(self.benchmark).Settings
        extra = dict(self.model_extra or {})
        unknown = sorted(set(extra) - set(settings_cls.model_fields))
        if unknown:
            allowed = sorted(set(self.model_fields) | set(settings_cls.model_fields))
            raise UserError(f"{section}: unknown field(s) {unknown}; allowed fields: {allowed}")
        self._objective_settings = settings_cls.load(extra, section)
        self.model_extra.clear()
        self.model_extra.update(self._objective_settings.dump())  # normalised (paths resolved)

    @property
    def objective_settings(self) -> Section:
        """The validated fields of the objective."""
        return self._objective_settings

    def objective(self):
        """The sweep's ``Objective`` (``trainables``), built from its fields."""
        from trainables import objective_class

        return objective_class(self.benchmark)(self._objective_settings)
