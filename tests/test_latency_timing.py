"""ONNX export and ONNX Runtime timing, the disk cache, and in-process measuring (no Ray)."""

from __future__ import annotations

import json
import platform
import time

import numpy as np
import onnxruntime
import pytest
import torch

from raynas.errors import UserError
from raynas.latency.onnx_timing import TimingSettings, device_facts, export_onnx, input_size, time_onnx
from raynas.latency.service import LatencyCache, LatencyRequest, LatencyService, trial_metrics

torch.set_num_threads(1)


def small_net(width: int = 8) -> torch.nn.Module:
    torch.manual_seed(width)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, width, 3, padding=1), torch.nn.BatchNorm2d(width), torch.nn.ReLU(), torch.nn.Conv2d(width, 5, 1)
    )


def test_export_is_one_file_that_runs_like_torch():
    model = small_net().eval()
    onnx_bytes = export_onnx(model, (24, 40))
    session = onnxruntime.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert inp.shape == [1, 3, 24, 40]
    x = torch.randn(1, 3, 24, 40)
    (got,) = session.run(None, {inp.name: x.numpy()})
    np.testing.assert_allclose(got, model(x).detach().numpy(), rtol=1e-4, atol=1e-5)


def test_timing_statistics_and_settings():
    settings = TimingSettings(threads=1, warmup=2, repeats=9)
    onnx_bytes = export_onnx(small_net(), 32)
    start = time.perf_counter()
    timing = time_onnx(onnx_bytes, settings)
    wall = time.perf_counter() - start
    assert timing["input_shape"] == [1, 3, 32, 32]
    assert (timing["threads"], timing["warmup"], timing["repeats"]) == (1, 2, 9)
    assert 0 < timing["latency_min_ms"] <= timing["latency_ms"] <= timing["latency_p90_ms"]
    assert timing["latency_iqr_ms"] >= 0 and timing["latency_std_ms"] >= 0
    assert 0 < timing["latency_cpu_ms"] <= timing["latency_p90_ms"] * 1.05  # CPU time of the one timing thread
    assert time_onnx(export_onnx(small_net(), 16), TimingSettings(threads=2, warmup=0, repeats=2))["latency_cpu_ms"] is None
    # the two phases' own clocks against this test's: the session built, then the warm-up and the 9 timed runs
    # (whose latencies add up to their mean times 9), all within the call
    assert timing["session_s"] > 0 and timing["runs_s"] >= 9 * timing["latency_mean_ms"] / 1e3
    assert timing["session_s"] + timing["runs_s"] <= wall


@pytest.mark.parametrize(
    "kwargs, field", [({"threads": 0}, "latency.threads"), ({"repeats": 2.5}, "latency.repeats"), ({"warmup": -1}, "latency.warmup")]
)
def test_bad_settings_name_the_field(kwargs, field):
    with pytest.raises(UserError, match=field):
        TimingSettings(**kwargs)


@pytest.mark.parametrize("bad", [0, (32,), (32, -1), "512", (32.0, 32)])
def test_bad_resolution_names_the_field(bad):
    with pytest.raises(UserError, match="resolution"):
        input_size(bad)


def test_device_facts():
    facts = device_facts(threads=2)
    assert facts["machine"] == platform.machine()
    assert facts["onnxruntime"] == onnxruntime.__version__
    assert facts["threads"] == 2 and facts["cpu_model"]


def test_cache_is_shared_through_the_file(tmp_path):
    writer, reader = LatencyCache(tmp_path), LatencyCache(tmp_path)
    device, timing = device_facts(1), TimingSettings(warmup=2, repeats=7)
    result = {"arch_id": "abc", "resolution": [32, 48], "latency_ms": 1.5, "device": device, **timing.dump()}
    device_class = f"{device['machine']}|{device['cpu_model']}|onnxruntime {device['onnxruntime']}|threads 1"
    assert reader.get("abc", (32, 48), [device_class], timing) is None
    writer.put(result)
    key = LatencyCache.key("abc", (32, 48), device_class, timing)
    assert json.loads(writer.path.read_text())["key"] == key
    assert reader.get("abc", (32, 48), [device_class], timing) == result  # read what the other wrote
    assert reader.get("abc", (48, 32), [device_class], timing) is None
    # taken with other warm-up or repeats, a measurement is another one
    assert reader.get("abc", (32, 48), [device_class], TimingSettings(warmup=2, repeats=20)) is None
    assert reader.get("abc", (32, 48), [device_class], TimingSettings(warmup=0, repeats=7)) is None


def test_without_ray_measures_in_process_and_caches(tmp_path):
    import ray

    ray.shutdown()  # in case an earlier module left one running
    service = LatencyService(tmp_path, settings=TimingSettings(warmup=1, repeats=3))
    requests = [LatencyRequest("w4", 16, lambda: small_net(4)), LatencyRequest("w6", 16, lambda: small_net(6)),
                LatencyRequest("w4", 16, lambda: small_net(4))]
    first = service.measure(requests)
    assert service.measurements == 2  # the repeated request is measured once
    assert first[0]["latency_ms"] == first[2]["latency_ms"]
    for result in first:
        assert result["device"]["remote"] is False
        assert result["device"]["note"] == "Ray is not initialised; measured locally"
        assert result["cached"] is False and result["export_s"] > 0 and result["resolution"] == [16, 16]
    built = []
    again = LatencyService(tmp_path, settings=TimingSettings(warmup=1, repeats=3)).measure(
        [LatencyRequest("w6", 16, lambda: built.append(1))])
    assert again[0]["cached"] is True and not built  # a hit neither builds nor exports
    assert again[0]["latency_ms"] == first[1]["latency_ms"]
    metrics = trial_metrics(again[0])
    assert metrics["latency_ms"] == first[1]["latency_ms"] and metrics["latency_cached"] is True
    assert metrics["latency_remote"] is False and metrics["latency_device"].endswith("|threads 1")
    assert all(v is None or isinstance(v, (str, bool, float)) for v in metrics.values())
