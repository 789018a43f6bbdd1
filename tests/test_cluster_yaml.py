"""cluster.yaml passes Ray's own autoscaler validation, offline (no cloud calls), and the GPU cluster example
(configs/ade20k_cluster.yaml) can be scheduled on it and stores and reads on storage every node has."""

from __future__ import annotations

import copy
import re

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from raynas.paths import REPO_ROOT
from raynas.training_config import SupernetTrainingConfig

MOUNT = "mount -t nfs4 $RAY_HEAD_IP:/mnt/shared /mnt/shared"


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


def setup_of(cluster: dict, node_type: str) -> list[str]:
    """The setup commands Ray runs on a worker of ``node_type``: its own ``worker_setup_commands``, which replace
    the rest, else the global ``setup_commands`` + ``worker_setup_commands`` (ray.autoscaler's merge)."""
    own = cluster["available_node_types"][node_type].get("worker_setup_commands")
    return own if own is not None else cluster["setup_commands"] + cluster["worker_setup_commands"]


def test_setup_commands_install_the_pinned_requirements(cluster):
    pins = _pins()
    common = " ".join(cluster["setup_commands"])
    gpu = setup_of(cluster, "gpu_worker")
    arm = " ".join(setup_of(cluster, "arm_worker"))
    for commands in (common, " ".join(gpu)):
        assert "-r ~/raynas/requirements.txt" in commands
    assert f"torch=={pins['torch']}" in common and "whl/cpu" in common
    assert "torch" not in arm and "requirements.txt" not in arm
    for package in ("ray", "onnxruntime", "numpy"):
        assert re.search(rf"{package}(\[[^\]]*\])?=={re.escape(pins[package])}\b", arm), package
    assert cluster["file_mounts"] == {"~/raynas": "."}


def test_a_gpu_node_installs_the_cuda_torch_first_and_fails_its_setup_without_cuda(cluster):
    pins = _pins()
    gpu = setup_of(cluster, "gpu_worker")
    torch_at = next(i for i, c in enumerate(gpu) if f"torch=={pins['torch']}" in c)
    assert "https://pypi.org/simple" in gpu[torch_at] and "whl/cpu" not in " ".join(gpu)  # PyPI's is the CUDA build
    assert torch_at < next(i for i, c in enumerate(gpu) if "requirements.txt" in c)  # the pin then finds it there
    assert "require_cuda()" in gpu[-1]  # the last step: CUDA must work, else the node's setup fails


def worker_slots(cluster: dict, per_worker: dict[str, float]) -> int:
    """How many Ray Train workers asking ``per_worker`` the node types can hold at their ``max_workers``."""
    slots = 0
    for name, node in cluster["available_node_types"].items():
        if not node["resources"]:  # autodetected: only the CPU-only instance families are left so
            assert node["node_config"]["InstanceType"].split(".")[0] in ("m6i", "c6i", "c7g"), name
            continue
        fits = min(int(node["resources"].get(k, 0) // v) for k, v in per_worker.items() if v > 0)
        slots += fits * node["max_workers"]
    return slots


def test_the_gpu_cluster_example_fits_the_gpu_nodes(cluster):
    config = SupernetTrainingConfig.from_yaml(REPO_ROOT / "configs" / "ade20k_cluster.yaml")
    scaling = config.scaling
    per_worker = {"CPU": 1, "GPU": 1 if scaling.use_gpu else 0, **(scaling.resources_per_worker or {})}
    assert scaling.use_gpu and per_worker["GPU"] > 0
    assert worker_slots(cluster, per_worker) >= scaling.num_workers == 8
    smaller = copy.deepcopy(cluster)  # one GPU node fewer: the trainer would wait forever, and this says so
    smaller["available_node_types"]["gpu_worker"]["max_workers"] -= 1
    assert worker_slots(smaller, per_worker) < scaling.num_workers


def test_the_gpu_cluster_example_stores_and_reads_on_storage_every_node_mounts(cluster):
    config = SupernetTrainingConfig.from_yaml(REPO_ROOT / "configs" / "ade20k_cluster.yaml")
    assert config.run.storage_path.startswith("/mnt/shared/") and config.data.root.startswith("/mnt/shared/")
    head = " ".join(cluster["head_setup_commands"])
    assert "nfs-kernel-server" in head and "/mnt/shared *(rw" in head and "exportfs -ra" in head
    data_parent = config.data.root.rsplit("/", 1)[0]
    assert f"cd {data_parent} && wget" in head and config.data.root.endswith("/ADEChallengeData2016")
    for name in cluster["available_node_types"]:
        if name != "head":
            assert any(MOUNT in command for command in setup_of(cluster, name)), name
