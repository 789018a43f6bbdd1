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


@pytest.fixture(scope="module")
def ray_local():
    """A local two-CPU Ray for the tests of one module (with its dashboard, as ``raynas.cluster.connect`` starts
    one: Ray Train frees a stopped run's resources through it); shut down after it."""
    import ray

    ray.shutdown()
    ray.init(address="local", num_cpus=2, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


REPO = Path(__file__).resolve().parent.parent


def run_raynas(args: list[str], logs: Path, timeout: float = 480) -> subprocess.CompletedProcess:
    """``python -m raynas ARGS`` in a private local Ray (``RAY_ADDRESS=local``: never a cluster another test
    started), its output in files under ``logs`` (Ray's daemons cannot hold a pipe open); on a timeout the
    whole process group is killed and the test fails with the tail of what the command printed."""
    logs.mkdir(parents=True, exist_ok=True)
    stdout_path, stderr_path = logs / "stdout.txt", logs / "stderr.txt"
    with open(stdout_path, "w") as stdout, open(stderr_path, "w") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "raynas", *args], stdout=stdout, stderr=stderr,
                                   stdin=subprocess.DEVNULL, cwd=REPO, start_new_session=True,
                                   env={**os.environ, "RAY_ADDRESS": "local"})
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
