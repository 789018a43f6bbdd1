"""The latency model: fitting, held-out error, save/load, use as a cost function."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from raynas.errors import UserError
from raynas.latency.model import LatencyModel, arch_features, fit_latency_model, mape
from raynas.latency.onnx_timing import TimingSettings
from raynas.latency.service import LatencyService, arch_requests
from search_spaces import get_space

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def space():
    return get_space("efficient_topformer")


def samples(space, count, seed):
    rng = random.Random(seed)
    return [space.sample(rng) for _ in range(count)]


def test_mape_is_in_percent():
    assert mape([110.0, 45.0], [100.0, 50.0]) == pytest.approx(10.0)


def test_fit_recovers_a_linear_latency_exactly(space):
    """Latencies that are a non-negative linear function of the features are predicted exactly."""
    archs = samples(space, 48, seed=0)
    names = list(arch_features(space, archs[0], (64, 64), 11))
    truth = {name: 10.0 + 7 * i for i, name in enumerate(names)}

    def latency(arch):
        return sum(truth[n] * v for n, v in arch_features(space, arch, (64, 64), 11).items())

    model = fit_latency_model(space, archs, [latency(a) for a in archs], resolution=64, num_classes=11)
    assert (model.report["n_train"], model.report["n_test"]) == (36, 12)
    assert model.report["test_mape"] < 1e-6
    fresh = samples(space, 5, seed=1)
    np.testing.assert_allclose([model.predict(a) for a in fresh], [latency(a) for a in fresh], rtol=1e-6)
    assert all(c >= 0 for c in model.coefficients.values())


def test_save_load_and_cost_function(space, tmp_path):
    archs = samples(space, 12, seed=2)
    latencies = [1000 + space.cost(a, 64, 11)["flops"] / 1e4 for a in archs]
    model = fit_latency_model(space, archs, latencies, resolution=64, num_classes=11, device={"machine": "aarch64"})
    model.save(tmp_path / "model.json")
    loaded = LatencyModel.load(tmp_path / "model.json")
    arch = archs[0]
    assert loaded.predict(arch) == pytest.approx(model.predict(arch))
    assert loaded.cost(arch) == {"latency_ms": pytest.approx(model.predict(arch) / 1e3)}
    assert (loaded.resolution, loaded.num_classes, loaded.device, loaded.report) == (
        (64, 64), 11, {"machine": "aarch64"}, model.report)
    with pytest.raises(UserError, match="fitted for space 'efficient_topformer', not 'nb201'"):
        LatencyModel.load(tmp_path / "model.json", space=get_space("nb201"))


def test_bad_fit_input_is_named(space):
    archs = samples(space, 4, seed=3)
    with pytest.raises(UserError, match="4 architectures but 3 latencies"):
        fit_latency_model(space, archs, [1.0, 2.0, 3.0], 64, 11)
    with pytest.raises(UserError, match="test_fraction"):
        fit_latency_model(space, archs, [1.0] * 4, 64, 11, test_fraction=1.0)
    with pytest.raises(UserError, match="at least 2 training measurements, got 0"):
        fit_latency_model(space, [], [], 64, 11)


def test_fit_from_measured_topformer_subnets(space, tmp_path):
    """Measured at 64x64 (to stay fast): the model beats predicting the training mean."""
    archs = [space.min_arch(), space.max_arch(), *samples(space, 10, seed=4)]
    supernet = space.build_supernet(num_classes=11)
    service = LatencyService(tmp_path, settings=TimingSettings(warmup=3, repeats=20))  # medians steady enough to rank
    results = service.measure(arch_requests(space, supernet, archs, 64))
    measured = [r["latency_cpu_ms"] * 1e3 for r in results]  # CPU time: robust to a busy machine
    model = fit_latency_model(space, archs, measured, 64, 11, device=results[0]["device"], test_fraction=0.25)
    report = model.report
    print(f"held-out MAPE {report['test_mape']:.1f}% vs {report['baseline_test_mape']:.1f}% for the training mean")
    assert (report["n_train"], report["n_test"]) == (9, 3)
    assert report["test_mape"] < report["baseline_test_mape"]
    assert model.predict(space.max_arch()) > model.predict(space.min_arch())
