"""``python -m raynas latency``: measure named sub-networks, fit a model, reuse the cache."""

from __future__ import annotations

import torch

from raynas.cli import main
from raynas.latency.model import LatencyModel

torch.set_num_threads(1)


def test_measure_fit_and_cache(tmp_path, capsys):
    import ray

    ray.shutdown()  # measured in this process, as without --address
    common = ["latency", "--resolution", "32", "--num-classes", "11", "--warmup", "0", "--repeats", "2",
              "--cache-dir", str(tmp_path / "cache")]
    model_path = tmp_path / "model.json"
    assert main([*common, "--arch", "min", "--fit", "4", "--model-out", str(model_path)]) == 0
    out = capsys.readouterr().out
    assert "min (" in out and "median" in out and '"note": "Ray is not initialised; measured locally"' in out
    assert "measured 4, from the cache 0" in out  # min is also one of the fitted four: measured once
    assert "latency model: held-out MAPE" in out
    model = LatencyModel.load(model_path)
    assert model.resolution == (32, 32) and model.report["n_train"] == 3
    assert model.predict(model.space.max_arch()) > 0

    assert main([*common, "--arch", "min", "--arch", "max"]) == 0
    assert "measured 0, from the cache 2" in capsys.readouterr().out


def test_bad_arguments_are_named(capsys):
    assert main(["latency"]) == 2
    assert "give --arch NAME (repeatable) or --fit N" in capsys.readouterr().err
    assert main(["latency", "--arch", "min", "--resolution", "32", "0"]) == 2
    assert "resolution" in capsys.readouterr().err
    assert main(["latency", "--space", "nb201", "--arch", "min"]) == 2
    assert "no network to export" in capsys.readouterr().err
