"""Reliability of a sweep: a killed driver resumes, a raising trial is retried, bad input is one clear error."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from analysis.results import load_results
from raynas.cli import main
from raynas.config import SweepConfig, build
from raynas.sweep import run_sweep

NB201 = ["--accuracy-column", "cifar10_test_acc", "--latency-column", "lat_raspi4_ms"]
FLAKY_DIR = "RAYNAS_TEST_FLAKY_DIR"


def flaky_objective(**nb201):
    """The NB201 objective, but a trial's first attempt raises (a marker file per trial remembers it)."""
    from trainables.tabular_benchmark import nb201_objective

    objective = nb201_objective(**nb201)
    objective.trainable = flaky_trainable
    objective.config = {**objective.config, "flaky_dir": os.environ[FLAKY_DIR]}
    return objective


def flaky_trainable(config: dict) -> None:
    from ray import tune

    from trainables.tabular_benchmark import tabular_trainable

    marker = Path(config["flaky_dir"]) / tune.get_context().get_trial_id()
    if not marker.exists():
        marker.write_text("failed once")
        raise RuntimeError("a flaky evaluation")
    tabular_trainable(config)


def _finished_trials(run_dir: Path) -> dict[str, str]:
    """Trial folder -> its result line, for trials with a result."""
    return {p.parent.name: p.read_text() for p in run_dir.glob("*/result.json") if p.read_text().strip()}


def _evaluation_order(trials) -> list[str]:
    """Architecture ids in completion order (with one trial at a time, the order CDS proposed them)."""
    return trials.sort_values("order")["arch_id"].tolist()


def test_killed_driver_resumes_the_same_search_without_re_evaluating(ray_local, nb201_table, tmp_path):
    budget, options = 60, {"cds": {"start_samples": 4}}
    argv = ["--table", str(nb201_table), *NB201, "--searchers", "cds", "--budget", str(budget), "--seeds", "1",
            "--max-concurrent-trials", "1", "--searcher-options", json.dumps(options)]
    out = tmp_path / "killed"
    run = out / "cds" / "seed_0"
    proc = subprocess.Popen([sys.executable, "-m", "raynas", "sweep", *argv, "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.time() + 300
        while len(_finished_trials(run)) < 6 or not list(run.glob("searcher-state-*.pkl")):
            assert proc.poll() is None, proc.stderr.read()
            assert time.time() < deadline, "the sweep did not get going"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray it started: no chance to save anything
        proc.wait()
    assert not (run / "raynas_run.json").exists()
    before = _finished_trials(run)

    assert main(["sweep", "--out", str(out), "--resume"]) == 0  # sweep.json alone says what to continue

    trials, settings = load_results(out)
    assert settings["budget"] == budget and len(trials) == budget and trials["feasible"].all()
    assert trials["arch_id"].is_unique  # no architecture evaluated twice, across the kill
    rerun = [name for name, text in before.items() if (run / name / "result.json").read_text() != text]
    assert len(rerun) <= 1, f"finished trials were evaluated again: {rerun}"  # at most the one in flight

    # CDS went on from its saved round, block and random state: the same search as without the kill
    twin = build(SweepConfig, {"table": str(nb201_table), "accuracy_column": "cifar10_test_acc",
                               "latency_column": "lat_raspi4_ms", "searchers": ["cds"], "budget": budget,
                               "seeds": 1, "max_concurrent_trials": 1, "searcher_options": options,
                               "out": str(tmp_path / "uninterrupted")}, "sweep")
    uninterrupted, _ = load_results(run_sweep(twin, log=lambda line: None))
    assert _evaluation_order(trials) == _evaluation_order(uninterrupted)


def test_a_state_file_cut_off_by_a_kill_is_put_back_from_the_drivers_staging_copy(tmp_path, monkeypatch):
    import tempfile

    from raynas.errors import UserError
    from raynas.sweep import repair_torn_state

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    run = tmp_path / "sweep" / "cds" / "seed_0"
    run.mkdir(parents=True)
    session = "2026-01-01_00-00-00"
    state = json.dumps({"trial_data": [], "storage": str(run.parent)})
    (run / f"experiment_state-{session}.json").write_text(state[:10])  # cut off mid-copy
    (run / f"searcher-state-{session}.pkl").write_bytes(b"old")
    with pytest.raises(UserError, match="cut off when the sweep's driver died.*remove"):
        repair_torn_state(run)

    staging = tmp_path / "tmp" / "ray" / "session_1" / "artifacts" / "2026-01-01" / "seed_0" / "driver_artifacts"
    staging.mkdir(parents=True)
    (staging / f"experiment_state-{session}.json").write_text(state)
    (staging / f"searcher-state-{session}.pkl").write_bytes(b"new")
    repair_torn_state(run)
    assert json.loads((run / f"experiment_state-{session}.json").read_text())["storage"] == str(run.parent)
    assert (run / f"searcher-state-{session}.pkl").read_bytes() == b"new"  # the searcher saved with that state
    repair_torn_state(run)  # a readable state is left alone


def test_a_trial_that_raises_is_retried_and_recorded(ray_local, nb201_table, tmp_path, monkeypatch):
    import trainables

    monkeypatch.setitem(trainables.OBJECTIVES, "flaky", "tests.test_reliability:flaky_objective")
    monkeypatch.setenv(FLAKY_DIR, str(tmp_path / "markers"))
    (tmp_path / "markers").mkdir()
    common = {"benchmark": "flaky", "table": str(nb201_table), "accuracy_column": "cifar10_test_acc",
              "latency_column": "lat_raspi4_ms", "searchers": ["random"], "budget": 6}

    run_sweep(build(SweepConfig, {**common, "out": str(tmp_path / "retried"), "max_failures": 1}, "sweep"),
              log=lambda line: None)
    trials, _ = load_results(tmp_path / "retried")
    assert len(trials) == 6 and trials["feasible"].all() and trials["accuracy"].gt(0).all()
    run = tmp_path / "retried" / "random" / "seed_0"
    assert len(list(run.glob("*/error.txt"))) == 6  # each first failure recorded by Tune beside its trial
    assert json.loads((run / "raynas_run.json").read_text())["failed"] == 0

    lines = []
    run_sweep(build(SweepConfig, {**common, "out": str(tmp_path / "failing"), "max_failures": 0}, "sweep"),
              log=lines.append)
    summary = json.loads((tmp_path / "failing" / "random" / "seed_0" / "raynas_run.json").read_text())
    assert summary["failed"] == 6 and "a flaky evaluation" in summary["errors"][0]
    assert "6 FAILED" in lines[0]
