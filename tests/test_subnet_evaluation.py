"""Sub-network evaluation: BN recalibration, scoring with inherited weights, and Tune trials."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
import torch
from torch import nn

from raynas.errors import UserError
from raynas.progress import Progress
from search_spaces import get_space
from tests.conftest import local_ray_address
from trainables.recalibration import evaluate_arch, preserved_bn_statistics, recalibrate_bn
from trainables.subnet_evaluation import (
    SubnetEvaluation,
    SupernetObjective,
    SupernetSettings,
    cached_batches,
    cached_supernet,
    score_subnet,
)

CAMVID_EPOCHS = 2  # of 30 steps × 8 images


def test_recalibration_gives_the_exact_statistics_of_the_images_and_is_undone_after():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5))
    batches = [(torch.randn(2, 3, 8, 8) * 3 + 1, None) for _ in range(3)]
    features = torch.cat([model[0](image) for image, _ in batches]).detach()
    momentum = model[1].momentum
    with preserved_bn_statistics(model):
        assert recalibrate_bn(model, batches) == 6
        torch.testing.assert_close(model[1].running_mean, features.mean((0, 2, 3)))
        # the plain average over equal batches of their (unbiased) variances
        per_batch = [f.var((0, 2, 3), unbiased=True) for f in features.split(2)]
        torch.testing.assert_close(model[1].running_var, torch.stack(per_batch).mean(0))
        assert not model.training
    assert model[1].momentum == momentum
    assert torch.equal(model[1].running_mean, torch.zeros(4)) and torch.equal(model[1].running_var, torch.ones(4))


def test_bad_settings_name_the_field(tmp_path):
    with pytest.raises(UserError, match="sweep.supernet: required"):
        SupernetSettings.load({})
    with pytest.raises(UserError, match=r"sweep.evaluation: unknown field\(s\) \['val_imgs'\]; allowed fields"):
        SupernetSettings.load({"supernet": str(tmp_path), "evaluation": {"val_imgs": 3}})
    with pytest.raises(UserError, match="sweep.evaluation.calibration_images: must be a whole number >= 0; got -1"):
        SupernetSettings.load({"supernet": str(tmp_path), "evaluation": {"calibration_images": -1}})
    with pytest.raises(UserError, match="sweep.evaluation.val_images: must be a whole number >= 1; got 2.5"):
        SupernetSettings.load({"supernet": str(tmp_path), "evaluation": {"val_images": 2.5}})
    with pytest.raises(UserError, match="sweep.latency.warmup: must be a whole number >= 0"):
        SupernetSettings.load({"supernet": str(tmp_path), "latency": {"warmup": -1}})
    with pytest.raises(UserError, match="supernet checkpoint"):  # no checkpoint there: before any Ray
        SupernetObjective(SupernetSettings.load({"supernet": str(tmp_path)}))


def test_recalibration_on_the_supernet_uses_the_active_subnets_own_statistics():
    space = get_space("efficient_topformer", head_channels=32)
    torch.manual_seed(0)
    supernet = space.build_supernet(11)
    supernet.set_active(space.min_arch())  # stem 16 of 24 channels
    batches = [(torch.randn(2, 3, 64, 64), None) for _ in range(2)]
    stem_out = torch.cat([supernet.stem.conv(image) for image, _ in batches]).detach()
    assert stem_out.shape[1] == space.min_arch()["stem_width"] == 16
    with preserved_bn_statistics(supernet):
        recalibrate_bn(supernet, batches)
        torch.testing.assert_close(supernet.stem.bn.running_mean[:16], stem_out.mean((0, 2, 3)))
    assert torch.equal(supernet.stem.bn.running_mean, torch.zeros(24))


@pytest.fixture(scope="module")
def camvid_budget_supernet(tmp_path_factory, camvid_dir):
    """``configs/camvid_cpu.yaml`` (2 workers, 30 steps of 8 images an epoch) cut to EPOCHS epochs at 72×96
    (64×64 crops), a run directory. Its min sub-network scored 0.067 recalibrated against 0.027 with the running
    statistics, at 120×160 (the config's size, twice the time) 0.128 against 0.106: the check holds at either."""
    import yaml

    from trainables.supernet_training import train_supernet

    config = yaml.safe_load(open("configs/camvid_cpu.yaml"))
    config["data"].update(root=str(camvid_dir), base_size=72, crop_size=64)
    config["training"]["epochs"] = CAMVID_EPOCHS
    config["evaluation"]["val_images"] = 8  # the epochs' own scores: not what the test compares
    config["run"] = {"storage_path": str(tmp_path_factory.mktemp("camvid_runs")), "name": "camvid"}
    local_ray_address()
    result = train_supernet(config, progress=Progress(stream=open(os.devnull, "w")))
    return str(Path(result.checkpoint.path).parent)


def test_bn_recalibration_beats_the_supernets_running_statistics_for_the_min_subnet(camvid_budget_supernet):
    # During training every step runs max, random and min sub-networks in train mode, so the
    # shared running statistics blend all of them (and trail the weights): wrong for any single one.
    evaluation = SubnetEvaluation(calibration_images=32)
    supernet, meta = cached_supernet(camvid_budget_supernet)
    space = get_space(meta["space"], **meta["space_options"])
    calibration, val = cached_batches(evaluation, meta, "train"), cached_batches(evaluation, meta, "val")
    state = {k: v.clone() for k, v in supernet.state_dict().items()}
    recalibrated, _, _ = evaluate_arch(supernet, space.min_arch(), calibration, val, 11, 255)
    as_trained, _, _ = evaluate_arch(supernet, space.min_arch(), [], val, 11, 255)
    assert recalibrated.compute()["miou"] > as_trained.compute()["miou"] + 0.02
    assert all(torch.equal(state[k], v) for k, v in supernet.state_dict().items())  # left as found


def test_score_reports_miou_cost_and_a_time_split(tiny_supernet):
    checkpoint = tiny_supernet.checkpoint
    space = get_space("efficient_topformer", head_channels=32)
    arch = space.sample(random.Random(3))
    evaluation = SubnetEvaluation(calibration_images=8, val_images=8)
    metrics = score_subnet(dict(arch, unrelated_key=1), checkpoint, evaluation)
    assert 0 < metrics["miou"] <= 1
    assert {k: metrics[k] for k in ("params", "flops")} == space.cost(arch, resolution=512, num_classes=11)
    assert metrics["arch_id"] == space.arch_id(arch)
    parts = metrics["recalibration_s"] + metrics["inference_s"] + metrics["overhead_s"]
    assert parts == pytest.approx(metrics["eval_s"]) and min(metrics["recalibration_s"], metrics["inference_s"]) > 0
    assert metrics["device"] == "cpu"  # device "auto" without a GPU given to this process
    assert score_subnet(arch, checkpoint, evaluation)["miou"] == metrics["miou"]  # deterministic, cached


def test_tune_trials_with_reused_actors_load_the_supernet_once(tiny_supernet, ray_local, tmp_path):
    from ray import tune

    from trainables.objective import run_trial

    checkpoint = tiny_supernet.checkpoint
    objective = SupernetObjective(SupernetSettings.load(
        {"supernet": checkpoint, "evaluation": {"calibration_images": 8, "val_images": 8}}))
    space = objective.space
    assert objective.metric == "miou" and objective.cost(space.min_arch()) == space.cost(
        space.min_arch(), resolution=512, num_classes=11)
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(run_trial, objective=objective), {"cpu": 1}),
        param_space=space.to_tune(),
        tune_config=tune.TuneConfig(metric="miou", mode="max", num_samples=3, max_concurrent_trials=1,
                                    reuse_actors=True),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="subnets"),
    )
    frame = tuner.fit().get_dataframe()
    assert len(frame) == 3 and frame["miou"].between(0, 1).all() and frame["feasible"].all()
    assert sorted(frame["supernet_cached"]) == [False, True, True]
    for _, row in frame.iterrows():
        arch = space.from_config({k.removeprefix("config/"): v for k, v in row.items() if k.startswith("config/")})
        assert row["arch_id"] == space.arch_id(arch)
        assert row["flops"] == objective.cost(arch)["flops"]
