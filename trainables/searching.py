"""Searches that train: an ``Objective`` whose trial is a whole search run, epoch by epoch.

A differentiable search (SSR, ``trainables.ssr_search``) or a progressive
shrinking (HR-NAS, ``trainables.shrinking``) trains a supernet and its
architecture (parameters or importance factors) together and ends with one
discrete architecture. In
a sweep such a method is an objective like any other: its ``space`` is the
method's *hyperparameters* (so any Tune searcher — random, Optuna, CDS —
proposes them), and one trial is one search run:

- every epoch the trial reports the method's own figures (``epoch``) and the
  discrete architecture it holds now (``found_arch`` as JSON and
  ``found_arch_id``), scored like every other architecture — the objective's
  ``metric`` with the run's own weights (BN recalibrated), ``flops``,
  ``params`` — with a checkpoint, so Tune schedulers (ASHA:
  ``sweep.early_stopping``) can stop poor runs, a stopped run still names an
  architecture, and ``Tuner.restore`` resumes a run from its last epoch.

A subclass passes its hyperparameter space and the space the found
architectures live in (``arch_space``) to ``__init__`` and implements
``start`` (a fresh run from its hyperparameters), ``epoch`` (one epoch;
returns its figures), ``done``, ``found`` (the discrete architecture now),
``score`` (the metrics of that architecture with the run's weights),
``state``/``restore`` (everything a checkpoint needs) and ``weights``. Its
data is built where the trial runs and kept in ``_data``, which is never
pickled to the workers.
"""

from __future__ import annotations

import json
import tempfile
import time
from abc import abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Mapping

import torch

from raynas.devices import torch_device
from search_spaces.base import SearchSpace
from trainables.objective import Objective

RUN_STATE = "run.pt"


class SearchThatTrains(Objective):
    """The contract of a search method that trains (see the module docstring)."""

    trains: ClassVar[bool] = True
    max_epochs_setting: ClassVar[str] = "epochs"  # the settings field bounding a run's epochs

    def __init__(self, settings, space: SearchSpace, arch_space: SearchSpace):
        super().__init__(settings)
        self._space, self._arch_space = space, arch_space
        self._data: Any = None  # built by the subclass on the worker that runs the trial

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_data"} | {"_data": None}

    @property
    def space(self) -> SearchSpace:
        """The method's hyperparameters: what the sweep's searchers propose."""
        return self._space

    @property
    def arch_space(self) -> SearchSpace:
        """The (weight-sharing) space the found architectures belong to."""
        return self._arch_space

    def cost(self, arch: Mapping[str, Any]) -> dict[str, float]:
        return {}  # a run's cost is known only when it ends

    def reported_costs(self) -> tuple[str, ...]:
        return ("flops", "params")

    @abstractmethod
    def start(self, hyperparameters: Mapping[str, Any], device: str) -> Any:
        """A fresh run's state from the trial's hyperparameters."""

    @abstractmethod
    def epoch(self, run: Any) -> dict[str, Any]:
        """Train one epoch; returns the epoch's figures (entropy, candidates left, FLOPs …)."""

    @abstractmethod
    def done(self, run: Any) -> bool:
        """Whether the run has ended (e.g. a discrete architecture, or the epoch limit)."""

    @abstractmethod
    def found(self, run: Any) -> dict[str, Any]:
        """The discrete architecture the run holds now."""

    @abstractmethod
    def score(self, run: Any, arch: Mapping[str, Any]) -> dict[str, Any]:
        """The metric, ``flops`` and ``params`` (and latency, where measured) of ``arch`` with the run's weights."""

    @abstractmethod
    def state(self, run: Any) -> dict[str, Any]:
        """Everything a checkpoint needs to continue the run."""

    @abstractmethod
    def restore(self, hyperparameters: Mapping[str, Any], state: Mapping[str, Any], device: str) -> Any:
        """The run a checkpoint holds."""

    @abstractmethod
    def weights(self, run: Any) -> tuple[dict, dict[str, Any]]:
        """The run's supernet as a supernet checkpoint: ``(state_dict, meta)`` with the meta keys of
        ``trainables.checkpoints.read_meta`` (space, space_options, num_classes, ignore_index, config.data),
        so ``finetune`` extracts a found architecture with the run's weights like any supernet's."""

    @property
    def max_epochs(self) -> int:
        return getattr(self.settings, self.max_epochs_setting)

    def trial_function(self):
        return run_training_trial

    def evaluate(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """A whole run in one call (no reports in between): what ``run_training_trial`` does, condensed."""
        run = self.start(config, torch_device())
        metrics: dict[str, Any] = {}
        while not self.done(run):
            metrics = self.epoch(run)
        return metrics | self.final(run)

    def final(self, run: Any) -> dict[str, Any]:
        """The architecture the run holds now, scored."""
        arch = self.found(run)
        return {**self.score(run, arch), "found_arch": json.dumps(arch, sort_keys=True),
                "found_arch_id": self.arch_space.arch_id(arch)}


def run_training_trial(config: dict, objective: SearchThatTrains) -> None:
    """The Tune function of a trial of a search that trains: an epoch per report, each with a checkpoint
    and the architecture the run holds (``SearchThatTrains.final``); resumes from the trial's checkpoint."""
    from ray import tune

    from trainables.checkpoints import write_checkpoint

    device = torch_device()  # the GPU the trial asked for, else the CPU
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            run = objective.restore(config, torch.load(Path(directory) / RUN_STATE, map_location=device,
                                                       weights_only=False), device)
    else:
        run = objective.start(config, device)
    while not objective.done(run):
        started = time.perf_counter()
        metrics = objective.epoch(run) | {"epoch_s": time.perf_counter() - started} | objective.final(run)
        with tempfile.TemporaryDirectory() as directory:
            torch.save(objective.state(run), Path(directory) / RUN_STATE)
            state, meta = objective.weights(run)
            # the run trained what it holds, not the largest sub-network as a network: nothing to distil from
            write_checkpoint(directory, {"model": state}, meta | {"teacher": False})
            tune.report({**metrics, "feasible": True, "finished_at": time.time()},
                        checkpoint=tune.Checkpoint.from_directory(directory))


def forever(loader):
    """Batches of ``loader``, pass after pass."""
    while True:
        yield from loader
