"""A latency model fitted from measurements on the device.

Latency in microseconds is a non-negative linear function of an
architecture's analytic cost per part (``space.cost_breakdown``: MFLOPs of
stem, mb1..mb5, vit1..vit4, injection, head), its parameter count, its layer
count (the sum of the space's ``depth_dimensions``) and a constant. Coefficients come from
non-negative least squares on the *relative* error, so every sub-network
counts alike; the held-out error (MAPE) of a train/test split is kept in
``report``. Searchers use it to check a latency budget before paying for a
measurement:

    model = fit_latency_model(space, archs, measured_us, resolution=512, num_classes=150)
    model.predict(arch)          # microseconds
    model.cost(arch)             # {"latency_ms": ...}: a cost function for constraints
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from raynas.errors import UserError
from raynas.latency.onnx_timing import input_size
from search_spaces.base import WeightSharingSpace

INTERCEPT = "intercept"


def arch_features(space: WeightSharingSpace, arch: Mapping[str, Any], resolution: Sequence[int], num_classes: int) -> dict[str, float]:
    """The model's inputs: MFLOPs per part, total M params, layer count, a constant 1.

    Few features on purpose: a model is fitted from tens of measurements.
    """
    breakdown = space.cost_breakdown(arch, tuple(resolution), num_classes)
    canon = space.validate(arch)
    return {
        INTERCEPT: 1.0,
        **{f"{part}.mflops": cost["flops"] / 1e6 for part, cost in breakdown.items()},
        "mparams": sum(cost["params"] for cost in breakdown.values()) / 1e6,
        "layers": float(sum(canon[name] for name in space.depth_dimensions)),
    }


def mape(predicted: Sequence[float], actual: Sequence[float]) -> float:
    """Mean absolute percentage error, in percent."""
    predicted, actual = np.asarray(predicted, float), np.asarray(actual, float)
    return float(np.mean(np.abs(predicted - actual) / actual) * 100)


class LatencyModel:
    """Microseconds = Σ coefficient × feature over ``arch_features`` (coefficients ≥ 0)."""

    def __init__(
        self,
        space,
        resolution: int | Sequence[int],
        num_classes: int,
        coefficients: Mapping[str, float],
        device: Mapping[str, Any] | None = None,
        report: Mapping[str, Any] | None = None,
    ):
        self.space = space
        self.resolution = input_size(resolution)
        self.num_classes = int(num_classes)
        self.coefficients = dict(coefficients)
        self.device = dict(device or {})
        self.report = dict(report or {})

    def predict(self, arch: Mapping[str, Any]) -> float:
        """Predicted latency of ``arch`` in microseconds on the fitted device."""
        features = arch_features(self.space, arch, self.resolution, self.num_classes)
        return float(sum(c * features.get(name, 0.0) for name, c in self.coefficients.items()))

    def cost(self, arch: Mapping[str, Any]) -> dict[str, float]:
        """``{"latency_ms": predicted}``: usable wherever a cost function is expected."""
        return {"latency_ms": self.predict(arch) / 1e3}

    def to_dict(self) -> dict[str, Any]:
        return {
            "space": self.space.name,
            "resolution": list(self.resolution),
            "num_classes": self.num_classes,
            "coefficients": self.coefficients,
            "device": self.device,
            "report": self.report,
        }

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | Path, space=None) -> "LatencyModel":
        """Read a saved model; ``space`` defaults to the registered space of that name."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise UserError(f"latency model {path}: cannot read it ({err})") from None
        if space is None:
            from search_spaces import get_space

            space = get_space(data["space"])
        elif space.name != data["space"]:
            raise UserError(f"latency model {path} was fitted for space {data['space']!r}, not {space.name!r}")
        return cls(space, data["resolution"], data["num_classes"], data["coefficients"], data["device"], data["report"])


def fit_latency_model(
    space,
    archs: Sequence[Mapping[str, Any]],
    latencies_us: Sequence[float],
    resolution: int | Sequence[int],
    num_classes: int,
    device: Mapping[str, Any] | None = None,
    test_fraction: float = 0.25,
    seed: int = 0,
) -> LatencyModel:
    """Fit on a random ``1 - test_fraction`` of the measurements; report MAPE on the rest.

    ``report["baseline_test_mape"]`` is the held-out MAPE of predicting the
    training mean, the bar a useful model clears.
    """
    from scipy.optimize import nnls

    if len(archs) != len(latencies_us):
        raise UserError(f"latency model: {len(archs)} architectures but {len(latencies_us)} latencies")
    if not 0 <= test_fraction < 1:
        raise UserError(f"latency model test_fraction: must be in [0, 1), got {test_fraction!r}")
    order = list(range(len(archs)))
    random.Random(seed).shuffle(order)
    n_test = int(round(len(order) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    if len(train) < 2:
        raise UserError(f"latency model: needs at least 2 training measurements, got {len(train)}")
    resolution = input_size(resolution)
    rows = [arch_features(space, a, resolution, num_classes) for a in archs]
    names = list(rows[0])
    x = np.array([[r[n] for n in names] for r in rows])
    y = np.asarray(latencies_us, float)

    scale = np.abs(x[train]).max(axis=0)
    scale[scale == 0] = 1.0
    weighted = x[train] / scale / y[train, None]  # rows divided by y: least squares on relative error
    solution, _ = nnls(weighted, np.ones(len(train)))
    coefficients = {n: float(c) for n, c in zip(names, solution / scale) if c > 0}
    predicted = x @ np.array([coefficients.get(n, 0.0) for n in names])
    report = {
        "resolution": list(resolution),
        "n_train": len(train),
        "n_test": len(test),
        "train_mape": mape(predicted[train], y[train]),
        "test_mape": mape(predicted[test], y[test]) if test else None,
        "test_max_ape": float(np.max(np.abs(predicted[test] - y[test]) / y[test]) * 100) if test else None,
        "baseline_test_mape": mape([y[train].mean()] * len(test), y[test]) if test else None,  # predicting the mean
        "seed": seed,
    }
    return LatencyModel(space, resolution, num_classes, coefficients, device, report)
