"""Supernet training: the step's pieces, the config, and real two-worker Ray Train runs on CamVid."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from raynas.errors import UserError
from raynas.training_config import SupernetTrainingConfig
from search_spaces import get_space
from tests.conftest import tiny_supernet_config
from trainables.checkpoints import load_supernet
from trainables.sandwich import sandwich
from trainables.supernet_training import train_supernet
from trainables.training import distillation_loss, warmup_poly


def test_sandwich_has_max_random_min_and_is_the_same_for_a_step():
    space = get_space("efficient_topformer")
    archs = sandwich(space, step=7, seed=0, random_subnets=2)
    assert len(archs) == 4
    assert archs[0] == space.max_arch() and archs[-1] == space.min_arch()
    assert sandwich(space, step=7, seed=0, random_subnets=2) == archs  # every worker draws the same
    assert sandwich(space, step=8, seed=0, random_subnets=2)[1:3] != archs[1:3]


def test_a_sandwich_step_adds_the_students_gradients_to_the_max_sub_networks():
    import torch.nn.functional as F

    from raynas.training_config import TrainingSection
    from trainables.sandwich import sandwich_step

    space = get_space("efficient_topformer", head_channels=16)
    torch.manual_seed(0)
    net = space.build_supernet(num_classes=3).eval()  # eval: no dropout, BN from running statistics
    image, label = torch.randn(2, 3, 32, 32), torch.randint(0, 3, (2, 32, 32))

    def grads(archs, **training) -> list[torch.Tensor]:
        net.zero_grad(set_to_none=False)
        sandwich_step(net, net, archs, image, label, lambda o, t: F.cross_entropy(o, t), TrainingSection(**training))
        return [p.grad.clone() for p in net.parameters()]

    alone = grads([space.max_arch()])
    archs = [space.max_arch(), space.min_arch()]
    assert all(torch.equal(a, b) for a, b in zip(alone, grads(archs, student_weight=0.0)))
    full, half = grads(archs), grads(archs, student_weight=0.5)
    student = [f - a for f, a in zip(full, alone)]
    assert max(s.abs().max() for s in student) > 0
    assert all(torch.allclose(h, a + s / 2, atol=1e-6) for h, a, s in zip(half, alone, student))
    # without distillation the student learns the labels: its gradient is that of its own cross-entropy
    net.zero_grad(set_to_none=False)
    net.set_active(space.min_arch())
    F.cross_entropy(net(image), label).backward()
    own = [p.grad.clone() for p in net.parameters()]
    labels_only = grads(archs, distill=False)
    assert all(torch.allclose(c, a + o, atol=1e-6) for c, a, o in zip(labels_only, alone, own))


def test_warmup_then_poly_decay():
    factors = [warmup_poly(s, total_steps=100, warmup_steps=10, warmup_ratio=1e-6, power=1.0) for s in range(101)]
    assert factors[0] == pytest.approx(1e-6)
    assert factors[5] == pytest.approx(0.5 * 0.95, rel=1e-3)  # half-way up the ramp, times the poly factor
    assert factors[10] == pytest.approx(0.9) and factors[50] == pytest.approx(0.5) and factors[100] == 0.0
    assert all(a < b for a, b in zip(factors[:10], factors[1:11]))
    assert all(a > b for a, b in zip(factors[10:100], factors[11:]))


def test_distillation_loss_is_zero_only_when_the_student_matches_the_teacher():
    logits = torch.randn(2, 5, 4, 4)
    teacher = torch.softmax(logits, dim=1)
    assert distillation_loss(logits, teacher).item() == pytest.approx(0.0, abs=1e-6)
    assert distillation_loss(torch.randn(2, 5, 4, 4), teacher).item() > 0.05


@pytest.mark.parametrize("raw, field", [
    ({"training": {"lr": 0}}, "training.lr"),
    ({"training": {"random_subnets": -1}}, "training.random_subnets"),
    ({"data": {"dataset": "pascal"}}, "data.dataset"),
    ({"data": {"crop_size": [64]}}, "data.crop_size"),
    ({"scaling": {"num_workers": 0}}, "scaling.num_workers"),
    ({"trainig": {}}, "trainig"),
    ({"space": "nb201"}, "space"),
])
def test_bad_config_names_the_field(raw, field):
    with pytest.raises(UserError, match=field):
        SupernetTrainingConfig.load(raw)


def test_quickstart_and_cluster_configs_are_valid():
    quick = SupernetTrainingConfig.from_yaml("configs/quickstart_cpu.yaml")
    cluster = SupernetTrainingConfig.from_yaml("configs/ade20k_cluster.yaml")
    assert quick.scaling.num_workers == 2 and not quick.scaling.use_gpu
    assert cluster.data.dataset == "ade20k" and cluster.data.crop_size == 512 and cluster.scaling.use_gpu
    assert cluster.training.epochs * cluster.training.steps_per_epoch == 160_000


def test_missing_data_fails_before_any_worker_starts(tmp_path):
    with pytest.raises(UserError, match="CamVid: expected"):
        train_supernet({"data": {"dataset": "camvid", "root": str(tmp_path)}, "run": {"storage_path": str(tmp_path)}})


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="supernet.pt"):
        load_supernet(tmp_path)


def _val_cross_entropy(supernet, meta, checkpoint) -> float:
    """Cross-entropy of the max sub-network on the first 16 CamVid val images, BN on batch statistics as in training."""
    import torch.nn.functional as F

    from trainables.recalibration import batch_norms, preserved_bn_statistics
    from trainables.subnet_evaluation import SubnetEvaluation, cached_batches

    settings = SubnetEvaluation(calibration_images=0, val_images=16)
    supernet.set_active(get_space(meta["space"], **meta["space_options"]).max_arch())
    supernet.eval()
    losses = []
    with preserved_bn_statistics(supernet), torch.no_grad():
        for bn in batch_norms(supernet):
            bn.train()
        for image, label in cached_batches(settings, meta, "val"):
            losses.append(F.cross_entropy(supernet(image), label, ignore_index=meta["ignore_index"]).item())
    return sum(losses) / len(losses)


def test_two_workers_lower_the_loss_and_checkpoint_every_epoch(tiny_supernet):
    run_dir = Path(tiny_supernet.run_dir)
    assert sorted(p.name for p in run_dir.glob("checkpoint_epoch_*")) == ["checkpoint_epoch_0001", "checkpoint_epoch_0002"]
    trained, meta = load_supernet(run_dir)  # a run directory means its latest checkpoint
    history = meta["history"]
    assert [h["epoch"] for h in history] == [1, 2] and meta["step"] == 16
    assert meta["num_classes"] == 11 and meta["space_options"] == {"head_channels": 32}
    for h in history:
        assert 0 <= h["val_miou_min"] <= 1 and 0 <= h["val_miou_max"] <= 1 and h["images_per_s"] > 0
        assert math.isfinite(h["loss_distill"]) and h["loss_distill"] > 0
    # The max sub-network's training loss falls from epoch to epoch ...
    assert history[1]["loss_max"] < history[0]["loss_max"], history
    # ... and on held-out images the trained supernet beats a freshly initialised one.
    torch.manual_seed(0)
    untrained = get_space(meta["space"], **meta["space_options"]).build_supernet(meta["num_classes"])
    before = _val_cross_entropy(untrained, meta, run_dir)
    after = _val_cross_entropy(trained, meta, run_dir)
    assert after < 0.9 * before, (before, after)


def test_training_shows_a_line_per_epoch_and_keeps_ray_quiet(tiny_supernet):
    out = tiny_supernet.stdout
    epochs = [line for line in out.splitlines() if line.startswith("train-supernet: epoch ")]
    assert [line.split()[2] for line in epochs if "loss_max" in line] == ["1/2", "2/2"]  # a line per epoch
    assert all("val_miou_max" in line and "images_per_s" in line for line in epochs if "loss_max" in line)
    assert "CamVid" in out and out.splitlines()[-1].startswith("train-supernet: checkpoint: ")
    everything = out + tiny_supernet.stderr
    for chatter in ("Token authentication", "Started a local Ray", "Training finished", "╭", "View detailed results",
                    "Ray Train", "TensorBoard"):
        assert chatter not in everything  # Ray's and Train's own output goes to the run's raynas.log
    assert (Path(tiny_supernet.run_dir) / "raynas.log").exists()


def test_the_bar_within_an_epoch_shows_steps_rate_and_time_left():
    import io

    from raynas.progress import Progress, render_training

    out = io.StringIO()
    progress = Progress(out, interval=0)
    render_training({"kind": "step", "epoch": 1, "epochs": 3, "step": 5, "steps": 20, "images_per_s": 12.5,
                     "eta_s": 75.0}, progress)
    render_training({"kind": "epoch", "epochs": 3, "metrics": {"epoch": 1, "loss_max": 1.5}}, progress)
    lines = out.getvalue().splitlines()
    assert lines[0] == "epoch 1/3 [#####...............] step 5/20  12.5 img/s  epoch ETA 1:15"
    assert lines[1] == "epoch 1/3  loss_max 1.5"


def test_resume_from_a_checkpoint_continues_the_epoch_count(tiny_supernet, ray_local, tmp_path):
    config, checkpoint = tiny_supernet.config, tiny_supernet.checkpoint
    latest = Path(checkpoint)
    _, before = load_supernet(latest)
    resumed_config = tiny_supernet_config(config["data"]["root"], tmp_path, name="resumed", epochs=3)
    resumed_config["scaling"]["num_workers"] = 1  # a 2-worker checkpoint goes on with 1 worker
    resumed = train_supernet(resumed_config, resume=latest)
    _, meta = load_supernet(resumed.checkpoint.path)
    assert [h["epoch"] for h in meta["history"]] == [1, 2, 3]  # only epoch 3 trained here
    assert meta["step"] == 24
    assert meta["history"][:2] == before["history"]
    assert list(resumed.metrics_dataframe["epoch"]) == [3]
