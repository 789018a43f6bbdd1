"""How far a sweep's ranking holds: fine-tune some of its sub-networks with one recipe and compare ranks.

A supernet sweep ranks sub-networks by their inherited-weight score.
``RankCheck(sweep_dir, settings).run(progress)`` takes two sets of ``k``
sub-networks from it:

- ``spread``: evaluated sub-networks spread evenly over the sweep's FLOPs
  range (sorted by FLOPs, ``k`` of them at even steps): does the supernet
  rank networks of different sizes right?
- ``top_k``: the ``k`` best feasible ones by the sweep's metric, the
  decision the search actually makes under its constraint;

fine-tunes each once with the same recipe (``finetune``'s loop: inherited
weights, Ray Train; one Ray Tune trial per sub-network, as many at once as
the cluster holds, so an interrupted check resumes where it stopped),
scores it on every validation image, and gives per set Kendall's τ and
Spearman's ρ between the score the sweep ranked by and the fine-tuned score,
with bootstrap intervals (``analysis.rank_correlation``). The result goes to
``SWEEP_DIR/rank_check/rank_check.json`` (``SweepFolder.rank_check_file``),
which the report shows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import Field
from ray.tune import Callback

from raynas.cluster import DRIVER_TRIAL_RESOURCES, QUIET_TUNE, tune_environment
from raynas.errors import UserError
from raynas.progress import Progress
from raynas.settings import Section, Whole
from raynas.sweep_folder import SweepFolder
from raynas.training_config import DataSection, EvaluationSection, ScalingSection
from trainables.finetune import Recipe, make_job, trainer

SETS = ("spread", "top_k")


class RankCheckSettings(Section):
    """The ``rank_check`` section (``python -m raynas rank-check SWEEP_DIR``)."""

    SECTION = "rank_check"

    k: Whole(3) = 8  # sub-networks per set
    recipe: Recipe = Field(default_factory=lambda: Recipe(epochs=4, steps_per_epoch=40, batch_size=8, lr=5e-4,
                                                          warmup_steps=10))
    data: dict[str, Any] = Field(default_factory=dict)  # changes to the supernet's data section (e.g. base_size)
    evaluation: EvaluationSection = Field(default_factory=lambda: EvaluationSection(calibration_images=32))
    scaling: ScalingSection = Field(default_factory=ScalingSection)  # Ray Train workers of one fine-tuning run
    max_concurrent: Whole(1) | None = None  # fine-tuning runs at once; None: as many as the cluster holds
    resamples: Whole(100) = 2000  # bootstrap resamples of the intervals


class RankCheckProgress(Callback):
    """The check's live view: the status follows the runs' epochs, a line per fine-tuned sub-network (Tune
    pickles its callbacks with the experiment; the display is the driver's ``Progress.current()``)."""

    def __init__(self, total: int, epochs: int):
        self.total, self.epochs, self.done = total, epochs, 0

    def on_trial_result(self, iteration, trials, trial, result, **info):
        running = sum(t.status == "RUNNING" for t in trials)
        Progress.current().status(f"{self.done}/{self.total} fine-tuned, {running} running; "
                                  f"{trial.config['arch_id']} epoch {result['epoch']}/{self.epochs} "
                                  f"val mIoU {result['val_miou']:.4f}")

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.done += 1
        last = trial.last_result
        Progress.current().line(f"{self.done}/{self.total} {trial.config['arch_id']}: inherited "
                                f"{last['inherited_miou']:.4f} (all val images) -> fine-tuned {last['val_miou']:.4f}")


def rank_trial(config: dict, jobs: dict, scaling: dict, storage: str) -> None:
    """One Tune trial: fine-tune the sub-network ``config["arch_id"]`` in a Ray Train run Tune follows."""
    from ray.tune.integration.ray_train import TuneReportCallback

    arch_id = config["arch_id"]
    trainer(jobs[arch_id], ScalingSection.load(scaling), Path(storage), arch_id,
            callbacks=[TuneReportCallback()]).fit()


class RankCheck:
    """A validated rank check before anything runs: which sub-networks, from which supernet, on which data."""

    def __init__(self, sweep_dir: str | Path, settings: RankCheckSettings):
        from analysis.curves import evaluations_of
        from analysis.results import load_results
        from search_spaces import get_space
        from trainables.checkpoints import checkpoint_dir, read_meta
        from trainables.finetune import FinetuneSettings, select_rows
        from trainables.recalibration import spread

        trials, sweep = load_results(sweep_dir)
        if sweep.get("benchmark") != "supernet":
            raise UserError(f"rank-check: {sweep_dir} is a {sweep.get('benchmark')!r} sweep; the check fine-tunes "
                            f"the sub-networks of a sweep over a trained supernet (benchmark 'supernet')")
        self.settings, self.sweep = settings, sweep
        self.folder = SweepFolder(sweep_dir)
        metric = sweep["metric"]
        rows = evaluations_of(trials, metric).drop_duplicates("arch_id")
        if len(rows) < settings.k:
            raise UserError(f"rank_check.k: the sweep has {len(rows)} evaluated sub-networks, fewer than k = "
                            f"{settings.k}")
        by_flops = rows.sort_values(["flops", "arch_id"], kind="stable")
        chosen = {"spread": by_flops.iloc[spread(len(by_flops), settings.k)],
                  "top_k": select_rows(trials, sweep, FinetuneSettings(top_k=settings.k))}
        self.sets = {name: list(frame["arch_id"]) for name, frame in chosen.items()}
        self.checkpoint = str(checkpoint_dir(sweep["checkpoint"]))  # a clear error when it is gone
        self.meta = read_meta(self.checkpoint)
        space = get_space(self.meta["space"], **self.meta["space_options"])
        self.models = {}
        for frame in chosen.values():
            for _, row in frame.iterrows():
                self.models[row["arch_id"]] = {
                    "arch": space.validate({d: row[f"config/{d}"] for d in sweep["dimensions"]}),
                    "flops": float(row["flops"]), "inherited": float(row[metric])}
        self.data = DataSection.load(self.meta["config"]["data"]).updated(settings.data, "rank_check.data")
        plan_file = self.folder.rank_check_plan
        if plan_file.is_file():  # an earlier check: go on with it only if it is the same one
            earlier = json.loads(plan_file.read_text())
            changed = sorted(k for k, v in self.plan().items() if earlier.get(k) != v)
            if changed:
                raise UserError(f"rank-check: {self.folder.rank_check} holds a check with other {changed}; "
                                f"move it away to check again with these settings")

    def plan(self) -> dict[str, Any]:
        """What decides the check's results (a rerun with the same plan resumes it)."""
        return {"sets": self.sets, "checkpoint": self.checkpoint, "recipe": self.settings.recipe.dump(),
                "data": self.data.dump(), "evaluation": self.settings.evaluation.dump()}

    def run(self, progress: Progress) -> dict[str, Any]:
        """Fine-tune every chosen sub-network (finished ones are kept), then the correlations; the result."""
        from ray import tune

        from analysis.rank_correlation import rank_agreement

        settings, out = self.settings, self.folder.rank_check
        jobs = {arch_id: make_job(m["arch"], self.checkpoint, self.data, settings.recipe, settings.evaluation,
                                  test=False) for arch_id, m in self.models.items()}
        out.mkdir(parents=True, exist_ok=True)
        self.folder.rank_check_plan.write_text(json.dumps(self.plan(), indent=1))
        concurrent = settings.scaling.runs_at_once(settings.max_concurrent)
        trainable = tune.with_resources(tune.with_parameters(rank_trial, jobs=jobs, scaling=settings.scaling.dump(),
                                                             storage=str(out / "models")), DRIVER_TRIAL_RESOURCES)
        experiment = out / "tune"
        if tune.Tuner.can_restore(str(experiment)):
            tuner = tune.Tuner.restore(str(experiment), trainable=trainable, resume_unfinished=True,
                                       resume_errored=True)
        else:
            tuner = tune.Tuner(trainable, param_space={"arch_id": tune.grid_search(sorted(jobs))},
                               tune_config=tune.TuneConfig(max_concurrent_trials=concurrent),
                               run_config=tune.RunConfig(storage_path=str(out), name="tune", verbose=0,
                                                         callbacks=[RankCheckProgress(len(jobs),
                                                                                      settings.recipe.epochs)]))
        progress.line(f"fine-tuning {len(jobs)} sub-networks ({settings.k} spread over the FLOPs range, the "
                      f"{settings.k} best feasible; {settings.recipe.epochs} epochs × "
                      f"{settings.recipe.steps_per_epoch} steps each), {concurrent} at a time")
        with tune_environment(**QUIET_TUNE), progress.active():
            grid = tuner.fit()
        failed = [r for r in grid if r.error is not None]
        if failed:
            raise RuntimeError(f"rank-check: {len(failed)} fine-tuning run(s) failed, e.g. {failed[0].error}; "
                               f"run the command again to retry them")
        for result in grid:
            model = self.models[result.config["arch_id"]]
            model["finetuned"] = float(result.metrics["val_miou"])
            model["inherited_all_val"] = result.metrics["inherited_miou"]
        summary = {"sweep": str(self.folder.path), "metric": self.sweep["metric"], "supernet": self.checkpoint,
                   "init": self.meta.get("init"), "recipe": settings.recipe.dump(), "data": settings.data,
                   "models": self.models}
        for name, ids in self.sets.items():
            inherited = [self.models[i]["inherited"] for i in ids]
            finetuned = [self.models[i]["finetuned"] for i in ids]
            summary[name] = rank_agreement(inherited, finetuned, settings.resamples) | {"arch_ids": ids}
            line = summary[name]
            progress.line(f"{name}: n {line['n']}, Kendall tau {line['kendall_tau']:.3f} "
                          f"[{line['ci_low']:.3f}, {line['ci_high']:.3f}], Spearman rho {line['spearman']:.3f}")
        self.folder.rank_check_file.write_text(json.dumps(summary, indent=1))
        return summary
