"""The sweep over a trained supernet, exactly as over the tabular benchmark: latency measured, FLOPs bounded."""

from __future__ import annotations

import json
import random
import statistics

from analysis.results import load_results
from raynas.cli import main
from search_spaces import get_space


def test_sweep_over_a_supernet_measures_latency_once_and_honours_a_flops_budget(tiny_supernet, ray_local, tmp_path):
    config, checkpoint = tiny_supernet.config, tiny_supernet.checkpoint
    space = get_space("efficient_topformer", **config["space_options"])
    flops = [space.cost(space.sample(random.Random(i)), resolution=128, num_classes=11)["flops"] for i in range(200)]
    limit = statistics.median(flops)  # about half the space is feasible
    out, cache = tmp_path / "sweep", tmp_path / "latency"
    argv = ["sweep", "--space", "efficient_topformer", "--supernet", checkpoint,
            "--searchers", "cds,optuna", "--budget", "3", "--max-flops", str(limit), "--out", str(out),
            "--evaluation", json.dumps({"calibration_images": 4, "val_images": 4, "resolution": 128}),
            "--latency", json.dumps({"resolution": 64, "warmup": 1, "repeats": 3, "cache_dir": str(cache)})]
    assert main(argv) == 0

    trials, settings = load_results(out)
    assert settings["benchmark"] == "supernet" and settings["constraint"] == {"metric": "flops", "limit": limit}
    feasible = trials[trials["feasible"] & ~trials["repeat"]]
    assert feasible.groupby("searcher").size().to_dict() == {"cds": 3, "optuna": 3}
    assert (trials[~trials["feasible"]]["flops"] > limit).all()  # Optuna's infeasible proposals, answered at once
    for _, row in feasible.iterrows():
        arch = space.from_config({k.removeprefix("config/"): v for k, v in row.items() if k.startswith("config/")})
        assert row["flops"] == space.cost(arch, resolution=128, num_classes=11)["flops"] <= limit
        assert 0 <= row["miou"] <= 1 and row["latency_ms"] > 0
    assert not feasible["latency_remote"].astype(bool).any()  # no node with the `arm` resource: measured here
    measured = [json.loads(line)["key"] for line in (cache / "latency.jsonl").read_text().splitlines()]
    assert len(measured) == len(set(measured)) == feasible["arch_id"].nunique()  # each architecture once
