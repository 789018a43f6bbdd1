"""Reliability of a sweep on a (simulated) cluster: a killed driver resumes, a lost node is survived,
queued trials are demand an autoscaler sees, a raising trial is retried, a dead address is one clear error."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from analysis.results import load_results
from raynas.cli import main
from raynas.config import SweepConfig
from raynas.sweep import run_sweep
from raynas.sweep_folder import SweepFolder
from tests.conftest import joining_env
from trainables.tabular_benchmark import NB201Objective, NB201Settings

NB201 = ["--accuracy-column", "cifar10_test_acc", "--latency-column", "lat_raspi4_ms"]


def nb201_config(table, out, **fields) -> SweepConfig:
    return SweepConfig.load({"table": str(table), "accuracy_column": "cifar10_test_acc",
                             "latency_column": "lat_raspi4_ms", "out": str(out), **fields})


def _yaml(directory: Path, sweep: dict) -> str:
    path = directory / "sweep.yaml"
    path.write_text(json.dumps({"sweep": sweep}))  # JSON is YAML
    return str(path)


def quiet(*_args, **_kwargs):
    from raynas.progress import Progress

    class Silent(Progress):
        def line(self, text):
            pass

        status = line

    return Silent()


@pytest.fixture
def cluster():
    """A head with 1 CPU and two workers with 2 CPUs each: five trial slots on three nodes."""
    import ray
    from ray.cluster_utils import Cluster

    ray.shutdown()
    simulated = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    workers = [simulated.add_node(num_cpus=2), simulated.add_node(num_cpus=2)]
    simulated.wait_for_nodes()
    ray.init(address=simulated.address, log_to_driver=False)
    yield simulated, workers
    ray.shutdown()
    simulated.shutdown()


def test_a_lost_node_is_survived_and_queued_trials_are_demand(cluster, nb201_table, tmp_path):
    from ray.autoscaler.v2.sdk import get_cluster_status

    simulated, workers = cluster
    out = tmp_path / "sweep"
    config = nb201_config(nb201_table, out, searchers=["cds", "random"], seeds=2, budget=8, eval_seconds=1.0)
    seen = {"demand": 0, "removed": False}
    stop = threading.Event()

    def watch():
        while not stop.wait(0.05):
            status = get_cluster_status(simulated.address)
            pending = sum(b.count for d in status.resource_demands.placement_group_demand for b in d.bundles_by_count)
            seen["demand"] = max(seen["demand"], pending)
            finished = sum(1 for _ in SweepFolder(out).journal()) if SweepFolder(out).exists() else 0
            if finished >= 6 and not seen["removed"]:
                simulated.remove_node(workers[0])  # its running trials die with it
                seen["removed"] = True

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        run_sweep(config, progress=quiet())
    finally:
        stop.set()
        watcher.join()
    assert seen["removed"]
    assert seen["demand"] >= 1  # 4 runs x 2 trials in flight > 5 slots: Tune's queue is the autoscaler's demand
    trials, _ = load_results(out)
    for _, run in trials.groupby(["searcher", "seed"]):
        assert len(run) == 8 and run["feasible"].all() and run["arch_id"].is_unique  # nothing lost or twice


def _journal(out: Path) -> list[dict]:
    return list(SweepFolder(out).journal())


class CountingSettings(NB201Settings):
    log_file: str  # every evaluation appends "searcher seed arch_id" here


class CountingObjective(NB201Objective):
    """NB201, recording every evaluation it makes (a result answered from the journal is none)."""

    name = "counting"
    Settings = CountingSettings

    def evaluate(self, config):
        arch_id = self.space.arch_id(self.arch(config))
        with open(self.settings.log_file, "a") as log:
            log.write(f"{config['searcher']} {config['seed']} {arch_id}\n")
        return super().evaluate(config)


REGISTER_COUNTING = ("import sys, trainables; "
                     "trainables.OBJECTIVES['counting'] = 'tests.test_reliability:CountingObjective'; "
                     "from raynas.cli import main; sys.exit(main(sys.argv[1:]))")


def _evaluations(log: Path) -> dict[tuple, int]:
    counts: dict[tuple, int] = {}
    for line in log.read_text().splitlines():
        searcher, seed, arch_id = line.split()
        counts[(searcher, int(seed), arch_id)] = counts.get((searcher, int(seed), arch_id), 0) + 1
    return counts


def _kill_mid_sweep(argv: list[str], out: Path, finished: int) -> None:
    """Start ``raynas sweep`` (the counting objective) in a process of its own, joining this session's Ray as a
    driver joins a cluster, and SIGKILL it once the journal holds ``finished`` evaluations and Tune has saved a
    searcher state: the driver dies, the cluster (and its trials in flight, until Ray ends the dead driver's job)
    goes on."""
    with subprocess.Popen([sys.executable, "-c", REGISTER_COUNTING, "sweep", *argv, "--out", str(out)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
                          env=joining_env()) as proc:
        try:
            deadline = time.time() + 300
            while len(_journal(out)) < finished or not list(SweepFolder(out).experiment.glob("searcher-state-*.pkl")):
                assert proc.poll() is None, proc.stderr.read()
                assert time.time() < deadline, "the sweep did not get going"
                time.sleep(0.05)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)  # no chance to save anything


def test_killed_driver_resumes_every_run_without_re_evaluating(ray_local, nb201_table, tmp_path, monkeypatch):
    import trainables

    monkeypatch.setitem(trainables.OBJECTIVES, "counting", "tests.test_reliability:CountingObjective")
    budget, options, log = 10, {"cds": {"start_samples": 4}}, tmp_path / "evaluations.txt"
    argv = ["--benchmark", "counting", "--table", str(nb201_table), *NB201, "--searchers", "cds,evolution,random",
            "--seeds", "2", "--budget", str(budget), "--max-concurrent-trials", "1", "--eval-seconds", "0.3",
            "--searcher-options", json.dumps(options)]
    out = tmp_path / "killed"
    _kill_mid_sweep([*argv, "--config", _yaml(tmp_path, {"log_file": str(log)})], out, finished=16)
    finished_before = {(e["searcher"], e["seed"], e["arch_id"]) for e in _journal(out)}
    assert len(finished_before) < 6 * budget  # killed with runs in flight

    assert main(["sweep", "--out", str(out), "--resume"]) == 0  # sweep.json alone says what to continue

    trials, settings = load_results(out)
    assert settings["budget"] == budget and len(trials) == 6 * budget and trials["feasible"].all()
    for _, run in trials.groupby(["searcher", "seed"]):
        assert len(run) == budget and run["arch_id"].is_unique  # exactly its budget, nothing twice
    evaluations = _evaluations(log)
    assert all(evaluations[key] == 1 for key in finished_before)  # no finished trial evaluated again
    assert sum(evaluations.values()) <= len(trials) + 6  # more than once: at most the 6 trials in flight at the kill

    # CDS went on from its saved round, block and random state: the same search as without the kill
    twin = nb201_config(nb201_table, tmp_path / "uninterrupted", searchers=["cds"], seeds=2, budget=budget,
                        max_concurrent_trials=1, searcher_options=options)
    uninterrupted, _ = load_results(run_sweep(twin, progress=quiet()))
    for seed in (0, 1):
        def order(df):
            return df[(df.searcher == "cds") & (df.seed == seed)].sort_values("order")["arch_id"].tolist()
        assert order(trials) == order(uninterrupted)


def _lose_searcher_states(experiment: Path, how: str) -> int:
    """Make a killed sweep's folder what a driver killed before Tune's first save leaves (``how="never saved"``:
    no experiment, searcher or search-generator state, in the experiment folder or the driver's staging copy),
    or one whose searcher state cannot be read (``"unreadable"``: cut off)."""
    from raynas.sweep import staged_states

    ours = {staged.parent for staged in staged_states(experiment)}  # session_latest links to one: files resolved
    patterns = ("experiment_state-*.json", "searcher-state-*.pkl", "search_gen_state-*.json") \
        if how == "never saved" else ("searcher-state-*.pkl",)
    files = {f.resolve() for directory in (experiment, *ours) for pattern in patterns for f in directory.glob(pattern)}
    for file in files:
        if how == "never saved":
            file.unlink()
        else:
            file.write_bytes(file.read_bytes()[:40])
    return len(files)


@pytest.mark.parametrize("how", ["never saved", "unreadable"])
def test_a_resume_without_a_searcher_state_evaluates_nothing_twice(how, ray_local, nb201_table, tmp_path,
                                                                   monkeypatch):
    import trainables

    monkeypatch.setitem(trainables.OBJECTIVES, "counting", "tests.test_reliability:CountingObjective")
    budget, log, out = 12, tmp_path / "evaluations.txt", tmp_path / "killed"
    argv = ["--benchmark", "counting", "--table", str(nb201_table), *NB201, "--searchers", "cds,random",
            "--budget", str(budget), "--max-concurrent-trials", "1", "--eval-seconds", "0.2",
            "--searcher-options", json.dumps({"cds": {"start_samples": 3}}),
            "--config", _yaml(tmp_path, {"log_file": str(log)})]
    _kill_mid_sweep(argv, out, finished=6)
    finished = {(e["searcher"], e["seed"], e["arch_id"]) for e in _journal(out)}
    assert len(finished) < 2 * budget
    assert _lose_searcher_states(SweepFolder(out).experiment, how) >= 1

    if how == "unreadable":  # said, and the runs start again
        with pytest.warns(UserWarning, match="searcher state .* cannot be read .* answered from"):
            assert main(["sweep", "--out", str(out), "--resume"]) == 0
    else:
        assert main(["sweep", "--out", str(out), "--resume"]) == 0

    trials, _ = load_results(out)
    for _, run in trials.groupby(["searcher", "seed"]):
        assert len(run) == budget and run["feasible"].all() and run["arch_id"].is_unique  # exactly its budget
    evaluations = _evaluations(log)
    assert all(evaluations[key] == 1 for key in finished)  # what the journal held was answered from it
    assert sum(evaluations.values()) <= len(trials) + 2  # again: at most the 2 trials in flight at the kill


def test_a_dead_address_is_one_clear_error_before_ray_is_asked(nb201_table, tmp_path, capsys, monkeypatch):
    import ray

    ray.shutdown()
    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("Ray was asked to join a dead address"))
    code = main(["sweep", "--table", str(nb201_table), *NB201, "--out", str(tmp_path / "o"),
                 "--address", "127.0.0.1:1"])  # a closed port: refused at once (raynas.cluster.REACH_TIMEOUT_S)
    assert code == 2
    assert "--address: no Ray cluster answers at '127.0.0.1:1'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()



OWN_RAY = """
import json, ray
from raynas.cluster import connect

connect(None)

@ray.remote
def ask():
    import os
    from ray.util.state import list_actors
    try:
        return os.environ.get("RAY_ADDRESS"), len(list_actors())
    except Exception as err:
        return os.environ.get("RAY_ADDRESS"), repr(err)

print(json.dumps([ray.get_runtime_context().gcs_address, *ray.get(ask.remote())]))
"""


def test_a_commands_local_ray_finds_itself_beside_another_ray(ray_local):
    """A command without an address starts a private Ray; beside another private Ray (this session's), Ray's
    state API, which Ray Train's placement-group cleaner calls from inside the cluster to free a dead run's
    CPUs, still finds the command's own Ray (by looking around, it finds two and gives up)."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    run = subprocess.run([sys.executable, "-c", OWN_RAY], env=env, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-3000:]
    own, told, actors = json.loads(run.stdout.splitlines()[-1])
    assert own != ray_local.get_runtime_context().gcs_address  # a Ray of its own, beside this session's
    assert told == own and isinstance(actors, int), actors

class FlakySettings(NB201Settings):
    marker_dir: str  # a marker file per trial here remembers its first attempt


class FlakyObjective(NB201Objective):
    """NB201, but a trial's first attempt raises (a marker file per trial remembers it)."""

    name = "flaky"
    Settings = FlakySettings

    def evaluate(self, config):
        from ray import tune

        marker = Path(self.settings.marker_dir) / tune.get_context().get_trial_id()
        if not marker.exists():
            marker.write_text("failed once")
            raise RuntimeError("a flaky evaluation")
        return super().evaluate(config)


def test_a_trial_that_raises_is_retried_and_recorded(ray_local, nb201_table, tmp_path, monkeypatch):
    import trainables

    monkeypatch.setitem(trainables.OBJECTIVES, "flaky", "tests.test_reliability:FlakyObjective")
    (tmp_path / "markers").mkdir()
    common = {"benchmark": "flaky", "searchers": ["random"], "budget": 3, "marker_dir": str(tmp_path / "markers")}

    run_sweep(nb201_config(nb201_table, tmp_path / "retried", **common, max_failures=1), progress=quiet())
    trials, _ = load_results(tmp_path / "retried")
    assert len(trials) == 3 and trials["feasible"].all() and trials["accuracy"].gt(0).all()
    assert len(list(SweepFolder(tmp_path / "retried").experiment.glob("*/error.txt"))) == 3  # each first failure

    lines = []
    progress = quiet()
    progress.line = lines.append
    path = run_sweep(nb201_config(nb201_table, tmp_path / "failing", **common, max_failures=0), progress=progress)
    assert not path.exists()  # every trial failed: the sweep ends cleanly and says so
    assert any("0 feasible" in line and "3 FAILED" in line for line in lines)


@pytest.mark.parametrize("ray_tmpdir", [False, True])
def test_a_state_file_cut_off_by_a_kill_is_put_back_from_the_drivers_staging_copy(tmp_path, monkeypatch, ray_tmpdir):
    import tempfile

    from raynas.errors import UserError
    from raynas.sweep import repair_torn_state

    # Ray's temp dir: the system's, or RAY_TMPDIR where it is set
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    if ray_tmpdir:
        monkeypatch.setenv("RAY_TMPDIR", str(tmp_path / "ray_tmp"))
    else:
        monkeypatch.delenv("RAY_TMPDIR", raising=False)
    experiment = tmp_path / "sweep" / "tune"
    experiment.mkdir(parents=True)
    session = "2026-01-01_00-00-00"
    state = json.dumps({"trial_data": [], "storage": str(experiment.parent)})
    (experiment / f"experiment_state-{session}.json").write_text(state[:10])  # cut off mid-copy
    (experiment / f"searcher-state-{session}.pkl").write_bytes(b"old")
    with pytest.raises(UserError, match="cut off when the sweep's driver died.*remove"):
        repair_torn_state(experiment)

    root = tmp_path / ("ray_tmp" if ray_tmpdir else "tmp")
    staging = root / "ray" / "session_1" / "artifacts" / "2026-01-01" / "tune" / "driver_artifacts"
    staging.mkdir(parents=True)
    (staging / f"experiment_state-{session}.json").write_text(state)
    (staging / f"searcher-state-{session}.pkl").write_bytes(b"new")
    repair_torn_state(experiment)
    assert json.loads((experiment / f"experiment_state-{session}.json").read_text())["storage"] == str(experiment.parent)
    assert (experiment / f"searcher-state-{session}.pkl").read_bytes() == b"new"  # the searcher saved with that state
    repair_torn_state(experiment)  # a readable state is left alone
