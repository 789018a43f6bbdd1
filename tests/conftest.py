"""Shared fixtures: real data paths (skip with a reason when absent) and a local Ray."""

from __future__ import annotations

import os

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
    """A local two-CPU Ray for the tests of one module; shut down after it."""
    import ray

    ray.shutdown()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


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


@pytest.fixture(scope="session")
def tiny_supernet(tmp_path_factory, camvid_dir):
    """One two-worker Ray Train run of a tiny supernet, shared by the tests: ``(config dict, Result)``."""
    import ray

    from trainables.supernet_training import train_supernet

    config = tiny_supernet_config(camvid_dir, tmp_path_factory.mktemp("supernet_runs"))
    own_ray = not ray.is_initialized()
    if own_ray:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        result = train_supernet(config)
    finally:
        if own_ray:
            ray.shutdown()
    return config, result
