"""cluster.yaml passes Ray's own autoscaler validation, offline (no cloud calls)."""

from __future__ import annotations

import copy
import re

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from raynas.paths import REPO_ROOT


@pytest.fixture(scope="module")
def cluster():
    return yaml.safe_load((REPO_ROOT / "cluster.yaml").read_text())


def _pins() -> dict[str, str]:
    lines = (REPO_ROOT / "requirements.txt").read_text().splitlines()
    return dict(re.match(r"([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==(\S+)", line).groups() for line in lines if "==" in line)


def test_ray_validates_the_prepared_config(cluster):
    prepared = prepare_config(copy.deepcopy(cluster))
    validate_config(prepared)
    assert prepared["head_node_type"] == "head"
    assert prepared["provider"]["type"] == "aws"


def test_validation_is_live(cluster):
    """The same validation rejects a broken copy (fractional custom resource, unknown field)."""
    fractional = copy.deepcopy(cluster)
    fractional["available_node_types"]["arm_worker"]["resources"]["arm"] = 0.5
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(fractional))
    unknown = copy.deepcopy(cluster)
    unknown["available_node_types"]["gpu_worker"]["gpus"] = 1
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(unknown))


def test_node_types_for_training_evaluation_and_arm_latency(cluster):
    types = cluster["available_node_types"]
    assert set(types) == {"head", "gpu_worker", "cpu_worker", "arm_worker"}
    assert types["gpu_worker"]["node_config"]["InstanceType"].startswith("g5.")
    assert types["cpu_worker"]["node_config"]["InstanceType"].startswith("c6i.")
    arm = types["arm_worker"]
    assert arm["resources"] == {"CPU": 0, "arm": 1}  # latency actors only
    assert re.match(r"c7g\.", arm["node_config"]["InstanceType"])
    assert "/arm64/" in arm["node_config"]["ImageId"]
    assert all("/arm64/" not in t["node_config"]["ImageId"] for name, t in types.items() if name != "arm_worker")
    assert arm["min_workers"] >= 1  # a sweep finds an arm node to measure on
    for name, t in types.items():
        if name != "head":
            assert 0 <= t["min_workers"] <= t["max_workers"] <= cluster["max_workers"], name
    assert cluster["idle_timeout_minutes"] > 0


def test_setup_commands_install_the_pinned_requirements(cluster):
    pins = _pins()
    common = " ".join(cluster["setup_commands"])
    gpu = " ".join(cluster["available_node_types"]["gpu_worker"]["worker_setup_commands"])
    arm = " ".join(cluster["available_node_types"]["arm_worker"]["worker_setup_commands"])
    for commands in (common, gpu):
        assert "-r ~/raynas/requirements.txt" in commands
    assert f"torch=={pins['torch']}" in common and "whl/cpu" in common
    assert "torch" not in arm and "requirements.txt" not in arm
    for package in ("ray", "onnxruntime", "numpy"):
        assert re.search(rf"{package}(\[[^\]]*\])?=={re.escape(pins[package])}\b", arm), package
    assert cluster["file_mounts"] == {"~/raynas": "."}
