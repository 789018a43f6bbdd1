"""Fine-tuning a sweep's winners: better than the inherited weights, an ONNX model that matches, resume, ASHA."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.stats
import pytest
import torch

from analysis.results import write_trials
from raynas.cli import main
from raynas.config import SweepConfig
from raynas.data.preprocessing import Preprocessing
from raynas.errors import UserError
from raynas.progress import Progress
from raynas.shipped_model import ShippedModel
from raynas.sweep import run_sweep
from tests.conftest import joining_env, local_ray_address
from trainables.finetune import FinetunePlan, FinetuneSettings, load_model

REPO = Path(__file__).resolve().parent.parent
TINY = {"epochs": 3, "steps_per_epoch": 8, "batch_size": 4, "lr": 2e-3}


def quiet() -> Progress:
    return Progress(stream=open(os.devnull, "w"))


@pytest.fixture(scope="module")
def supernet_sweep(tiny_supernet, tmp_path_factory) -> Path:
    """A small sweep over the tiny supernet: four sub-networks of CDS."""
    local_ray_address()
    out = tmp_path_factory.mktemp("ft") / "sweep"
    run_sweep(SweepConfig.load({"benchmark": "supernet", "supernet": tiny_supernet.checkpoint, "searchers": ["cds"],
                                "budget": 4, "out": str(out),
                                "searcher_options": {"cds": {"start_samples": 2}},
                                "evaluation": {"calibration_images": 8, "val_images": 16, "resolution": 128},
                                "latency": {"resolution": 64, "warmup": 1, "repeats": 3,
                                            "cache_dir": str(out.parent / "latency")}}), progress=quiet())
    return out


def test_finetuning_beats_the_inherited_weights_and_exports_a_matching_onnx_model(
        supernet_sweep, camvid_dir, tmp_path, capsys):
    # long enough to get past the first steps' collapse onto the frequent classes; without distillation, since
    # the tiny supernet's largest sub-network is no teacher yet (it trained 16 steps)
    settings = FinetuneSettings.load({"recipe": {**TINY, "steps_per_epoch": 20, "batch_size": 8, "lr": 5e-3,
                                                 "distill": False},
                                      "scaling": {"num_workers": 2, "resources_per_worker": {"CPU": 1}},
                                      "evaluation": {"calibration_images": 8, "val_images": 16},
                                      "out": str(tmp_path / "models")})
    (metrics,) = FinetunePlan(supernet_sweep, settings).run(quiet())
    assert metrics["val_miou_torch"] > metrics["inherited_miou"] > 0  # fine-tuning improved on the sweep's score
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3]
    assert metrics["resolution"] == 128 and metrics["flops"] > 0 and metrics["latency"]["latency_ms"] > 0
    assert set(metrics["per_class_iou"]) >= {"sky", "road", "car"}
    # scored once more, at the end, on CamVid's whole test split, which nothing was chosen on: by ONNX Runtime on
    # the shipped file, through the preprocessing it carries, as PyTorch scored it during training
    assert 0 < metrics["test_miou"] < 1 and metrics["history"][-1]["test_miou"] == metrics["test_miou_torch"]
    assert abs(metrics["test_miou"] - metrics["test_miou_torch"]) <= 0.002
    assert set(metrics["test_per_class_iou"]) == set(metrics["per_class_iou"])
    assert "test_miou" not in metrics["history"][0]
    folder = tmp_path / "models" / metrics["arch_id"]
    assert json.loads((folder / "metrics.json").read_text())["val_miou"] == metrics["val_miou"]
    shipped = ShippedModel(folder / "model.onnx")
    record = shipped.preprocessing
    assert record == Preprocessing.from_dict(metrics["preprocessing"])
    assert record.class_names[:3] == ("sky", "building", "pole") and record.ignore_index == 255
    height, width = record.input_size
    assert metrics["latency_trained_size"]["resolution"] == [height, width]
    assert metrics["latency_trained_size"]["label"] == "trained size" and metrics["latency"]["resolution"] == [64, 64]
    # the exported ONNX model computes what the PyTorch module does, at the trained size and others, in batches
    model = load_model(folder)  # from the folder alone
    assert metrics["space_options"]["head_channels"] == 32 and metrics["num_classes"] == 11
    for shape in ((1, 3, height, width), (4, 3, height, width), (1, 3, 90, 120)):
        image = torch.randn(*shape)
        with torch.no_grad():
            expected = model(image).numpy()
        got = shipped.logits(image.numpy())
        assert got.shape == expected.shape and np.abs(got - expected).max() <= 1e-4
    # a camera frame of another size gets a label per pixel
    assert shipped.predict(np.zeros((360, 480, 3), dtype=np.uint8)).shape == (360, 480)
    _predict_writes_masks_and_overlays(folder, camvid_dir, tmp_path, capsys)
    # the sweep's best sub-network was the one fine-tuned
    trials = pd.read_parquet(supernet_sweep / "trials.parquet")
    assert metrics["arch_id"] == trials.sort_values("miou").iloc[-1]["arch_id"]


def _predict_writes_masks_and_overlays(folder: Path, camvid_dir: Path, tmp_path: Path, capsys) -> None:
    """`raynas predict` on the shipped model: a folder and a file of any size in, a mask, an overlay per image and
    the legend out; a folder without images and an unreadable file are one clear error each, nothing written."""
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    for name in sorted(os.listdir(camvid_dir / "test"))[:2]:
        (images / name).write_bytes((camvid_dir / "test" / name).read_bytes())
    small = tmp_path / "small.jpg"
    Image.fromarray(np.full((50, 70, 3), 128, dtype=np.uint8)).save(small)
    out = tmp_path / "predicted"
    assert main(["predict", str(folder), str(images), str(small), "--out", str(out)]) == 0
    assert "3 images in" in capsys.readouterr().out
    stems = [p.stem for p in sorted(images.iterdir())] + ["small"]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["legend.png"] + [f"{s}_{kind}.png" for s in stems for kind in ("mask", "overlay")])
    with Image.open(out / "small_mask.png") as mask, Image.open(small) as image:
        assert mask.size == image.size  # at the image's own size
    colours = {tuple(c) for c in np.asarray(Image.open(out / f"{stems[0]}_mask.png")).reshape(-1, 3)}
    assert len(colours) >= 3  # a street scene is more than one class
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken.png").write_text("not an image")
    for bad, says in ((tmp_path / "empty", "holds no images"), (tmp_path / "broken.png", "cannot read")):
        assert main(["predict", str(folder), str(bad), "--out", str(tmp_path / "never")]) == 2
        assert says in capsys.readouterr().err and not (tmp_path / "never").exists()


def test_a_killed_finetuning_resumes_from_its_checkpoint(supernet_sweep, tmp_path):
    out = tmp_path / "models"
    config = tmp_path / "ft.yaml"
    config.write_text(json.dumps({"finetune": {
        "recipe": {**TINY, "epochs": 4}, "out": str(out), "scaling": {"num_workers": 1},
        "evaluation": {"calibration_images": 8, "val_images": 8}}}))
    # joining this session's Ray: the driver alone dies, as on a cluster
    proc = subprocess.Popen([sys.executable, "-m", "raynas", "finetune", str(supernet_sweep), "--config", str(config)],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env=joining_env())
    try:
        deadline = time.time() + 300
        # until Ray Train has registered epoch 2's checkpoint (its files are copied into the run first; a kill
        # between the copy and the registration resumes from epoch 1, as Ray Train restores what it registered)
        while not any("checkpoint_epoch_0002" in p.read_text()
                      for p in out.glob("*/train/checkpoint_manager_snapshot.json")):
            assert proc.poll() is None, proc.stderr.read()
            assert time.time() < deadline, "no checkpoint in time"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    (first,) = [json.loads(p.read_text()) for p in out.glob("*/train/checkpoint_epoch_0002/meta.json")]
    assert main(["finetune", str(supernet_sweep), "--config", str(config)]) == 0
    (metrics,) = [json.loads(p.read_text()) for p in out.glob("*/metrics.json")]
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3, 4]
    assert metrics["history"][:2] == first["history"]  # epochs 1-2 came from the checkpoint, not trained again


def test_asha_stops_poor_recipes_early(supernet_sweep, tmp_path):
    settings = FinetuneSettings.load({
        "recipe": {**TINY, "steps_per_epoch": 10, "batch_size": 8}, "scaling": {"num_workers": 1},
        "evaluation": {"calibration_images": 8, "val_images": 16}, "out": str(tmp_path / "models"),
        # learning rates far apart, so that the recipes' scores differ after an epoch (ASHA continues ties)
        "search": {"num_samples": 4, "epochs": [4], "lr": [1e-6, 3e-2], "distill": [False], "grace_period": 1,
                   "reduction_factor": 2}})
    (metrics,) = FinetunePlan(supernet_sweep, settings).run(quiet())
    searched = metrics["searched_recipe"]
    assert set(searched) == {"lr", "weight_decay", "epochs", "distill"}
    from ray.tune import ExperimentAnalysis

    frame = ExperimentAnalysis(str(tmp_path / "models" / metrics["arch_id"] / "search")).dataframe()
    assert len(frame) == 4 and frame["training_iteration"].min() < 4  # ASHA stopped some before 4 epochs
    assert frame["training_iteration"].max() == 4 == metrics["epochs"]  # the best one ran to the end
    # two runs at once, as many as the 2 CPUs hold (1 worker each): the others waited as trials, not as Train runs
    starts, ends = frame["timestamp"] - frame["time_total_s"], frame["timestamp"]
    assert max(((starts <= t) & (ends > t)).sum() for t in starts) == 2


def test_bad_sweeps_are_one_clear_error_before_anything_runs(supernet_sweep, nb201_table, tmp_path, capsys):
    trials = pd.read_parquet(supernet_sweep / "trials.parquet")
    settings = json.loads((supernet_sweep / "sweep.json").read_text())
    nothing = tmp_path / "nothing"
    nothing.mkdir()
    write_trials(trials.assign(feasible=False), nothing / "trials.parquet", settings)
    with pytest.raises(UserError, match="no feasible evaluated sub-network to fine-tune"):
        FinetunePlan(nothing, FinetuneSettings())
    gone = tmp_path / "gone"
    gone.mkdir()
    write_trials(trials, gone / "trials.parquet", {**settings, "checkpoint": str(tmp_path / "deleted")})
    assert main(["finetune", str(gone)]) == 2
    assert "checkpoint" in capsys.readouterr().err and not (gone / "finetune").exists()
    nb201 = tmp_path / "nb201"
    nb201.mkdir()
    write_trials(trials, nb201 / "trials.parquet", {**settings, "benchmark": "nb201"})
    with pytest.raises(UserError, match="fine-tuning needs sub-networks with weights"):
        FinetunePlan(nb201, FinetuneSettings())
    with pytest.raises(UserError, match="finetune.recipe.epochs: must be a whole number >= 1; got 0"):
        FinetuneSettings.load({"recipe": {"epochs": 0}})


def test_rank_check_fine_tunes_two_sets_and_says_how_far_the_ranking_holds(supernet_sweep, capsys):
    from analysis.report import write_report
    from analysis.results import load_results
    from raynas.sweep_folder import SweepFolder

    recipe = json.dumps({"epochs": 1, "steps_per_epoch": 4, "batch_size": 4, "lr": 5e-3, "distill": False})
    args = ["rank-check", str(supernet_sweep), "--k", "3", "--recipe", recipe, "--json"]
    assert main(args) == 0
    printed = json.loads(capsys.readouterr().out)  # stdout holds the one object, nothing else
    folder = SweepFolder(supernet_sweep)
    check = json.loads(folder.rank_check_file.read_text())
    assert set(printed) == {"spread", "top_k"}
    for name in ("spread", "top_k"):
        assert set(printed[name]) == {"n", "kendall_tau", "ci_low", "ci_high", "spearman"} and printed[name]["n"] == 3
        inherited, finetuned = ([check["models"][i][key] for i in check[name]["arch_ids"]]
                                for key in ("inherited", "finetuned"))
        # scipy's tau-b and rho of the same scores (a tiny supernet's models may tie: nothing to rank, null)
        tau, rho = scipy.stats.kendalltau(inherited, finetuned)[0], scipy.stats.spearmanr(inherited, finetuned)[0]
        if math.isnan(tau):
            assert printed[name]["kendall_tau"] is None and printed[name]["spearman"] is None
        else:
            assert printed[name]["kendall_tau"] == pytest.approx(tau) and printed[name]["spearman"] == pytest.approx(rho)
            assert printed[name]["ci_low"] <= printed[name]["kendall_tau"] <= printed[name]["ci_high"]
    trials, settings = load_results(supernet_sweep)
    evaluated = trials[trials["feasible"] & ~trials["repeat"]].drop_duplicates("arch_id")
    best = evaluated.sort_values("miou", ascending=False)
    assert check["top_k"]["arch_ids"] == list(best["arch_id"][:3])  # the search's own top three
    by_flops = evaluated.sort_values("flops")["arch_id"].tolist()
    assert check["spread"]["arch_ids"][0] == by_flops[0] and check["spread"]["arch_ids"][-1] == by_flops[-1]
    for arch_id in set(check["spread"]["arch_ids"]) | set(check["top_k"]["arch_ids"]):
        model = check["models"][arch_id]
        assert model["inherited"] == float(best.set_index("arch_id").loc[arch_id, "miou"])
        assert 0 < model["finetuned"] < 1
    assert len(list((folder.rank_check / "models").iterdir())) == len(check["models"])  # each fine-tuned once
    # run again: the finished check is read back from its Tune experiment, nothing trains twice
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out) == printed
    page = write_report(trials, settings, supernet_sweep / "report.html", rank_check=check).read_text()
    assert "How far the ranking holds" in page and f"<td>{check['top_k']['n']}</td>" in page
