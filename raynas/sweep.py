"""A sweep: every (searcher, seed) run at once, as one Ray Tune experiment on the cluster it joins.

``run_sweep(config)``:

1. checks everything it can before touching Ray or the disk (the config, the
   objective's files and columns, that the constraint admits some
   architecture) — a sweep that cannot start writes nothing;
2. joins the cluster (``--address``, ``RAY_ADDRESS``, a running one, else a
   private local Ray: ``raynas.cluster.connect``);
3. runs one Tune experiment whose searcher (``raynas.sweep_search``)
   multiplexes the runs, every trial asking for ``trial_resources`` so an
   autoscaler sees queued trials as demand, with one live progress line;
4. writes ``trials.parquet`` (``analysis.results``) when every run is done.

``resume=True`` continues the sweep in ``config.out`` (``Tuner.restore``):
finished trials stay, trials in flight are proposed again, nothing finished
is evaluated twice. The folder layout is ``raynas.sweep_folder``'s.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from ray.tune import Callback
from ray.tune.schedulers import FIFOScheduler

from raynas.cluster import QUIET_TUNE, tune_environment
from raynas.config import SweepConfig
from raynas.errors import UserError, check_choice
from raynas.progress import Progress, duration, eta, quiet_ray_logs, status_fields
from raynas.searchers import MULTI_OBJECTIVE, make_searcher
from raynas.sweep_folder import SweepFolder
from raynas.sweep_search import RunSearch, SweepSearcher
from trainables.objective import Objective

# Fields that say what a sweep is; --resume refuses to change them (the others only change how it runs).
DEFINING = ("benchmark", "searchers", "budget", "seeds", "max_latency", "max_flops", "searcher_options", "trade_off",
            "hv_reference")


class SweepPlan:
    """A validated sweep, before anything runs: its objective, constraint and record (``sweep.json``)."""

    def __init__(self, config: SweepConfig):
        if not config.out:
            raise UserError("sweep.out: required (the sweep directory)")
        self.config = config
        self.folder = SweepFolder(config.out)
        self.objective: Objective = config.objective()
        self.constraint = self.objective.constraint(config.max_flops, config.max_latency)
        self.cost = self.objective.cost_for(self.constraint)
        self.runs = [(name, seed) for seed in range(config.seeds) for name in config.searchers]
        objective, trade_off = self.objective, config.trade_off
        if trade_off is not None:
            check_choice("sweep.trade_off", trade_off, objective.reported_costs())
            for name in config.searchers:
                check_choice("sweep.searchers (with sweep.trade_off)", name, MULTI_OBJECTIVE)
        elif "cds_pareto" in config.searchers:
            raise UserError("sweep.searchers: 'cds_pareto' needs sweep.trade_off, the cost it trades the metric "
                            f"off against; allowed values: {list(objective.reported_costs())}")
        if config.early_stopping is not None and not objective.trains:
            raise UserError(f"sweep.early_stopping: the {objective.name!r} objective's trials report once; early "
                            f"stopping needs an objective whose trials train epoch by epoch (e.g. 'ssr')")
        # what each run's searcher optimises: the metric, or the metric and the trade-off together
        self.metrics = [objective.metric, trade_off] if trade_off else objective.metric
        self.modes = [objective.mode, "min"] if trade_off else objective.mode

    def hv_reference(self) -> dict[str, float]:
        """The hypervolume's reference point: the worst possible metric and, per cost, the constraint's
        limit or the space's worst value (where known), overridden by ``sweep.hv_reference``."""
        objective = self.objective
        reference = {objective.metric: objective.worst_metric}
        for cost in objective.reported_costs():
            if self.constraint is not None and self.constraint.metric == cost:
                reference[cost] = self.constraint.limit
            elif objective.worst_cost(cost) is not None:
                reference[cost] = objective.worst_cost(cost)
        return reference | dict(self.config.hv_reference or {})
    @property
    def settings(self) -> dict[str, Any]:
        """What the sweep is: saved as ``sweep.json`` and as the Parquet ``raynas`` metadata."""
        space = self.objective.space
        return {
            **self.objective.record(),
            "constraint": self.constraint.to_dict() if self.constraint else None,
            "budget": self.config.budget,
            "seeds": list(range(self.config.seeds)),
            "searchers": list(self.config.searchers),
            "space": space.name,
            "dimensions": [d.name for d in space.dimensions],
            "trade_off": self.config.trade_off,
            "hv_reference": self.hv_reference(),
            "config": self.config.dump(),
        }

    def preflight(self) -> None:
        """Checks that need no Ray: a trial's resources can run the objective; the constraint admits something."""
        self.objective.check_resources(self.config.trial_resources or self.objective.default_resources)
        if not self.objective.admits_some(self.constraint):
            raise UserError(f"constraint {self.constraint.to_dict()} admits none of 20000 random architectures of "
                            f"space {self.objective.space.name!r}; raise the limit")

    def check_resume(self, resume: bool) -> bool:
        """Whether the sweep continues one on disk (same definition) or starts anew."""
        if not self.folder.exists():
            return False
        if not resume:
            raise UserError(f"out: {self.folder.path} already holds a sweep; pass --resume to continue it "
                            f"or choose a new --out")
        saved = self.folder.read_settings()["config"]
        now = self.config.dump()
        changed = sorted(k for k in DEFINING if saved.get(k) != now.get(k))
        changed += sorted(k for k in set(saved) | set(now)
                          if k not in SweepConfig.model_fields and saved.get(k) != now.get(k))
        if changed:
            raise UserError(f"--resume: settings {changed} differ from the sweep in {self.folder.path}; "
                            f"saved: { {k: saved.get(k) for k in changed} }")
        return True

    def searcher(self) -> SweepSearcher:
        config, objective = self.config, self.objective
        runs = []
        for name, seed in self.runs:
            inner = make_searcher(name, objective.space, self.constraint, self.metrics, self.modes, seed,
                                  config.budget, self.cost, **config.searcher_options.get(name, {}))
            inner.set_search_properties(self.metrics, self.modes, objective.space.to_tune())
            runs.append(RunSearch(name, seed, inner, objective.space, self.cost, self.constraint, config.budget,
                                  objective.metric, objective.mode, objective.penalty, config.max_concurrent_trials))
        return SweepSearcher(runs, objective.metric, objective.mode, self.folder, config.max_concurrent_total,
                             trains=objective.trains)

    def scheduler(self):
        """ASHA when asked for (trials that train), else first in, first out."""
        from ray.tune.schedulers import ASHAScheduler

        stopping = self.config.early_stopping
        if stopping is None:
            return SweepScheduler()
        return ASHAScheduler(metric=self.objective.metric, mode=self.objective.mode, max_t=self.objective.max_epochs,
                             grace_period=stopping.grace_period, reduction_factor=stopping.reduction_factor)

    def trial_resources(self) -> dict[str, float]:
        """Tune's resource request of one trial (``CPU``/``GPU`` as ``cpu``/``gpu``, custom ones as given)."""
        resources = self.config.trial_resources or self.objective.default_resources
        return {{"CPU": "cpu", "GPU": "gpu"}.get(k, k): v for k, v in resources.items()}


class SweepScheduler(FIFOScheduler):
    """First in, first out, in constant time per step.

    Tune's controller starts pending trials in the order they were added by
    itself; ``FIFOScheduler`` only names one to start first, by scanning every
    trial of the experiment at every step — quadratic in a sweep's 10^4 trials.
    """

    def choose_trial_to_run(self, tune_controller):
        return None


class SweepProgress(Callback):
    """The live view of a sweep: runs and evaluations done, best so far per searcher, time left.

    For trials that train (``epochs``: the most a trial runs), a line per epoch report and the
    status counts epochs, so its time left moves while the first trials run (an upper bound: early
    stopping ends some trials before their last epoch).
    """

    def __init__(self, runs: list[tuple[str, int]], budget: int, metric: str, mode: str,
                 epochs: int | None = None, costs: tuple[str, ...] = (), period: float = 1.0):
        self.runs, self.budget, self.metric, self.mode, self.period = runs, budget, metric, mode, period
        self.epochs, self.costs = epochs, costs
        self.done: dict[tuple[str, int], int] = {}
        self.best: dict[str, float] = {}
        self.running: dict[str, int] = {}  # trial id -> epochs reported (trials that train)
        self.started = self.shown = 0.0

    @property
    def progress(self) -> Progress:
        """The sweep's display (Tune pickles its callbacks with the experiment; displays stay in the driver)."""
        return Progress.current(prefix="sweep: ")

    def setup(self, **info) -> None:
        self.started, self.done, self.best, self.running = time.time(), {}, {}, {}

    def _count(self, trial) -> None:
        result = trial.last_result or {}
        config = trial.config
        if self.metric not in result or "searcher" not in config:
            return
        key = (config["searcher"], int(config["seed"]))
        self.done[key] = self.done.get(key, 0) + 1
        value, name = float(result[self.metric]), key[0]
        better = max if self.mode == "max" else min
        self.best[name] = value if name not in self.best else better(self.best[name], value)

    def on_step_begin(self, iteration: int, trials: list, **info) -> None:
        if iteration == 0 or not self.done:  # a restored experiment: count what is there
            for trial in trials:
                if trial.status == "TERMINATED":
                    self._count(trial)

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        if self.epochs is None or self.metric not in result:
            return
        epoch = self.running[trial.trial_id] = int(result["training_iteration"])
        figures = {name: result[name] for name in (self.metric, *self.costs) if name in result}
        self.progress.line(f"{trial.config['searcher']} seed {trial.config['seed']} trial {trial.trial_id} "
                           f"epoch {epoch}/{self.epochs}: {status_fields(figures)}")

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self.running.pop(trial.trial_id, None)
        self._count(trial)
        key = (trial.config.get("searcher"), trial.config.get("seed"))
        if self.done.get(key) == self.budget:
            self.progress.line(f"{key[0]} seed {key[1]}: {self.budget} feasible evaluations done "
                               f"[{duration(time.time() - self.started)}]")

    def on_step_end(self, iteration: int, trials: list, **info) -> None:
        if time.time() - self.shown >= self.period:
            self._render()

    def _render(self) -> None:
        now = self.shown = time.time()
        evaluated = sum(self.done.values())
        total = self.budget * len(self.runs)
        finished = sum(1 for key in self.runs if self.done.get(key, 0) >= self.budget)
        best = "  ".join(f"{name} {value:.4g}" for name, value in sorted(self.best.items()))
        elapsed = now - self.started
        work = f"evaluations {evaluated}/{total}"
        done, todo = evaluated, total
        if self.epochs is not None:  # a finished trial counts all its epochs: early stopping saves the rest
            done, todo = evaluated * self.epochs + sum(self.running.values()), total * self.epochs
            work += f" (epochs {done}/{todo})"
        self.progress.status(f"runs {finished}/{len(self.runs)}  {work}  best {self.metric}: {best or '-'}  "
                             f"elapsed {duration(elapsed)}  ETA {duration(eta(elapsed, done, todo))}")

    def on_experiment_end(self, trials: list, **info) -> None:
        self._render()
        self.progress.close()


def trial_dirname(trial) -> str:
    """A Tune trial's folder: ``SweepFolder.trial_dir_name`` (says which run it belongs to)."""
    return SweepFolder.trial_dir_name(trial.config["searcher"], trial.config["seed"], trial.trial_id)


def queued_trials(plan: SweepPlan, resources: dict[str, float]) -> int:
    """How many trials Tune keeps queued: twice the slots the cluster has now (at least 16), so slots never
    idle and an autoscaler sees demand beyond them; never more than the runs' limits allow in flight."""
    import ray

    cluster = ray.cluster_resources()
    slots = min((cluster.get({"cpu": "CPU", "gpu": "GPU"}.get(k, k), 0.0) / v for k, v in resources.items() if v > 0),
                default=16)
    queued = max(16, int(2 * slots))
    limits = [plan.config.max_concurrent_total]
    if plan.config.max_concurrent_trials is not None:
        limits.append(plan.config.max_concurrent_trials * len(plan.runs))
    return min([queued] + [n for n in limits if n is not None])


def run_sweep(config: SweepConfig, resume: bool = False, address: str | None = None, verbose: bool = False,
              progress: Progress | None = None) -> Path:
    """Run (or continue) the sweep; returns the path of ``trials.parquet``.

    Raises ``KeyboardInterrupt`` when it was stopped (Ctrl+C) before every run finished.
    """
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback

    from analysis.results import load_sweep, write_trials
    from raynas.cluster import connect

    plan = SweepPlan(config)
    plan.preflight()
    resumed = plan.check_resume(resume)
    progress = progress or Progress(prefix="sweep: ")
    connect(address, verbose)  # an unreachable cluster fails here, before anything is written
    folder = plan.folder
    if not resumed:
        folder.create(plan.settings)
    quiet_ray_logs(str(folder.log_file), verbose)
    resources = plan.trial_resources()
    trainable = tune.with_resources(tune.with_parameters(plan.objective.trial_function(), objective=plan.objective),
                                    resources)
    if resumed:
        repair_torn_state(folder.experiment)
    if resumed and restorable(folder.experiment):
        progress.line(f"continuing {folder.path}")
        # trials that train continue from their checkpoints; one-shot evaluations are proposed again
        tuner = tune.Tuner.restore(str(folder.experiment), trainable=trainable,
                                   resume_unfinished=plan.objective.trains, resume_errored=False,
                                   restart_errored=False)
    else:
        progress.line(f"{len(plan.runs)} runs ({', '.join(config.searchers)} × {config.seeds} seeds), "
                      f"{config.budget} feasible evaluations each, trials ask for {resources} -> {folder.path}")
        objective = plan.objective
        callbacks = [JsonLoggerCallback(), SweepProgress(
            plan.runs, config.budget, objective.metric, objective.mode,
            epochs=objective.max_epochs if objective.trains else None, costs=objective.reported_costs())]
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(search_alg=plan.searcher(), scheduler=plan.scheduler(), num_samples=-1,
                                        reuse_actors=True, trial_dirname_creator=trial_dirname),
            run_config=tune.RunConfig(storage_path=str(folder.path), name=SweepFolder.EXPERIMENT, verbose=0,
                                      callbacks=callbacks,
                                      failure_config=tune.FailureConfig(max_failures=config.max_failures)),
        )
    started = time.time()
    # queued trials: see ``queued_trials``; of Tune's result loggers only the JSON one (per-trial CSV and
    # TensorBoard files cost more than a tabular trial itself: BENCHMARKS.md); its console tables off
    with tune_environment(TUNE_MAX_PENDING_TRIALS_PG=str(queued_trials(plan, resources)), **QUIET_TUNE), \
            progress.active():
        tuner.fit()
    state = SweepSearcher.saved_state(folder.experiment)
    for summary in state.summaries():
        progress.line(f"{summary['searcher']:<12} seed {summary['seed']:<3} {summary['feasible']} feasible, "
                      f"{summary['infeasible']} infeasible, {summary['repeats']} repeats"
                      + (f", {summary['failed']} FAILED" if summary["failed"] else "")
                      + f", best {plan.objective.metric} {summary['best']:.4g}")
    if not state.complete:
        raise KeyboardInterrupt(f"stopped after {time.time() - started:.0f} s with {state.unfinished} of "
                                f"{len(plan.runs)} runs unfinished; continue with --resume")
    try:
        trials = load_sweep(folder.path)
    except UserError as nothing:  # every trial failed: the summaries above say so
        progress.line(f"no {folder.trials_file.name} written: {nothing}")
        return folder.trials_file
    path = write_trials(trials, folder.trials_file, folder.read_settings())
    progress.line(f"wrote {path} [{duration(time.time() - started)}]")
    return path


STATE_FILES = ("experiment_state-{}.json", "search_gen_state-{}.json", "searcher-state-{}.pkl")


def restorable(experiment: Path) -> bool:
    """Whether Tune can continue the experiment: it saved its state and the searcher's at least once. A driver
    killed before that (or a state lost) leaves only ``tuner.pkl``, from which Tune would restore an
    experiment that ends at once; the sweep then starts a new one, and the searcher answers what the journal
    holds from it (``SweepSearcher.recover_from_journal``)."""
    from ray import tune

    return tune.Tuner.can_restore(str(experiment)) and any(experiment.glob("experiment_state-*.json")) \
        and any(experiment.glob("searcher-state-*.pkl"))


def _readable_json(file: Path) -> bool:
    try:
        json.loads(file.read_text())
        return True
    except (OSError, ValueError):
        return False


def staged_states(path: Path, name: str = "experiment_state-*.json") -> list[Path]:
    """This sweep's experiment states called ``name`` (a glob) in the drivers' staging folders under Ray's temp
    dir, where Tune writes each save before copying it into the experiment folder ``path``: readable ones that
    name this sweep's folder (its storage path, plain or hex-encoded)."""
    # Ray's temp dir on this machine: RAY_TMPDIR, else the system's (TMPDIR, else /tmp), as Ray chooses it
    temp = os.environ.get("RAY_TMPDIR") or tempfile.gettempdir()
    pattern = os.path.join(temp, "ray", "session_*", "artifacts", "*", path.name, "driver_artifacts", name)
    marks = (str(path.parent), str(path.parent).encode().hex())
    return [staged for staged in map(Path, glob.glob(pattern))
            if _readable_json(staged) and any(mark in staged.read_text() for mark in marks)]


def repair_torn_state(path: Path) -> None:
    """Undo a driver killed while Tune copied its experiment state into ``path``.

    Tune writes the experiment and searcher state into the driver's staging
    folder (under the Ray temp dir), then copies them into the experiment
    folder one file at a time, not atomically: a kill during the copy leaves
    a truncated ``experiment_state-*.json`` (Tune would take it for an empty
    experiment) or files of two different saves. The staging copy, complete
    and consistent, is put back whenever it is still there; a truncated state
    without one is a clear error saying what to do.
    """
    states = sorted(path.glob("experiment_state-*.json"))
    if not states:
        return
    session = states[-1].name[len("experiment_state-"):-len(".json")]
    for staged in staged_states(path, states[-1].name)[:1]:
        for template in STATE_FILES:
            if (staged.parent / template.format(session)).exists():
                shutil.copy2(staged.parent / template.format(session), path / template.format(session))
        return
    if not _readable_json(states[-1]):
        raise UserError(f"--resume: {states[-1]} was cut off when the sweep's driver died and no complete copy "
                        f"is left; remove {path.parent} to run the sweep again")
