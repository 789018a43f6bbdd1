"""The sweep end to end through Ray Tune: Parquet read back, resume after Ctrl+C, clear errors."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from analysis.curves import best_so_far
from analysis.regret import compare
from analysis.results import load_results
from raynas.cli import main
from raynas.config import SweepConfig, build, load_sections
from raynas.errors import UserError
from raynas.sweep import RUN_DONE_FILE, run_sweep
from search_spaces.nb201 import TabularBenchmark

COLUMNS = dict(accuracy_column="cifar10_test_acc", latency_column="lat_raspi4_ms")
DIMS = ["edge_1_0", "edge_2_0", "edge_2_1", "edge_3_0", "edge_3_1", "edge_3_2"]


def sweep_config(table, out, **fields) -> SweepConfig:
    return build(SweepConfig, {"table": str(table), "out": str(out), **COLUMNS, **fields}, "sweep")


def test_small_sweep_writes_one_tidy_row_per_trial(ray_local, nb201_table, tmp_path, capsys):
    config = sweep_config(nb201_table, tmp_path / "sweep", searchers=["cds", "optuna"],
                          budget=5, seeds=1, max_latency=15.0, max_concurrent_trials=2)
    run_sweep(config)
    trials, settings = load_results(tmp_path / "sweep")

    assert list(trials.columns) == ["searcher", "seed", "order", "trial_id", "arch_id", *[f"config/{d}" for d in DIMS],
                                    "accuracy", "latency_ms", "feasible", "wall_time_s"]
    assert settings["constraint"] == {"metric": "latency_ms", "limit": 15.0}
    assert settings["table"] == str(Path(nb201_table).resolve()) and settings["budget"] == 5
    bench = TabularBenchmark(nb201_table, **COLUMNS)
    for (searcher, seed), run in trials.groupby(["searcher", "seed"]):
        assert run["feasible"].sum() == 5  # the budget counts feasible architectures only
        assert sorted(run["order"]) == list(range(1, len(run) + 1))
        assert run.sort_values("order")["wall_time_s"].is_monotonic_increasing
        for _, row in run.iterrows():
            arch = {d: row[f"config/{d}"] for d in DIMS}
            truth = bench.lookup(arch)
            assert row["latency_ms"] == pytest.approx(truth["latency_ms"])
            assert row["feasible"] == (truth["latency_ms"] <= 15.0)
            assert row["accuracy"] == pytest.approx(truth["accuracy"] if row["feasible"] else 0.0)
            assert row["arch_id"] == bench.space.arch_id(arch)
    ours = trials[trials["searcher"] == "cds"]
    assert ours["feasible"].all()
    assert not ours.duplicated(["searcher", "seed", "arch_id"]).any()

    capsys.readouterr()
    assert main(["compare", str(tmp_path / "sweep"), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["optimum"] == pytest.approx(max(r["accuracy"] for _, r in bench.rows() if r["latency_ms"] <= 15))
    assert printed["searchers"] == {}  # no budget of 25/50/100/200 fits a budget of 5


def _result_files(run_dir: Path) -> int:
    return sum(1 for _ in run_dir.glob("*/result.json")) if run_dir.is_dir() else 0


@pytest.mark.slow  # a subprocess sweep, Ctrl+C, then three Tuners: about a minute on an idle 2-core machine
def test_resume_continues_an_interrupted_sweep_without_re_evaluating(ray_local, nb201_table, tmp_path):
    out = tmp_path / "sweep"
    args = ["--table", str(nb201_table), "--accuracy-column", "cifar10_test_acc", "--latency-column",
            "lat_raspi4_ms", "--searchers", "cds", "--budget", "10", "--seeds", "2",
            "--max-concurrent-trials", "2", "--out", str(out)]
    proc = subprocess.Popen([sys.executable, "-m", "raynas", "sweep", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        while _result_files(out / "cds" / "seed_1") < 3:  # seed 0 done, seed 1 under way
            assert proc.poll() is None and time.time() < deadline, proc.stderr.read() if proc.poll() else "timeout"
            time.sleep(0.5)
        proc.send_signal(signal.SIGINT)  # Ctrl+C
        assert proc.wait(timeout=120) == 130, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert (out / "cds" / "seed_0" / RUN_DONE_FILE).exists()
    assert not (out / "cds" / "seed_1" / RUN_DONE_FILE).exists()
    finished_mtime = (out / "cds" / "seed_0" / RUN_DONE_FILE).stat().st_mtime
    before = {p.parent.name: json.loads(p.read_text().splitlines()[-1])["accuracy"]
              for p in (out / "cds" / "seed_1").glob("*/result.json") if p.read_text().strip()}
    assert len(before) >= 3

    run_sweep(sweep_config(nb201_table, out, searchers=["cds"], budget=10, seeds=2, max_concurrent_trials=2),
              resume=True)
    trials, _ = load_results(out)
    assert (out / "cds" / "seed_0" / RUN_DONE_FILE).stat().st_mtime == finished_mtime  # skipped, not re-run
    for seed, run in trials.groupby("seed"):
        assert len(run) == 10 and run["feasible"].all()
        assert run["arch_id"].is_unique  # no architecture evaluated twice, across the interruption
    seed1 = out / "cds" / "seed_1"
    for name, accuracy in before.items():  # trials finished before Ctrl+C kept their single result
        lines = (seed1 / name / "result.json").read_text().splitlines()
        assert len(lines) == 1 and json.loads(lines[0])["accuracy"] == accuracy


@pytest.mark.parametrize("argv, message", [
    (["--searchers", "cds,hyperband"], "sweep.searchers: 'hyperband' is not allowed; allowed values: ['cds'"),
    (["--budget", "0"], "sweep.budget: must be a whole number >= 1, got 0"),
    (["--accuracy-column", "top1"], "accuracy column: 'top1' is not a column"),
    (["--latency-column", "lat_pixel"], "latency column: 'lat_pixel' is not a column"),
])
def test_cli_errors_name_the_field(nb201_table, tmp_path, capsys, argv, message):
    base = {"--table": str(nb201_table), "--accuracy-column": "cifar10_test_acc",
            "--latency-column": "lat_raspi4_ms", "--out": str(tmp_path / "o")}
    for flag, value in zip(argv[::2], argv[1::2]):
        base[flag] = value
    assert main(["sweep", *[x for kv in base.items() for x in kv]]) == 2
    assert message in capsys.readouterr().err


def test_missing_table_is_a_clear_error(tmp_path, capsys):
    code = main(["sweep", "--table", str(tmp_path / "none.parquet"), "--accuracy-column", "a", "--out", str(tmp_path)])
    assert code == 2 and "does not exist" in capsys.readouterr().err


def test_config_file_rejects_unknown_fields_and_sections(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("sweep:\n  budgett: 5\n")
    with pytest.raises(UserError, match=r"sweep: unknown field\(s\) \['budgett'\]; allowed fields: \['benchmark'"):
        load_sections(path, {"sweep": SweepConfig})
    path.write_text("sweeep: {}\n")
    with pytest.raises(UserError, match=r"unknown section\(s\) \['sweeep'\]"):
        load_sections(path, {"sweep": SweepConfig})


def test_shipped_config_is_valid():
    config = load_sections(Path(__file__).parent.parent / "configs" / "nb201_compare.yaml", {"sweep": SweepConfig})
    assert config["sweep"].budget == 200 and "cds" in config["sweep"].searchers


def test_regret_counts_only_feasible_trials_in_completion_order():
    rows = []
    for seed, accs in {0: [90, 95, 91, 99], 1: [92, 93, 94, 97]}.items():
        for order, acc in enumerate(accs, 1):
            rows.append({"searcher": "s", "seed": seed, "order": order, "accuracy": float(acc),
                         "feasible": not (seed == 0 and order == 2)})  # 95 was infeasible
    trials = pd.DataFrame(rows)
    curves = best_so_far(trials, "accuracy", "max")
    assert curves[curves["evaluations"] == 2]["best"].tolist() == [91.0, 93.0]
    settings = {"metric": "accuracy", "mode": "max", "budget": 25, "benchmark": "other", "constraint": None,
                "searchers": ["s"]}
    result = compare(trials, settings)
    assert result["optimum"] == 99.0 and result["optimum_source"] == "sweep"
    assert result["searchers"] == {}  # no run reached 25 feasible evaluations
