"""The searcher a sweep gives Ray Tune: every (searcher, seed) run of the sweep multiplexed into one.

Why one Tune experiment for the whole sweep (measured in BENCHMARKS.md, "A
sweep on a cluster"): the runs share the cluster at once, Tune's own
scheduling queue keeps the slots full, an autoscaler sees every queued trial
as pending demand, one ``Tuner.restore`` continues everything, and
``ResultGrid.get_dataframe()`` holds the whole sweep with ``config/searcher``
and ``config/seed`` columns. One Tuner per run, run one after another, kept
at most ``max_concurrent_trials`` trials in flight however big the cluster.

``RunSearch`` is one run: its searcher, sees only its own trials. Its budget
counts the feasible architectures it evaluates. A proposal that breaks the
constraint, or repeats an architecture the run already evaluated, is
answered at once — the objective's penalty, or the earlier result — without
a Tune trial, recorded as an answered proposal, and never counted; at most
``MAX_ANSWERED_PER_BUDGET`` × budget of them.

``SweepSearcher`` hands Tune the next proposal of the run with the fewest
trials in flight (then the fewest finished: no run starves), honouring each
run's ``max_concurrent`` and the sweep's ``max_concurrent_total``. It writes
every finished evaluation to the sweep's journal; after a driver was killed,
Tune restores the searcher's last saved state, the in-flight trials of that
state are proposed again, and any evaluation the journal already holds is
answered from it, so no finished architecture is evaluated twice. The
journal is read whether or not a state could be restored (a driver killed
before Tune's first save, a state file that cannot be read): the runs then
start over, and what the journal holds is answered from it.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

from ray.tune.result import AUTO_RESULT_KEYS
from ray.tune.search import Searcher

from raynas.constraints import Constraint, CostFn, is_feasible
from raynas.sweep_folder import SweepFolder
from search_spaces.base import Arch, SearchSpace
from trainables.objective import ANSWER_KEY

MAX_ANSWERED_PER_BUDGET = 20  # a run stops after budget x this many infeasible or repeated proposals
RUN_KEYS = ("searcher", "seed")
_NOT_METRICS = set(AUTO_RESULT_KEYS) | {"trial_id", "done", "experiment_tag", "should_checkpoint", "finished_at"}
WAIT, DONE = "wait", "done"


def metrics_of(result: dict) -> dict[str, Any]:
    """What a trial reported, without Tune's own bookkeeping keys."""
    return {k: v for k, v in result.items() if k not in _NOT_METRICS and not k.startswith("config")}


@dataclass
class RunRecord:
    """What one run has done: plain data, saved with the sweep (``SweepState`` reads it back)."""

    name: str
    seed: int
    budget: int
    metric: str
    mode: str
    issued: int = 0  # feasible proposals issued as Tune trials: the budget counts these
    outstanding: dict[str, tuple[str, Arch]] = field(default_factory=dict)  # Tune trial id -> (searcher's id, arch)
    evaluated: dict[str, dict] = field(default_factory=dict)  # arch_id -> metrics, finished evaluations
    waiting: dict[str, list[str]] = field(default_factory=dict)  # arch_id in flight -> searcher ids repeating it
    answered: list[dict] = field(default_factory=list)  # rows of the proposals answered without a trial
    infeasible: int = 0
    repeats: int = 0
    failed: int = 0
    exhausted: bool = False  # the searcher finished, or the answered cap was hit
    reissue: list[tuple[str, Arch]] = field(default_factory=list)  # in flight when the driver died
    suffix: int = 0

    @property
    def proposing(self) -> bool:
        return bool(self.reissue) or (not self.exhausted and self.issued < self.budget)

    @property
    def complete(self) -> bool:
        return not self.proposing and not self.outstanding

    @property
    def best(self) -> float | None:
        values = [m[self.metric] for m in self.evaluated.values() if m.get(self.metric) is not None]
        return (max if self.mode == "max" else min)(values) if values else None

    def summary(self) -> dict[str, Any]:
        best = self.best
        return {"searcher": self.name, "seed": self.seed, "feasible": len(self.evaluated),
                "infeasible": self.infeasible, "repeats": self.repeats, "failed": self.failed,
                "best": best if best is not None else math.nan}


class RunSearch:
    """One (searcher, seed) run of a sweep: its searcher, budget, constraint and answered proposals."""

    def __init__(self, name: str, seed: int, searcher: Searcher, space: SearchSpace, cost: CostFn,
                 constraint: Constraint | None, budget: int, metric: str, mode: str, penalty: float,
                 max_concurrent: int | None = None):
        self.searcher, self.space, self.cost, self.constraint = searcher, space, cost, constraint
        self.penalty, self.max_concurrent = penalty, max_concurrent
        self.record = RunRecord(name, seed, budget, metric, mode)
        self.recovered: dict[str, dict] = {}  # arch_id -> metrics from the journal, beyond the saved state

    @property
    def key(self) -> tuple[str, int]:
        return (self.record.name, self.record.seed)

    # --- proposals ----------------------------------------------------------
    def propose(self, trial_id: str) -> dict | str:
        """The config of Tune trial ``trial_id``, ``WAIT`` (nothing now) or ``DONE`` (nothing more)."""
        r = self.record
        if not r.proposing:
            return DONE
        if self.max_concurrent is not None and len(r.outstanding) >= self.max_concurrent:
            return WAIT
        if r.reissue:
            searcher_id, arch = r.reissue.pop(0)
            return self._issue(trial_id, searcher_id, arch)
        cap = MAX_ANSWERED_PER_BUDGET * r.budget
        for attempt in range(1000):  # a proposal answered at once is followed by the next one
            if attempt:
                r.suffix += 1
            searcher_id = trial_id if attempt == 0 else f"{trial_id}~{r.suffix}"
            config = self.searcher.suggest(searcher_id)
            if config is None:
                return WAIT
            if config == Searcher.FINISHED:
                r.exhausted = True
                return DONE
            arch = self.space.from_config(config)
            arch_id = self.space.arch_id(arch)
            if not is_feasible(self.constraint, self.cost, arch):
                r.infeasible += 1
                self._answer(searcher_id, arch, {r.metric: self.penalty, **self.cost(arch)}, feasible=False)
            elif arch_id in r.evaluated:
                r.repeats += 1
                self._answer(searcher_id, arch, r.evaluated[arch_id], feasible=True, repeat=True)
            elif any(self.space.arch_id(a) == arch_id for _, a in r.outstanding.values()):
                r.repeats += 1  # answered when the evaluation in flight finishes
                r.waiting.setdefault(arch_id, []).append(searcher_id)
            else:
                return self._issue(trial_id, searcher_id, arch)
            if r.infeasible + r.repeats >= cap:
                r.exhausted = True
                return DONE
        return WAIT

    def _issue(self, trial_id: str, searcher_id: str, arch: Arch) -> dict:
        r = self.record
        r.issued += 1
        r.outstanding[trial_id] = (searcher_id, arch)
        config = {**arch, "searcher": r.name, "seed": r.seed}
        known = self.recovered.pop(self.space.arch_id(arch), None)
        if known is not None:  # evaluated before the driver died: report it again, do not evaluate
            config[ANSWER_KEY] = json.dumps(known)
        return config

    def _answer(self, searcher_id: str, arch: Arch, metrics: dict, feasible: bool, repeat: bool = False) -> None:
        self.searcher.on_trial_complete(searcher_id, result=dict(metrics))
        self.record.answered.append({"searcher": self.record.name, "seed": self.record.seed, "arch": dict(arch),
                                     "arch_id": self.space.arch_id(arch), **metrics, "feasible": feasible,
                                     "repeat": repeat, "finished_at": time.time()})

    # --- results --------------------------------------------------------------
    def complete_trial(self, trial_id: str, result: Optional[dict], error: bool) -> tuple[Arch, Optional[dict]]:
        """Tell the searcher; returns the architecture and the metrics (None for an error)."""
        r = self.record
        searcher_id, arch = r.outstanding.pop(trial_id)
        arch_id = self.space.arch_id(arch)
        waiting = r.waiting.pop(arch_id, [])
        if error or not result:
            r.failed += 1
            self.searcher.on_trial_complete(searcher_id, result=None, error=True)
            for other in waiting:
                self.searcher.on_trial_complete(other, result=None, error=True)
            return arch, None
        metrics = metrics_of(result)
        r.evaluated[arch_id] = metrics
        self.searcher.on_trial_complete(searcher_id, result=dict(result))
        for other in waiting:
            self._answer(other, arch, metrics, feasible=True, repeat=True)
        return arch, metrics

    # --- state -----------------------------------------------------------------
    def get_state(self) -> dict:
        """The record and the searcher's own saved state (``Searcher.save``)."""
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "searcher.pkl")
            self.searcher.save(path)
            with open(path, "rb") as f:
                return {"record": self.record, "searcher": f.read()}

    def set_state(self, state: dict) -> None:
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "searcher.pkl")
            with open(path, "wb") as f:
                f.write(state["searcher"])
            self.searcher.restore(path)
        self.record = state["record"]


class SweepSearcher(Searcher):
    """Every run of a sweep as one Tune ``Searcher`` (see the module docstring)."""

    def __init__(self, runs: Iterable[RunSearch], metric: str, mode: str, folder: SweepFolder | None = None,
                 max_concurrent_total: int | None = None, trains: bool = False):
        super().__init__(metric=metric, mode=mode)
        self.runs = {run.key: run for run in runs}
        self.folder = folder
        self.max_concurrent_total = max_concurrent_total
        # trials that train report every epoch (kept in the folder's epochs.jsonl) and, checkpointed, are
        # resumed by Tune when the sweep is
        self.trains = trains
        self.owner: dict[str, tuple[str, int]] = {}  # Tune trial id -> run key
        self.turn = 0  # rotates ties between equally served runs
        self.started = time.time()
        self.journal_read = False  # the journal is read before the first proposal (and again after a restore)

    @property
    def in_flight(self) -> int:
        return len(self.owner)

    def set_search_properties(self, metric: Optional[str], mode: Optional[str], config: dict, **spec) -> bool:
        return True  # the runs' spaces define what they propose

    def suggest(self, trial_id: str):
        if not self.journal_read:
            self.recover_from_journal()
        if self.max_concurrent_total is not None and self.in_flight >= self.max_concurrent_total:
            return None
        runs = list(self.runs.values())
        self.turn = (self.turn + 1) % len(runs)
        order = sorted(range(len(runs)), key=lambda i: (len(runs[i].record.outstanding),
                                                         len(runs[i].record.evaluated), (i - self.turn) % len(runs)))
        for i in order:
            run = runs[i]
            proposal = run.propose(trial_id)
            if isinstance(proposal, dict):
                self.owner[trial_id] = run.key
                return proposal
        return Searcher.FINISHED if self.complete else None

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self._record_epoch(self.owner.get(trial_id), trial_id, result)

    def _record_epoch(self, key: tuple[str, int] | None, trial_id: str, result: dict | None) -> None:
        """Append a training trial's report to epochs.jsonl (Tune hands a trial's last report, and that of a
        trial a scheduler stops, to ``on_trial_complete`` only)."""
        if self.trains and key is not None and result and self.folder is not None:
            self.folder.append_epoch({"searcher": key[0], "seed": key[1], "trial_id": trial_id,
                                      "metrics": metrics_of(result)})

    def on_trial_complete(self, trial_id: str, result: Optional[dict] = None, error: bool = False) -> None:
        key = self.owner.pop(trial_id, None)
        if key is None:
            return
        self._record_epoch(key, trial_id, result)
        run = self.runs[key]
        arch, metrics = run.complete_trial(trial_id, result, error)
        if metrics is not None and self.folder is not None:
            self.folder.append_journal({"searcher": key[0], "seed": key[1], "trial_id": trial_id,
                                        "arch_id": run.space.arch_id(arch), "arch": arch, "metrics": metrics,
                                        "finished_at": result.get("finished_at", time.time())})

    @property
    def complete(self) -> bool:
        return all(run.record.complete for run in self.runs.values())

    # --- state ---------------------------------------------------------------------
    def save(self, checkpoint_path: str) -> None:
        state = {"runs": {key: run.get_state() for key, run in self.runs.items()}, "turn": self.turn,
                 "started": self.started}
        with open(checkpoint_path, "wb") as f:
            pickle.dump(state, f)

    def restore(self, checkpoint_path: str) -> None:
        """The saved state. Trials in flight then are proposed again (Tune does not resume one-shot
        evaluations) or, for trials that train, continue under their ids (Tune resumes them from their
        checkpoints); evaluations the journal holds beyond the saved state are answered from it."""
        try:
            with open(checkpoint_path, "rb") as f:
                state = pickle.load(f)
        except (OSError, EOFError, pickle.UnpicklingError) as unreadable:  # the runs start over; the journal
            warnings.warn(f"the sweep's saved searcher state {checkpoint_path} cannot be read ({unreadable!r}): "
                          f"its runs start again, evaluations the journal holds are answered from it")
            self.recover_from_journal()
            return
        for key, run_state in state["runs"].items():
            self.runs[key].set_state(run_state)
        self.turn, self.started = state["turn"], state["started"]
        self.owner = {}
        for key, run in self.runs.items():  # repeats waiting on a trial in flight wait on its re-issue
            r = run.record
            if self.trains:
                self.owner |= {trial_id: key for trial_id in r.outstanding}
                continue
            r.reissue = list(r.outstanding.values()) + r.reissue
            r.issued -= len(r.outstanding)  # counted again when re-issued
            r.outstanding = {}
        self.recover_from_journal()

    def recover_from_journal(self) -> None:
        """Every finished evaluation the journal holds beyond what the runs' records count, to be answered from
        it when proposed again: after a restore, and before the first proposal of a sweep that resumed without
        a searcher state (a driver killed before Tune's first save, or a state that could not be read)."""
        self.journal_read = True
        if self.folder is None:
            return
        for entry in self.folder.journal():
            run = self.runs.get((entry["searcher"], entry["seed"]))
            if run is not None and entry["arch_id"] not in run.record.evaluated:
                run.recovered[entry["arch_id"]] = entry["metrics"]

    @staticmethod
    def saved_state(experiment: str | Path) -> "SweepState":
        """The newest state a sweep's searcher saved in its Tune experiment folder (by session, as Tune picks it)."""
        files = sorted(Path(experiment).glob(Searcher.CKPT_FILE_TMPL.format("*")))
        if not files:
            return SweepState({"runs": {}, "started": None})
        with open(files[-1], "rb") as f:
            return SweepState(pickle.load(f))


class SweepState:
    """A saved ``SweepSearcher`` state, read without rebuilding its searchers (for results and reports)."""

    def __init__(self, state: dict):
        self.records: list[RunRecord] = [run["record"] for run in state["runs"].values()]
        self.started: float | None = state["started"]

    @property
    def complete(self) -> bool:
        return bool(self.records) and all(r.complete for r in self.records)

    @property
    def unfinished(self) -> int:
        return sum(not r.complete for r in self.records)

    def summaries(self) -> list[dict]:
        return [r.summary() for r in self.records]

    def answered_rows(self) -> list[dict]:
        """The proposals answered without a trial (infeasible ones, repeats), every run's."""
        return [row for r in self.records for row in r.answered]
