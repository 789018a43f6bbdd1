"""The main job: bad input is one clear line before anything starts; end to end it writes the report."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from raynas.cli import main
from tests.conftest import run_raynas

REPO = Path(__file__).resolve().parent.parent


def _config(tmp_path, **sweep) -> Path:
    data = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    data["sweep"].update(sweep)
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("sweep, extra, message", [
    ({"searchers": ["cds", "hyperband"]}, [], "sweep.searchers[1]: 'hyperband' is not allowed; allowed values: ['cds'"),
    ({"budget": 0}, [], "sweep.budget: must be a whole number >= 1; got 0"),
    ({"max_flops": -1}, [], "sweep.max_flops: must be a number > 0"),
    ({}, ["--data-root", "/nonexistent/camvid"], "data root: /nonexistent/camvid is not a folder"),
    ({}, ["--address", "127.0.0.1:1"], "--address: no Ray cluster answers at '127.0.0.1:1'"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, sweep, extra, message):
    import ray

    ray.shutdown()  # as a command starts: not connected yet (connected, `connect` leaves the connection as it is)
    out = tmp_path / "out"
    assert main(["demo", "--config", str(_config(tmp_path, **sweep)), "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_unknown_section_and_missing_config_are_clear(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("supernet: {}\nsweeps: {}\n")
    assert main(["demo", "--config", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "unknown section(s) ['sweeps']" in capsys.readouterr().err
    assert main(["demo", "--config", str(tmp_path / "none.yaml"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err


# the whole main job at a tiny size, then run again (everything continues, nothing is done twice)
def test_the_main_job_trains_sweeps_five_searchers_finetunes_and_writes_the_report(tmp_path, camvid_dir):
    data = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    few_images = {"calibration_images": 8, "val_images": 8}
    data["supernet"]["training"].update(epochs=1, steps_per_epoch=3)
    data["supernet"]["evaluation"].update(few_images)
    data["sweep"]["budget"] = 3
    data["sweep"]["evaluation"].update(few_images)
    data["sweep"]["latency"].update(resolution=64, repeats=2)
    data["finetune"]["recipe"].update(epochs=1, steps_per_epoch=2)
    data["finetune"]["data"] = {"base_size": 96, "crop_size": [96, 128]}  # the supernet's size, not twice it
    data["finetune"]["evaluation"] = few_images
    config = tmp_path / "demo.yaml"
    config.write_text(yaml.safe_dump(data))
    out = tmp_path / "demo"
    demo = ["demo", "--config", str(config), "--out", str(out), "--data-root", str(camvid_dir)]
    run = run_raynas(demo, tmp_path / "logs_first", timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    for step in ("1/4", "2/4", "3/4", "4/4"):
        assert f"demo: {step}" in run.stdout
    from analysis.results import load_results

    trials, settings = load_results(out / "sweep")
    assert set(trials["searcher"]) == {"cds", "evolution", "optuna", "nevergrad", "random"}
    assert (trials[trials["feasible"] & ~trials["repeat"]].groupby("searcher").size() == 3).all()
    assert trials.loc[trials["feasible"], "latency_ms"].gt(0).all()
    report = (out / "report.html").read_text()
    assert "measured locally" in report and "test mIoU" in report
    assert 'id="plot-examples_' in report and 'id="plot-per_class_' in report  # what the shipped model sees
    (model,) = (out / "sweep" / "finetune").glob("*/metrics.json")
    assert (model.parent / "model.onnx").is_file() and "The model: test mIoU" in run.stdout
    again = run_raynas(demo, tmp_path / "logs_again", timeout=900)
    assert again.returncode == 0 and "supernet already trained" in again.stdout and "continuing" in again.stdout
    assert "already fine-tuned" in again.stdout
    assert load_results(out / "sweep")[0].equals(trials)  # nothing evaluated again
