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
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()
