"""One sweep: every (searcher, seed) as its own Ray Tune ``Tuner`` on one Ray cluster.

Each run gets the same objective, budget (feasible architectures) and
constraint. Layout of the sweep directory ``OUT``::

    OUT/sweep.json                 the settings (also in the Parquet metadata)
    OUT/<searcher>/seed_<k>/       Tune's own experiment (restorable)
    OUT/<searcher>/seed_<k>/raynas_run.json   written when that run finished
    OUT/trials.parquet             one row per trial (``analysis.results``)

With ``resume=True`` finished runs are skipped and interrupted ones continue
through ``Tuner.restore(..., resume_errored=True)``: Tune restores the searcher
state (round, incumbent, history, random generator) and its finished trials.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable

from raynas.config import SweepConfig
from raynas.constraints import Constraint
from raynas.errors import UserError
from raynas.searchers import FEASIBLE_KEY, MAX_INFEASIBLE_PER_BUDGET, make_searcher
from trainables import Objective, make_objective

SETTINGS_FILE = "sweep.json"
RUN_DONE_FILE = "raynas_run.json"
TRIALS_FILE = "trials.parquet"
# How often (s) Tune snapshots an experiment: small, so an interrupted run loses few finished trials.
os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")


def constraint_of(config: SweepConfig, objective: Objective) -> Constraint | None:
    """The sweep's one constraint, on the objective's cost of that name (None: unconstrained)."""
    if config.max_flops is not None:
        return Constraint("flops", float(config.max_flops))
    if config.max_latency is not None:
        return Constraint(objective.latency_cost, float(config.max_latency))
    return None


def sweep_settings(config: SweepConfig, objective: Objective) -> dict:
    """What a sweep was: saved as ``sweep.json`` and as the Parquet ``raynas`` metadata."""
    constraint = constraint_of(config, objective)
    return {
        **objective.settings,
        "metric": objective.metric,
        "mode": objective.mode,
        "constraint": constraint.to_dict() if constraint else None,
        "budget": config.budget,
        "seeds": list(range(config.seeds)),
        "searchers": list(config.searchers),
        "searcher_options": config.searcher_options,
        "max_concurrent_trials": config.max_concurrent_trials,
        "max_failures": config.max_failures,
        "dimensions": [d.name for d in objective.space.dimensions],
        "space": objective.space.name,
    }


def run_dir(out: Path, searcher: str, seed: int) -> Path:
    return out / searcher / f"seed_{seed}"


def run_sweep(config: SweepConfig, resume: bool = False, log: Callable[[str], None] = print) -> Path:
    """Run (or continue) the sweep; returns the path of ``trials.parquet`` (absent if no trial finished)."""
    import ray

    from analysis.results import load_sweep, write_trials

    out = Path(config.out).resolve()
    objective = make_objective(config.benchmark, **config.objective_options())
    settings = sweep_settings(config, objective)
    _prepare(out, settings, resume)
    if not ray.is_initialized():
        ray.init(address="local", include_dashboard=False, log_to_driver=False, configure_logging=False)
    runs = [(s, k) for k in range(config.seeds) for s in config.searchers]  # seed-major: early seeds complete first
    todo = [(s, k) for s, k in runs if not (run_dir(out, s, k) / RUN_DONE_FILE).exists()]
    if len(todo) < len(runs):
        log(f"sweep: {len(runs) - len(todo)} of {len(runs)} runs already finished, skipped")
    start = time.time()

    def one(run):
        summary = run_one(out, objective, config, *run)
        failed = f" + {summary['failed']} FAILED ({summary['errors'][0]})" if summary["failed"] else ""
        log(f"sweep: {run[0]:<12} seed {run[1]:<3} {summary['feasible']} feasible + {summary['infeasible']} "
            f"infeasible{failed} trials, best {objective.metric} {summary['best']:.3f}, {summary['wall_s']:.1f} s "
            f"[{time.time() - start:.0f} s]")

    for run in todo:
        one(run)
    try:
        trials = load_sweep(out)
    except UserError as nothing:  # every trial failed: the runs' raynas_run.json say why
        log(f"sweep: no {TRIALS_FILE} written: {nothing}")
        return out / TRIALS_FILE
    path = write_trials(trials, out / TRIALS_FILE, settings)
    log(f"sweep: wrote {path}")
    return path


def run_one(out: Path, objective: Objective, config: SweepConfig, searcher: str, seed: int) -> dict:
    """Run or restore one (searcher, seed) Tuner; write its ``raynas_run.json`` summary."""
    from ray import tune

    path = run_dir(out, searcher, seed)
    trainable = tune.with_resources(objective.trainable, objective.resources)
    started = time.time()
    if tune.Tuner.can_restore(str(path)):
        repair_torn_state(path)
        tuner = tune.Tuner.restore(str(path), trainable=trainable, resume_errored=True)
    else:
        search_alg = make_searcher(searcher, objective.space, constraint_of(config, objective), objective.metric,
                                   objective.mode, seed, config.budget, objective.cost,
                                   **config.searcher_options.get(searcher, {}))
        tuner = tune.Tuner(
            trainable,
            param_space={**objective.space.to_tune(), **objective.config, "searcher": searcher, "seed": seed},
            tune_config=tune.TuneConfig(search_alg=search_alg, num_samples=-1, reuse_actors=True,
                                        max_concurrent_trials=config.max_concurrent_trials),
            run_config=tune.RunConfig(storage_path=str(path.parent), name=path.name, verbose=0,
                                      failure_config=tune.FailureConfig(max_failures=config.max_failures)),
        )
    fit_start = time.time()
    grid = tuner.fit()
    fit_s = time.time() - fit_start
    frame = grid.get_dataframe()
    errors = [str(r.error).strip().splitlines()[-1] for r in grid if r.error is not None]
    feasible = frame[frame[FEASIBLE_KEY].astype(bool)] if len(frame) else frame
    summary = {
        "searcher": searcher, "seed": seed, "trials": len(frame), "feasible": len(feasible),
        "infeasible": len(frame) - len(feasible),
        "best": float(feasible[objective.metric].max()) if len(feasible) else float("nan"),
        "failed": len(errors), "errors": errors[:5],  # trials that still raised after max_failures retries
        "wall_s": time.time() - started, "fit_s": fit_s,
    }
    if summary["feasible"] + summary["failed"] < config.budget and summary["infeasible"] < MAX_INFEASIBLE_PER_BUDGET * config.budget:
        # Tune returns normally when stopped (Ctrl+C): leave the run restorable, stop the sweep
        raise KeyboardInterrupt(f"{searcher} seed {seed} stopped after {summary['feasible']} of {config.budget} "
                                f"feasible trials; continue with --resume")
    (path / RUN_DONE_FILE).write_text(json.dumps(summary, indent=1))
    return summary


STATE_FILES = ("experiment_state-{}.json", "search_gen_state-{}.json", "searcher-state-{}.pkl")


def _readable_json(file: Path) -> bool:
    try:
        json.loads(file.read_text())
        return True
    except (OSError, ValueError):
        return False


def repair_torn_state(path: Path) -> None:
    """Undo a driver killed while Tune copied its experiment state into ``path``.

    Tune writes the experiment and searcher state into the driver's staging
    folder (under the Ray temp dir), then copies them into the experiment
    folder one file at a time, not atomically: a kill during the copy leaves
    a truncated ``experiment_state-*.json`` (Tune would take it for an empty
    experiment) or files of two different saves (the searcher counting a
    trial Tune never heard of). The staging copy, complete and consistent,
    is put back whenever it is still there; a truncated state without one is
    a clear error saying what to do.
    """
    import glob
    import shutil
    import tempfile

    states = sorted(path.glob("experiment_state-*.json"))
    if not states:
        return
    session = states[-1].name[len("experiment_state-"):-len(".json")]
    pattern = os.path.join(tempfile.gettempdir(), "ray", "session_*", "artifacts", "*", path.name,
                           "driver_artifacts", states[-1].name)
    for staged in map(Path, glob.glob(pattern)):
        text = staged.read_text() if _readable_json(staged) else ""
        if str(path.parent) in text or str(path.parent).encode().hex() in text:  # this run's (storage path)
            for template in STATE_FILES:
                if (staged.parent / template.format(session)).exists():
                    shutil.copy2(staged.parent / template.format(session), path / template.format(session))
            return
    if not _readable_json(states[-1]):
        raise UserError(f"--resume: {states[-1]} was cut off when the sweep's driver died and no complete copy "
                        f"is left; remove {path} to run that (searcher, seed) again (other runs are kept)")


def _prepare(out: Path, settings: dict, resume: bool) -> None:
    file = out / SETTINGS_FILE
    if file.exists():
        if not resume:
            raise UserError(f"out: {out} already holds a sweep; pass --resume to continue it or choose a new --out")
        saved = json.loads(file.read_text())
        # a setting that a sweep of an older raynas did not record yet is taken as it is now
        changed = sorted(k for k in saved if saved[k] != settings.get(k))
        if changed:
            raise UserError(f"--resume: settings {changed} differ from the sweep in {out}; "
                            f"saved: { {k: saved.get(k) for k in changed} }")
        return
    out.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps(settings, indent=1))


def load_settings(out: str | Path) -> dict:
    file = Path(out) / SETTINGS_FILE
    if not file.is_file():
        raise UserError(f"sweep directory {out}: no {SETTINGS_FILE} (not a raynas sweep)")
    return json.loads(file.read_text())
