"""Shared fixtures: real data paths (skip with a reason when absent) and a local Ray."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from raynas.paths import shared_data_dir

os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
# Ray Train's controller polls its workers every 2 s: a run's end is seen up to 2 s late, and a tiny test run is
# mostly start and end. Polled every 0.2 s here (set before any Ray starts, so its processes inherit it).
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")


def _require(path):
    if not path.exists():
        pytest.skip(f"needs {path} (the shared data beside the checkout, or set RAYNAS_DATA)")
    return path


@pytest.fixture(scope="session")
def camvid_dir():
    return _require(shared_data_dir() / "camvid")


@pytest.fixture(scope="session")
def nb201_table():
    return _require(shared_data_dir() / "nb201" / "nb201_cifar10.parquet")


def local_ray_address() -> str:
    """The address of this test session's local two-CPU Ray, started now unless this process is connected to one
    (with its dashboard, as ``raynas.cluster.connect`` starts one: Ray Train frees a stopped run's resources
    through it). One Ray serves the whole session; a test that needs another (a simulated cluster) shuts it down,
    and the next test that asks starts it again."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, log_to_driver=False, configure_logging=False)
    return ray.get_runtime_context().gcs_address


def joining_env() -> dict[str, str]:
    """This process's environment with ``RAY_ADDRESS`` of this session's Ray: a child process joins it (Ray is
    started before the environment is read: starting it sets ``RAY_AUTH_MODE``, which joining needs)."""
    address = local_ray_address()
    return {**os.environ, "RAY_ADDRESS": address}


@pytest.fixture
def ray_local():
    """This session's local Ray (``local_ray_address``), connected."""
    import ray

    local_ray_address()
    yield ray


@pytest.fixture(scope="session", autouse=True)
def _shut_ray_down_at_the_end():
    yield
    import ray

    ray.shutdown()


REPO = Path(__file__).resolve().parent.parent


def run_raynas(args: list[str], logs: Path, timeout: float = 480) -> subprocess.CompletedProcess:
    """``python -m raynas ARGS`` joining this session's local Ray (``local_ray_address``, as a user's command
    joins a running cluster: no Ray start of its own), its output in files under ``logs``; on a timeout the
    whole process group is killed and the test fails with the tail of what the command printed."""
    logs.mkdir(parents=True, exist_ok=True)
    stdout_path, stderr_path = logs / "stdout.txt", logs / "stderr.txt"
    with open(stdout_path, "w") as stdout, open(stderr_path, "w") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "raynas", *args], stdout=stdout, stderr=stderr,
                                   stdin=subprocess.DEVNULL, cwd=REPO, start_new_session=True,
                                   env=joining_env())
        try:
            returncode = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            pytest.fail(f"`raynas {' '.join(args)}` ran past {timeout:.0f} s; it printed:\n"
                        f"{stdout_path.read_text()[-3000:]}\n--- stderr ---\n{stderr_path.read_text()[-3000:]}")
    return subprocess.CompletedProcess(args, returncode, stdout_path.read_text(), stderr_path.read_text())


def tiny_supernet_config(camvid_dir, storage_path, name: str = "tiny", epochs: int = 2) -> dict:
    """A supernet training config that runs in about a minute on 2 CPUs (CamVid at 72×96, 64×64 crops)."""
    return {
        "space_options": {"head_channels": 32},
        "data": {"dataset": "camvid", "root": str(camvid_dir), "base_size": 72, "cache": True, "crop_size": 64,
                 "scale_range": [0.75, 1.25]},
        "training": {"epochs": epochs, "steps_per_epoch": 8, "batch_size": 2, "lr": 5e-3, "warmup_steps": 2},
        "evaluation": {"calibration_images": 16, "val_images": 16, "batch_size": 8},
        "scaling": {"num_workers": 2, "resources_per_worker": {"CPU": 1}},
        "run": {"storage_path": str(storage_path), "name": name},
    }


@dataclass(frozen=True)
class TrainedSupernet:
    config: dict  # the training config
    run_dir: str  # the run directory (checkpoint_epoch_NNNN/ folders)
    checkpoint: str  # its last checkpoint
    stdout: str  # what `raynas train-supernet` printed
    stderr: str


@pytest.fixture(scope="session")
def tiny_supernet(tmp_path_factory, camvid_dir) -> TrainedSupernet:
    """One two-worker Ray Train run of a tiny supernet by ``python -m raynas train-supernet``, shared by the tests."""
    from trainables.checkpoints import latest_checkpoint

    config = tiny_supernet_config(camvid_dir, tmp_path_factory.mktemp("supernet_runs"))
    path = tmp_path_factory.mktemp("configs") / "tiny.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    run = run_raynas(["train-supernet", "--config", str(path)], tmp_path_factory.mktemp("train_supernet_logs"))
    assert run.returncode == 0, run.stderr[-3000:]
    run_dir = Path(config["run"]["storage_path"]) / config["run"]["name"]
    return TrainedSupernet(config, str(run_dir), str(latest_checkpoint(run_dir)), run.stdout, run.stderr)
