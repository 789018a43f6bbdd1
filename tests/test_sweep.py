"""A sweep end to end: one Tune experiment for every run, tidy Parquet, Tune's own dataframe, clear errors."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.regret import bootstrap_ci, compare, format_table, sign_flip_p
from analysis.results import load_results
from raynas.cli import main
from raynas.config import SweepConfig
from raynas.errors import UserError
from raynas.progress import Progress
from raynas.settings import read_sections
from raynas.sweep import run_sweep
from raynas.sweep_folder import SweepFolder
from search_spaces.nb201 import TabularBenchmark
from tests.conftest import joining_env, local_ray_address

COLUMNS = dict(accuracy_column="cifar10_test_acc", latency_column="lat_raspi4_ms")
DIMS = ["edge_1_0", "edge_2_0", "edge_2_1", "edge_3_0", "edge_3_1", "edge_3_2"]


def sweep_config(table, out, **fields) -> SweepConfig:
    return SweepConfig.load({"table": str(table), "out": str(out), **COLUMNS, **fields})


@pytest.fixture(scope="module")
def small_sweep(nb201_table, tmp_path_factory):
    """cds, optuna and random, two seeds, 8 feasible evaluations each under lat <= 15 ms."""
    local_ray_address()
    out = tmp_path_factory.mktemp("sweep") / "s"
    lines = []
    run_sweep(sweep_config(nb201_table, out, searchers=["cds", "optuna", "random"], budget=8, seeds=2,
                           max_latency=15.0), progress=_Lines(lines))
    return out, lines


class _Lines(Progress):
    """A ``Progress`` that keeps what it prints."""

    def __init__(self, lines):
        super().__init__()
        self.lines = lines

    def line(self, text):
        self.lines.append(text)

    status = line

    def close(self):
        pass


def test_a_sweep_is_one_tidy_row_per_proposal(small_sweep, nb201_table):
    out, _ = small_sweep
    trials, settings = load_results(out)
    assert list(trials.columns) == ["searcher", "seed", "order", "trial_id", "arch_id", *[f"config/{d}" for d in DIMS],
                                    "accuracy", "latency_ms", "feasible", "repeat", "wall_time_s"]
    assert settings["constraint"] == {"metric": "latency_ms", "limit": 15.0}
    assert settings["table"] == str(Path(nb201_table).resolve()) and settings["budget"] == 8
    bench = TabularBenchmark(nb201_table, **COLUMNS)
    for (searcher, seed), run in trials.groupby(["searcher", "seed"]):
        evaluated = run[run["feasible"] & ~run["repeat"]]
        assert len(evaluated) == 8  # the budget counts feasible evaluations only
        assert evaluated["arch_id"].is_unique and (evaluated["trial_id"] != "").all()
        assert (run.loc[~run["feasible"] | run["repeat"], "trial_id"] == "").all()  # answered without a trial
        assert sorted(run["order"]) == list(range(1, len(run) + 1))
        assert run.sort_values("order")["wall_time_s"].is_monotonic_increasing
        for _, row in run.iterrows():
            arch = {d: row[f"config/{d}"] for d in DIMS}
            truth = bench.lookup(arch)
            assert row["latency_ms"] == pytest.approx(truth["latency_ms"])
            assert row["feasible"] == (truth["latency_ms"] <= 15.0)
            assert row["accuracy"] == pytest.approx(truth["accuracy"] if row["feasible"] else 0.0)
            assert row["arch_id"] == bench.space.arch_id(arch)
    ours = trials[trials["searcher"].isin(["cds", "random"])]
    assert ours["feasible"].all() and not ours["repeat"].any()
    optuna = trials[trials["searcher"] == "optuna"]
    assert (~optuna["feasible"]).sum() > 0  # Optuna learns the constraint from penalised proposals


def test_tunes_own_dataframe_holds_the_whole_sweep(small_sweep):
    from ray import tune

    from trainables.objective import run_trial

    out, _ = small_sweep
    frame = tune.Tuner.restore(str(SweepFolder(out).experiment), trainable=run_trial).get_results().get_dataframe()
    trials, _ = load_results(out)
    evaluated = trials[trials["trial_id"] != ""]
    assert len(frame) == len(evaluated) == 3 * 2 * 8
    assert frame.groupby(["config/searcher", "config/seed"]).size().eq(8).all()
    assert set(frame["trial_id"]) == set(evaluated["trial_id"])


def test_progress_says_what_each_run_did(small_sweep):
    _, lines = small_sweep
    assert any(line.startswith("6 runs (cds, optuna, random × 2 seeds)") for line in lines)
    summaries = [line for line in lines if " feasible, " in line and " repeats" in line]
    assert len(summaries) == 6
    assert any(line.startswith("runs 6/6  evaluations 48/48  best accuracy: cds ") for line in lines)
    assert lines[-1].startswith("wrote ")


def test_compare_reports_intervals_and_pairs(small_sweep, capsys):
    out, _ = small_sweep
    capsys.readouterr()
    assert main(["compare", str(out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    bench_best = printed["optimum"]
    assert printed["optimum_source"] == "objective" and bench_best > 90
    assert set(printed["searchers"]) == {"cds", "optuna", "random"}
    for per in printed["searchers"].values():
        assert list(per) == ["8"]  # no budget of 25/50/100/200 fits a budget of 8: the run's own budget
        assert per["8"]["seeds"] == 2 and per["8"]["ci_low"] <= per["8"]["mean_regret"] <= per["8"]["ci_high"]
    assert len(printed["pairs"]["8"]) == 3  # every pair of three searchers
    assert len(printed["time"]["seconds"]) == 4
    assert set(printed["time"]["searchers"]) == {"cds", "optuna", "random"}


def test_compare_regret_and_hit_rate_by_hand():
    """Two searchers, three seeds, budget 25: every number below is worked out by hand."""
    rows = []
    finals = {"a": [90.0, 99.0, 95.0], "b": [99.0, 99.0, 99.0]}  # best value each seed reaches by evaluation 25
    for searcher, bests in finals.items():
        for seed, best in enumerate(bests):
            for order in range(1, 26):
                value = best if order == 20 else 50.0  # the best arrives at evaluation 20
                rows.append({"searcher": searcher, "seed": seed, "order": order, "accuracy": value,
                             "feasible": True, "repeat": False, "wall_time_s": float(order)})
            rows.append({"searcher": searcher, "seed": seed, "order": 26, "accuracy": 100.0,  # a repeat and an
                         "feasible": True, "repeat": True, "wall_time_s": 26.0})  # infeasible proposal never count
            rows.append({"searcher": searcher, "seed": seed, "order": 27, "accuracy": 100.0,
                         "feasible": False, "repeat": False, "wall_time_s": 27.0})
    settings = {"metric": "accuracy", "mode": "max", "budget": 25, "constraint": None, "searchers": ["a", "b"],
                "config": {"benchmark": "elsewhere"}}
    result = compare(pd.DataFrame(rows), settings)
    assert result["optimum"] == 99.0 and result["optimum_source"] == "sweep"
    a, b = result["searchers"]["a"]["25"], result["searchers"]["b"]["25"]
    assert a["mean_regret"] == pytest.approx((9 + 0 + 4) / 3) and a["median_regret"] == 4.0
    assert a["hit_rate"] == pytest.approx(1 / 3) and a["seeds"] == 3
    assert b["mean_regret"] == 0.0 and b["hit_rate"] == 1.0
    assert (a["ci_low"], a["ci_high"]) == bootstrap_ci([9.0, 0.0, 4.0])
    assert a["ci_low"] <= a["mean_regret"] <= a["ci_high"]
    (pair,) = result["pairs"]["25"]
    assert (pair["a"], pair["b"], pair["seeds"]) == ("a", "b", 3)
    assert pair["mean_difference"] == pytest.approx(13 / 3)
    # two seeds favour b, one ties: half of the 8 sign assignments of (9, 0, 4) are as extreme
    assert pair["p_value"] == pytest.approx(0.5) and not pair["distinguishable"]
    # over wall-clock time, in quarters of the last evaluation's time (25 s): the bests arrive at 20 s
    timed = result["time"]
    assert timed["seconds"] == [6.25, 12.5, 18.75, 25.0]
    assert timed["searchers"]["a"]["6.25"]["mean_regret"] == pytest.approx(49.0)
    assert timed["searchers"]["b"]["18.75"]["mean_regret"] == pytest.approx(49.0)
    assert timed["searchers"]["a"]["25"]["mean_regret"] == pytest.approx(13 / 3)
    table = format_table(result)
    assert "N=25" in table and "a           " in table and f"{13 / 3:.3f}" in table
    assert "t=25s" in table and "fewer than 6 seeds: no pair can be told apart" in table


def test_bootstrap_interval_is_reproducible_and_covers_the_mean():
    values = [0.1, 0.4, 0.2, 0.9, 0.3]
    low, high = bootstrap_ci(values)
    assert (low, high) == bootstrap_ci(values) and low < sum(values) / 5 < high
    assert all(np.isnan(bootstrap_ci([2.0])))  # one seed has no interval


def test_the_paired_test_holds_its_level_and_finds_a_real_difference():
    rng = np.random.default_rng(0)
    # no difference: about 5% of 400 comparisons of 10 seeds are called distinguishable, not more
    null = [sign_flip_p(rng.normal(0, 1, 10), seed=i) < 0.05 for i in range(400)]
    assert np.mean(null) <= 0.08
    # a difference of one standard deviation over 20 seeds (Monte Carlo beyond 12) is found
    assert sign_flip_p(rng.normal(1, 1, 20)) < 0.01
    assert sign_flip_p([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]) == 1.0  # ties are no evidence


def test_a_multi_objective_sweep_reports_hypervolume_against_the_true_front(ray_local, nb201_table, tmp_path):
    out = tmp_path / "pareto"
    run_sweep(sweep_config(nb201_table, out, searchers=["cds_pareto", "optuna", "random"], budget=25, seeds=2,
                           max_latency=20.0, trade_off="latency_ms"), progress=_Lines([]))
    trials, settings = load_results(out)
    assert settings["trade_off"] == "latency_ms"
    assert settings["hv_reference"] == {"accuracy": 0.0, "latency_ms": 20.0}  # worst accuracy, the limit
    result = compare(trials, settings)
    hv = result["hypervolume"]
    assert hv["scale_source"] == "the true front" and hv["reference"] == [0.0, 20.0]
    for name in ("cds_pareto", "optuna", "random"):
        stats = hv["searchers"][name]["25"]
        assert stats["seeds"] == 2 and 0 < stats["ci_low"] <= stats["mean"] <= stats["ci_high"] <= 1.0
    assert len(hv["pairs"]["25"]) == 3
    assert "hypervolume of latency_ms vs the metric" in format_table(result)


@pytest.mark.parametrize("fields, message", [
    ({"searchers": ["cds"], "trade_off": "latency_ms"},
     "sweep.searchers (with sweep.trade_off): 'cds' is not allowed; allowed values: ['cds_pareto', 'optuna', 'random']"),
    ({"searchers": ["cds_pareto"]}, "sweep.searchers: 'cds_pareto' needs sweep.trade_off"),
    ({"searchers": ["random"], "trade_off": "flops"}, "sweep.trade_off: 'flops' is not allowed; allowed values: "
                                                      "['latency_ms']"),
])
def test_multi_objective_settings_are_checked_before_anything_runs(nb201_table, tmp_path, fields, message):
    from raynas.sweep import SweepPlan

    with pytest.raises(UserError) as err:
        SweepPlan(sweep_config(nb201_table, tmp_path / "o", **fields))
    assert message in str(err.value)


def test_a_doomed_sweep_writes_nothing_and_starts_no_ray(nb201_table, tmp_path, capsys):
    import ray

    ray.shutdown()
    out = tmp_path / "doomed"
    code = main(["sweep", "--table", str(nb201_table), "--accuracy-column", "cifar10_test_acc",
                 "--latency-column", "lat_raspi4_ms", "--max-latency", "0.0001", "--out", str(out)])
    assert code == 2
    assert "admits none of 20000 random architectures" in capsys.readouterr().err
    assert not out.exists() and not ray.is_initialized()


@pytest.mark.parametrize("argv, message", [
    (["--searchers", "cds,hyperband"], "sweep.searchers[1]: 'hyperband' is not allowed; allowed values: ['cds'"),
    (["--budget", "0"], "sweep.budget: must be a whole number >= 1; got 0"),
    (["--accuracy-column", "top1"], "accuracy column: 'top1' is not a column"),
    (["--latency-column", "lat_pixel"], "latency column: 'lat_pixel' is not a column"),
    (["--trial-resources", '{"CPU": -1}'], "sweep.trial_resources.CPU: must be a number > 0; got -1"),
    (["--max-flops", "1e9"], "sweep.max_flops: the nb201 table has no FLOPs"),
])
def test_cli_errors_name_the_field(nb201_table, tmp_path, capsys, argv, message):
    base = {"--table": str(nb201_table), "--accuracy-column": "cifar10_test_acc",
            "--latency-column": "lat_raspi4_ms", "--out": str(tmp_path / "o")}
    for flag, value in zip(argv[::2], argv[1::2]):
        base[flag] = value
    assert main(["sweep", *[x for kv in base.items() for x in kv]]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_missing_table_is_a_clear_error(tmp_path, capsys):
    code = main(["sweep", "--table", str(tmp_path / "none.parquet"), "--accuracy-column", "a", "--out", str(tmp_path)])
    assert code == 2 and "does not exist" in capsys.readouterr().err


def test_config_rejects_unknown_fields_and_sections(tmp_path):
    with pytest.raises(UserError, match=r"sweep: unknown field\(s\) \['budgett'\]; allowed fields: \['accuracy_column'"):
        SweepConfig.load({"budgett": 5, "table": "t", "accuracy_column": "a"})
    with pytest.raises(UserError, match=r"sweep: unknown field\(s\) \['table'\]; allowed fields: .*'supernet'"):
        SweepConfig.load({"benchmark": "supernet", "supernet": "x", "table": "t"})  # another objective's field
    with pytest.raises(UserError, match="sweep.table: required"):
        SweepConfig.load({"accuracy_column": "a"})
    path = tmp_path / "x.yaml"
    path.write_text("sweeep: {}\n")
    with pytest.raises(UserError, match=r"unknown section\(s\) \['sweeep'\]"):
        read_sections(path, ["sweep"])


def test_the_saved_config_rebuilds_the_sweep(nb201_table, tmp_path):
    config = sweep_config(nb201_table, tmp_path / "o", searchers="cds,random", max_latency=20, eval_seconds=0.5,
                          trial_resources={"CPU": 2, "GPU": 0.25}, searcher_options={"cds": {"start_samples": 4}})
    again = SweepConfig.load(json.loads(json.dumps(config.dump())))
    assert again.dump() == config.dump() and again.searchers == ["cds", "random"]
    assert again.objective_settings.eval_seconds == 0.5 and again.trial_resources == {"CPU": 2.0, "GPU": 0.25}


def test_shipped_config_is_valid():
    sweep = read_sections(Path(__file__).parent.parent / "configs" / "nb201_compare.yaml", ["sweep"])["sweep"]
    config = SweepConfig.load(sweep)
    assert config.budget == 200 and "cds" in config.searchers


def _result_files(experiment: Path) -> int:
    return sum(1 for p in experiment.glob("*/result.json") if p.read_text().strip()) if experiment.is_dir() else 0


def test_resume_continues_an_interrupted_sweep_without_re_evaluating(ray_local, nb201_table, tmp_path):
    out = tmp_path / "sweep"
    args = ["--table", str(nb201_table), *[x for k, v in COLUMNS.items() for x in ("--" + k.replace("_", "-"), v)],
            "--searchers", "cds,random", "--budget", "20", "--seeds", "2", "--eval-seconds", "0.5", "--out", str(out)]
    proc = subprocess.Popen([sys.executable, "-m", "raynas", "sweep", *args],  # joining this session's Ray
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=joining_env())
    try:
        deadline = time.time() + 240
        while _result_files(SweepFolder(out).experiment) < 15:
            assert proc.poll() is None and time.time() < deadline, proc.stderr.read() if proc.poll() else "timeout"
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)  # Ctrl+C
        assert proc.wait(timeout=120) == 130, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not SweepFolder(out).trials_file.exists()
    before = {p.parent.name: p.read_text() for p in SweepFolder(out).experiment.glob("*/result.json")
              if p.read_text().strip()}

    assert main(["sweep", "--out", str(out), "--resume"]) == 0  # sweep.json alone says what to continue
    trials, _ = load_results(out)
    for _, run in trials.groupby(["searcher", "seed"]):
        assert len(run) == 20 and run["feasible"].all() and run["arch_id"].is_unique
    for name, text in before.items():  # trials finished before Ctrl+C kept their single result
        assert (SweepFolder(out).experiment / name / "result.json").read_text() == text


@pytest.mark.parametrize("name", ["hr_nas_camvid.yaml", "ssr_camvid.yaml", "nb201_compare.yaml"])
def test_the_shipped_sweep_configs_are_valid(name):
    import yaml

    path = Path(__file__).parent.parent / "configs" / name
    sweep = read_sections(path, ["sweep"])["sweep"]
    assert SweepConfig.load(sweep).benchmark == yaml.safe_load(path.read_text())["sweep"]["benchmark"]
