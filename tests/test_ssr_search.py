"""SSR as a search that trains: its regularisers, its epochs, and a sweep of its hyperparameters with ASHA."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch

from analysis.report import write_report
from analysis.results import load_epochs, load_results
from raynas.config import SweepConfig
from raynas.errors import UserError
from raynas.progress import Progress
from raynas.sweep import run_sweep
from trainables.finetune import FinetunePlan, FinetuneSettings
from trainables.ssr_search import REGULARIZERS, SSRObjective, SSRSettings

TINY = {"data": {"dataset": "synthetic", "crop_size": 32,
                 "synthetic": {"length": 24, "val_length": 8, "size": 48, "seed": 0}},
        "epochs": 3, "steps_per_epoch": 2, "batch_size": 2, "resolution": [64, 64],
        "evaluation": {"calibration_images": 4, "val_images": 8, "batch_size": 4}}


@pytest.fixture(scope="module")
def objective() -> SSRObjective:
    return SSRObjective(SSRSettings.load(TINY))


def test_every_regulariser_is_finite_even_when_a_candidate_probability_vanishes(objective):
    paper = objective.space.paper()
    values = {}
    for kind in REGULARIZERS:
        run = objective.start({**paper, "regularizer": kind}, "cpu")
        logits, _ = next(iter(run.net.groups("depth")))
        with torch.no_grad():
            logits[0] = -60.0  # sigma(-60) ~ 1e-26: log p would be -60 without the floor
        value = objective.regularizer(run)
        values[kind] = float(value)
        assert math.isfinite(values[kind])
        if kind != "none":
            value.backward()
            assert all(torch.isfinite(p.grad).all() for p in run.net.arch_parameters() if p.grad is not None)
    assert values["none"] == 0.0 and values["ssr"] < 0 < values["entropy"]


def test_an_epoch_reports_entropy_candidates_and_shrinks_towards_a_discrete_architecture():
    objective = SSRObjective(SSRSettings.load({**TINY, "epochs": 3, "steps_per_epoch": 4}))  # enough steps to shrink
    run = objective.start({**objective.space.paper(), "arch_lr": 0.1, "threshold": 0.3}, "cpu")
    first = objective.epoch(run)
    assert first["epoch"] == 1 and first["entropy"] > 0 and first["shrinking_level"] == "depth"
    assert {"entropy_depth", "candidates_channel", "relaxed_miou", "removed"} <= set(first)
    epochs = [first]
    while not objective.done(run):
        epochs.append(objective.epoch(run))
    last = epochs[-1]
    # it shrank: candidates were removed, and the architecture distribution is sharper than after epoch 1
    assert sum(e["removed"] for e in epochs) > 0 and last["entropy"] < first["entropy"]
    arch = objective.found(run)
    objective.arch_space.validate(arch)
    scored = objective.score(run, arch)
    assert 0 <= scored["miou"] <= 1 and scored["flops"] > 0 and scored["params"] > 0
    assert scored["discretization_gap"] == pytest.approx(run.history[-1]["relaxed_miou"] - scored["miou"])


def test_a_sweep_searches_ssr_hyperparameters_with_asha_and_finetunes_what_it_found(ray_local, tmp_path):
    out = tmp_path / "sweep"
    config = SweepConfig.load({"benchmark": "ssr", "searchers": ["random", "cds"], "budget": 3, "seeds": 1,
                               "out": str(out), "early_stopping": {"grace_period": 1, "reduction_factor": 2},
                               "max_concurrent_trials": 1, **TINY})
    trials, settings = load_results(run_sweep(config, progress=Progress(stream=open(os.devnull, "w"))))
    evaluated = trials[trials["feasible"] & ~trials["repeat"]]
    assert len(evaluated) == 6 and set(evaluated["searcher"]) == {"random", "cds"}
    assert evaluated["config/regularizer"].isin(REGULARIZERS).all()
    found = [json.loads(a) for a in evaluated["found_arch"]]
    assert all(SSRObjective(SSRSettings.load(TINY)).arch_space.validate(a) for a in found)
    assert (evaluated["flops"] > 0).all() and evaluated["miou"].between(0, 1).all()
    epochs = load_epochs(out)
    per_trial = epochs.groupby("trial_id")["epoch"].max()
    assert set(per_trial.index) == set(evaluated["trial_id"]) and per_trial.max() <= 3
    assert (per_trial < 3).any()  # ASHA stopped at least one run before its epoch limit
    assert epochs["entropy"].notna().all()
    report = write_report(trials, settings, tmp_path / "report.html", epochs=epochs)
    assert "epochs_entropy" in report.read_text()
    # the best found architecture is fine-tuned with its own run's weights, like any supernet's
    ft = FinetuneSettings.load({"recipe": {"epochs": 1, "steps_per_epoch": 2, "batch_size": 2},
                                "scaling": {"num_workers": 1}, "out": str(tmp_path / "models"),
                                "evaluation": {"calibration_images": 4, "val_images": 8}})
    (model,) = FinetunePlan(out, ft).run(Progress(stream=open(os.devnull, "w")))
    best = evaluated.sort_values("miou").iloc[-1]
    assert model["arch_id"] == best["found_arch_id"] and 0 < model["val_miou"] <= 1
    assert abs(model["val_miou"] - model["val_miou_torch"]) <= 0.002  # the shipped file scores as PyTorch did
    assert (tmp_path / "models" / model["arch_id"] / "model.onnx").is_file()


def test_bad_ssr_settings_are_clear_errors():
    with pytest.raises(UserError, match="sweep.epochs: must be a whole number >= 1; got 0"):
        SSRSettings.load({**TINY, "epochs": 0})
    with pytest.raises(UserError, match="not allowed; allowed values"):
        SSRSettings.load({**TINY, "data": {"dataset": "kitti"}})
