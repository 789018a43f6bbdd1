"""HR-NAS (seed 001): the space, its cost model against a counter, the elastic supernet, progressive shrinking."""

from __future__ import annotations

import io
import json
import os
import random

import pytest
import torch

from analysis.report import write_report
from analysis.results import load_epochs, load_results
from raynas.config import SweepConfig
from raynas.errors import UserError
from raynas.progress import Progress
from raynas.sweep import run_sweep
from search_spaces import get_space
from search_spaces.flop_counter import count
from search_spaces.hr_nas.network import Layout, LightTransformer, block_cost, transformer_cost, unit_costs
from trainables.finetune import FinetunePlan, FinetuneSettings
from trainables.shrinking import ShrinkingObjective, ShrinkingSettings, _reorder_group, _reorder_tokens

SMALL = {"stem": [8, 8], "modules": [[[1], [8]], [[1, 1], [8, 16]], [[1, 1, 1], [8, 16, 24]],
                                     [[1, 1, 1, 1], [8, 16, 24, 32]]],
         "expand_ratio": 2, "last_channel": 16, "tokens": 4, "token_size": 4, "hidden": 8}
TINY = {"space_options": SMALL,
        "data": {"dataset": "synthetic", "crop_size": 64,
                 "synthetic": {"length": 16, "val_length": 8, "size": 64, "seed": 0}},
        "epochs": 3, "steps_per_epoch": 2, "batch_size": 2, "resolution": [128, 128],
        "evaluation": {"calibration_images": 4, "val_images": 8, "batch_size": 4}}


@pytest.fixture(scope="module")
def space():
    return get_space("hr_nas", **SMALL)


def test_the_papers_layout_counts_as_its_modules_say():
    space = get_space("hr_nas")
    # 1 + 4 + 7 + 11 + 11 parallel blocks, 1 + 2 + 5 + 8 + 10 fusion paths, the head block
    assert len(space.specs) == 61 and len(space.dimensions) == 4 * 61
    assert space.block_names == ("branch0", "branch1", "branch2", "branch3")
    assert get_space("hr_nas", coordinates="kind").block_names == ("convolution", "transformer")
    head = space.dimension("head_k3").choices
    assert head[0] == 0 and head[-1] == 4 * (18 + 36 + 72 + 144)  # r·c_in channels per kernel group
    assert space.dimension("m0b0l0_tokens").choices == (0, 2, 4, 6, 8, 10, 12, 14, 16)


@pytest.mark.parametrize("resolution", [(128, 128), (64, 128)])
def test_analytic_cost_equals_the_count_on_the_real_module(space, resolution):
    rng = random.Random(0)
    for arch in [space.max_arch(), space.min_arch(), space.arch_from_name("k3"), space.arch_from_name("mixconv"),
                 *(space.sample(rng) for _ in range(3))]:
        assert space.cost(arch, resolution, 11) == count(space.build_model(arch, 11), resolution)


def test_the_transformer_costs_section_3_1s_terms():
    layout = Layout(token_size=4, hidden=8)
    n, c_in, c_out, s2, d = 5, 12, 20, 16, 8
    terms = 2 * (4 * n * d * s2 + 2 * n * n * d + 8 * n * s2 * s2) + (c_in + 2) * n * s2 + n * c_out * s2
    assert transformer_cost(n, c_in, c_out, layout)["flops"] == terms
    module = LightTransformer(c_in, c_out, n, 4, 8)

    class Path(torch.nn.Module):  # the Transformer path alone, at a 32x32 input
        def __init__(self):
            super().__init__()
            self.t = module

        def forward(self, x):
            return self.t(torch.zeros(1, c_in, 32, 32), (32, 32))

    counted = count(Path(), 32)
    assert counted == {"params": transformer_cost(n, c_in, c_out, layout)["params"], "flops": terms}


def test_a_units_delta_is_what_removing_it_saves(space):
    arch = space.max_arch()
    for spec in space.specs[:6]:
        counts = spec.counts(arch)
        deltas = unit_costs(spec, counts, 128, 128, space.layout)
        for field, delta in deltas.items():
            fewer = dict(counts, **{field: counts[field] - 1})
            saved = block_cost(spec, counts, 128, 128, space.layout)["flops"] - block_cost(
                spec, fewer, 128, 128, space.layout)["flops"]
            assert saved == delta


def test_extracted_subnetworks_compute_what_the_supernet_computes(space):
    torch.manual_seed(0)
    supernet = space.build_supernet(5).eval()
    x = torch.randn(2, 3, 64, 96)
    rng = random.Random(1)
    for arch in [space.max_arch(), space.min_arch(), space.arch_from_name("k3"), *(space.sample(rng) for _ in range(3))]:
        supernet.set_active(arch)
        with torch.no_grad():
            expected = supernet(x)
            static = supernet.extract(arch).eval()
            assert (static(x) - expected).abs().max() <= 1e-5
        assert sum(p.numel() for p in static.parameters()) == space.cost(arch, 128, 5)["params"]


def test_a_block_whose_units_are_all_removed_is_its_residual_path(space):
    supernet = space.build_supernet(5).eval()
    arch = space.max_arch()
    block = supernet.blocks["m1b1l0"]
    for field in ("k3", "k5", "k7", "tokens"):
        arch[f"m1b1l0_{field}"] = 0
    block.set_active(arch)
    x = torch.randn(2, 16, 8, 8)
    assert torch.equal(block(x), x)
    transition = supernet.blocks["m1n1"]  # 8 -> 16 channels, stride 2: no residual, so zeros
    for field in ("k3", "k5", "k7", "tokens"):
        arch[f"m1n1_{field}"] = 0
    transition.set_active(arch)
    assert torch.equal(transition(torch.randn(2, 8, 16, 16)), torch.zeros(2, 16, 8, 8))


def test_bad_layouts_and_options_are_clear_errors():
    with pytest.raises(UserError, match="space_options.modules\\[1\\]"):
        get_space("hr_nas", modules=[[[1], [8]], [[1, 1, 1], [8, 16, 24]]])
    with pytest.raises(UserError, match="unknown field\\(s\\) \\['width'\\]"):
        get_space("hr_nas", width=3)
    with pytest.raises(UserError, match="space_options.coordinates.*allowed values"):
        get_space("hr_nas", coordinates="depth")
    with pytest.raises(UserError, match="multiple of 32"):
        get_space("hr_nas").cost(get_space("hr_nas").max_arch(), (360, 480))
    with pytest.raises(UserError, match="allowed values: \\['macs'\\]"):
        get_space("hr_nas").cost(get_space("hr_nas").max_arch(), 512, convention="mmcv")
    with pytest.raises(UserError, match="sweep.target_mode"):
        ShrinkingSettings.load({**TINY, "target_mode": "sometimes"})


# --- progressive shrinking ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def objective() -> ShrinkingObjective:
    return ShrinkingObjective(ShrinkingSettings.load(TINY))


def test_reordering_units_leaves_the_function_unchanged(objective):
    run = objective.start(objective.space.paper(), "cpu")
    objective.epoch(run)
    net = run.net.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = net(x)
    block = net.blocks["m2b1l0"]
    _reorder_group(block.groups["k5"], torch.randperm(run.arch["m2b1l0_k5"]), run.optimizer)
    _reorder_tokens(block.transformer, torch.randperm(run.arch["m2b1l0_tokens"]), run.optimizer)
    with torch.no_grad():
        assert (net(x) - before).abs().max() < 1e-5


def test_shrinking_removes_units_by_their_cost_and_holds_an_architecture_of_the_space(objective):
    hp = {"penalty": 10.0, "threshold": 5e-2, "interval": 1, "lr": 8e-3}
    run = objective.start(hp, "cpu")
    classes = objective.datasets()[3]
    full = objective.arch_space.cost(run.arch, (128, 128), classes)["flops"]
    flops, penalties = [], []
    while not objective.done(run):
        metrics = objective.epoch(run)
        final = objective.final(run)
        flops.append(final["flops"])
        penalties.append(metrics["l1_penalty"])
        assert 0 <= final["miou"] <= 1
    # the L1 term's proximal steps shrink the importances it charges for: the penalty falls, epoch by epoch
    assert penalties[0] > 0 and penalties == sorted(penalties, reverse=True) and penalties[-1] < penalties[0]
    assert run.epoch == 3 and flops[-1] < full and flops == sorted(flops, reverse=True)
    arch = json.loads(final["found_arch"])
    assert objective.arch_space.validate(arch) == arch == run.arch
    # the run's weights, extracted at its architecture, compute what the run's network computes
    net = run.net.eval()
    with torch.no_grad():
        x = torch.randn(1, 3, 64, 64)
        assert (net.extract(arch).eval()(x) - net(x)).abs().max() <= 1e-5
    # a checkpoint's state continues the run exactly
    again = objective.restore(hp, objective.state(run), "cpu")
    assert again.arch == run.arch and again.epoch == run.epoch and again.history == run.history


def test_a_flops_target_stops_the_run_once_reached(objective):
    full = objective.arch_space.cost(objective.arch_space.max_arch(), (128, 128), objective.datasets()[3])["flops"]
    objective = ShrinkingObjective(ShrinkingSettings.load({**TINY, "epochs": 6, "flops_target": 0.7 * full}))
    run = objective.start({"penalty": 10.0, "threshold": 5e-2, "interval": 1, "lr": 8e-3}, "cpu")
    while not objective.done(run):
        objective.epoch(run)
    assert run.epoch < 6 and objective.final(run)["flops"] <= 0.7 * full


def test_a_sweep_searches_shrinking_hyperparameters_and_plots_each_runs_path(ray_local, tmp_path):
    out = tmp_path / "sweep"
    config = SweepConfig.load({"benchmark": "shrinking", "searchers": ["random"], "budget": 2, "seeds": 1,
                               "out": str(out), "max_concurrent_trials": 2, **TINY})
    shown = io.StringIO()
    trials, settings = load_results(run_sweep(config, progress=Progress(stream=shown, interval=0)))
    evaluated = trials[trials["feasible"] & ~trials["repeat"]]
    assert len(evaluated) == 2 and (evaluated["flops"] > 0).all() and evaluated["miou"].between(0, 1).all()
    # the display follows each run epoch by epoch, not only when a run ends
    for trial_id in evaluated["trial_id"]:
        assert [f"trial {trial_id} epoch {e}/3" in shown.getvalue() for e in (1, 2, 3)] == [True] * 3
    assert "(epochs 6/6)" in shown.getvalue()
    arch_space = get_space("hr_nas", **SMALL)
    assert all(arch_space.validate(json.loads(a)) for a in evaluated["found_arch"])
    epochs = load_epochs(out)
    assert set(epochs["trial_id"]) == set(evaluated["trial_id"]) and epochs["epoch"].max() == 3
    assert epochs[["flops", "l1_penalty", "units_left"]].notna().all().all()
    report = write_report(trials, settings, tmp_path / "report.html", epochs=epochs)
    assert "epochs_flops" in report.read_text()
    # the best found architecture is fine-tuned with its own run's weights and exported, like any other
    ft = FinetuneSettings.load({"recipe": {"epochs": 1, "steps_per_epoch": 2, "batch_size": 2},
                                "scaling": {"num_workers": 1}, "out": str(tmp_path / "models"),
                                "evaluation": {"calibration_images": 4, "val_images": 8}})
    said = io.StringIO()
    (model,) = FinetunePlan(out, ft).run(Progress(stream=said, interval=0))
    assert model["arch_id"] == evaluated.sort_values("miou").iloc[-1]["found_arch_id"]
    assert (tmp_path / "models" / model["arch_id"] / "model.onnx").is_file() and 0 < model["val_miou"] <= 1
    assert abs(model["val_miou"] - model["val_miou_torch"]) <= 0.002  # the shipped file scores as PyTorch did
    # a shrinking run never trained its largest sub-network as a network: no teacher, and the user is told
    assert not model["recipe"]["distill"] and "without distillation" in said.getvalue()



def test_cds_searches_the_space_with_a_shrinking_runs_inherited_weights(objective, ray_local, tmp_path):
    from trainables.checkpoints import write_checkpoint

    run = objective.start(objective.space.paper(), "cpu")
    objective.epoch(run)
    state, meta = objective.weights(run)
    (tmp_path / "supernet").mkdir()
    write_checkpoint(tmp_path / "supernet", {"model": state}, meta)
    config = SweepConfig.load({"benchmark": "supernet", "supernet": str(tmp_path / "supernet"), "searchers": ["cds"],
                               "budget": 3, "seeds": 1, "out": str(tmp_path / "sweep"), "max_concurrent_trials": 2,
                               "evaluation": {"calibration_images": 4, "val_images": 8, "resolution": 128}})
    trials, settings = load_results(run_sweep(config, progress=Progress(stream=open(os.devnull, "w"))))
    evaluated = trials[trials["feasible"] & ~trials["repeat"]]
    assert len(evaluated) == 3 and evaluated["miou"].between(0, 1).all()
    space = get_space("hr_nas", **SMALL)
    for _, row in evaluated.iterrows():
        arch = {d: row[f"config/{d}"] for d in settings["dimensions"]}
        assert row["flops"] == space.cost(arch, 128, objective.datasets()[3])["flops"]
