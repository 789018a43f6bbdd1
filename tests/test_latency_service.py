"""The latency service on a simulated two-node Ray cluster whose worker carries ``arm``."""

from __future__ import annotations

import random
import threading
import time

import pytest
import ray
import torch
from ray.cluster_utils import Cluster

from raynas.errors import UserError
from raynas.latency.onnx_timing import TimingSettings
from raynas.latency.service import NAMESPACE, LatencyError, LatencyRequest, LatencyService, actor_name, arch_requests

torch.set_num_threads(1)
FAST = TimingSettings(warmup=1, repeats=3)


@pytest.fixture(scope="module")
def cluster():
    """A head without ``arm`` and one worker node with ``{"arm": 1}`` (``cluster.worker``)."""
    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.worker = cluster.add_node(num_cpus=1, resources={"arm": 1})
    ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
    cluster.wait_for_nodes()
    yield cluster
    ray.shutdown()
    cluster.shutdown()


@pytest.fixture
def arm_node(cluster):
    """The node id of the current arm node."""
    return cluster.worker.node_id


def conv_net(width: int, layers: int = 1) -> torch.nn.Module:
    torch.manual_seed(width)
    body = [torch.nn.Conv2d(3, width, 3, padding=1), torch.nn.ReLU()]
    body += [torch.nn.Conv2d(width, width, 3, padding=1) for _ in range(layers - 1)]
    return torch.nn.Sequential(*body, torch.nn.Conv2d(width, 4, 1))


def requests(widths, resolution=32, layers=1):
    return [LatencyRequest(f"w{w}-l{layers}", resolution, lambda w=w: conv_net(w, layers)) for w in widths]


def test_every_measurement_runs_on_the_arm_node(arm_node, tmp_path):
    service = LatencyService(tmp_path, settings=FAST)
    assert service.node_ids == [arm_node]
    results = service.measure(requests([4, 8, 12]))
    assert service.measurements == 3
    for result in results:
        assert result["device"]["node_id"] == arm_node
        assert result["device"]["remote"] is True and "note" not in result["device"]
        assert result["cached"] is False and result["latency_ms"] > 0


def test_a_killed_actor_is_replaced_and_no_request_is_lost(arm_node, tmp_path):
    """The actor is killed from outside (as a failing node would) while the sweep runs."""
    # each measurement takes a few tenths of a second, so the kill, as soon as the first result is cached, finds
    # the next request in flight (or about to be sent to the dead actor): either way it must be retried
    service = LatencyService(tmp_path, settings=TimingSettings(warmup=1, repeats=100))
    service.remote  # start the pool
    name = actor_name("arm", arm_node)

    def kill_after_first_result():
        while not service.cache.path.exists():
            time.sleep(0.005)
        ray.kill(ray.get_actor(name, namespace=NAMESPACE))

    killer = threading.Thread(target=kill_after_first_result)
    killer.start()
    widths = [16, 24, 32, 40, 48]
    results = service.measure(requests(widths, resolution=128, layers=4))
    killer.join()
    assert [r["arch_id"] for r in results] == [f"w{w}-l4" for w in widths]
    assert all(r["device"]["node_id"] == arm_node for r in results)
    assert service.measurements == len(widths)
    assert service.replacements >= 1 and service.retries >= 1
    assert ray.get(ray.get_actor(name, namespace=NAMESPACE).device.remote(1))["node_id"] == arm_node  # the replacement


def test_a_hung_request_times_out_is_retried_then_fails_clearly(arm_node, tmp_path):
    # a million runs: hung for as long as the test lasts, on any machine
    service = LatencyService(tmp_path, settings=TimingSettings(warmup=0, repeats=1_000_000), timeout_s=0.5,
                             max_attempts=2)
    with pytest.raises(LatencyError, match=r"failed 2 times .*resource 'arm'.*no answer in 0.5 s"):
        service.measure(requests([48], resolution=64, layers=4))
    assert (service.retries, service.replacements, service.measurements) == (1, 2, 0)


def test_a_second_run_hits_the_cache(arm_node, tmp_path):
    first = LatencyService(tmp_path, settings=FAST).measure(requests([4, 8]))
    again = LatencyService(tmp_path, settings=FAST)
    second = again.measure(requests([8, 4]))
    assert (again.measurements, again.cache_hits) == (0, 2)
    assert [r["latency_ms"] for r in second] == [first[1]["latency_ms"], first[0]["latency_ms"]]
    assert all(r["cached"] and r["device"]["node_id"] == arm_node for r in second)
    other_threads = LatencyService(tmp_path, settings=TimingSettings(threads=2, warmup=1, repeats=3))
    other_threads.measure(requests([4]))
    assert other_threads.measurements == 1  # threads are part of the device: no false hit


def test_without_a_node_carrying_the_resource_it_measures_locally(arm_node, tmp_path):
    service = LatencyService(tmp_path, resource="arm_v9", settings=FAST)
    (result,) = service.measure(requests([4]))
    assert service.remote is False and service.node_ids == []
    assert result["device"]["remote"] is False
    assert result["device"]["note"] == "no node with resource 'arm_v9'; measured locally"
    assert result["device"]["node_id"] != arm_node  # the driver's node, the head


def test_topformer_subnet_measured_on_the_arm_node(arm_node, tmp_path):
    from search_spaces import get_space

    space = get_space("efficient_topformer")
    supernet = space.build_supernet(num_classes=11)
    arch = space.sample(random.Random(3))
    service = LatencyService(tmp_path, settings=FAST)
    (result,) = service.measure(arch_requests(space, supernet, [arch], 32))
    assert result["arch_id"] == space.arch_id(arch)
    assert result["device"]["node_id"] == arm_node
    assert result["input_shape"] == [1, 3, 32, 32] and result["onnx_bytes"] > 1_000_000


def test_bad_service_settings_name_the_field(tmp_path):
    with pytest.raises(UserError, match="latency.resource"):
        LatencyService(tmp_path, resource="")
    with pytest.raises(UserError, match="latency.timeout_s"):
        LatencyService(tmp_path, timeout_s=0)


def test_a_dead_node_is_replaced_by_a_new_one(cluster, tmp_path):
    """The arm node goes away mid-sweep and another comes up (as the autoscaler does): no request is lost.

    Runs last: the module's arm node is a new one afterwards. The sweep runs in
    a thread because Ray starts nodes only from the main thread.
    """
    old = cluster.worker.node_id
    service = LatencyService(tmp_path, settings=TimingSettings(warmup=1, repeats=25))
    service.remote  # start the pool
    widths = [16, 24, 32, 40]
    outcome = {}
    sweep = threading.Thread(target=lambda: outcome.update(results=service.measure(requests(widths, 64, layers=4))))
    sweep.start()
    while not service.cache.path.exists():
        time.sleep(0.01)
    cluster.remove_node(cluster.worker)
    cluster.worker = cluster.add_node(num_cpus=1, resources={"arm": 1})
    sweep.join(timeout=300)
    results = outcome["results"]
    nodes = [r["device"]["node_id"] for r in results]
    assert [r["arch_id"] for r in results] == [f"w{w}-l4" for w in widths]
    assert nodes[0] == old and nodes[-1] == cluster.worker.node_id != old
    assert service.measurements == len(widths) and service.replacements >= 1
