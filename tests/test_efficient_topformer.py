"""The Efficient-TopFormer space, its supernet, the TopFormer references and the cost models."""

import dataclasses
import json
import math
import random

import pytest
import torch

from raynas.errors import UserError
from search_spaces import InvalidArchitecture, get_space, stepped
from search_spaces.efficient_topformer import (
    PUBLISHED,
    REFERENCE_NAMES,
    make_space,
    nearest_arch,
    reference_cost,
    reference_model,
    reference_spec,
)
from search_spaces.efficient_topformer.network import TopFormerNet, TopFormerSpec, spec_cost, total_cost
from search_spaces.elastic import ElasticBatchNorm2d
from search_spaces.flop_counter import count

torch.set_num_threads(1)

NUM_CLASSES = 5
SIZE = (128, 96)  # 1/32 grid 4x3 → 2x2 tokens: attention over several tokens, non-square input


@pytest.fixture(scope="module")
def space():
    return get_space("efficient_topformer")


@pytest.fixture(scope="module")
def supernet(space):
    torch.manual_seed(0)
    net = space.build_supernet(NUM_CLASSES)
    _randomise_bn(net)
    return net


def _randomise_bn(net):
    """Non-trivial BatchNorm affine parameters and statistics, so every branch matters."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)


def _archs(space, n_random=5, seed=0):
    rng = random.Random(seed)
    return [space.min_arch(), space.max_arch()] + [space.sample(rng) for _ in range(n_random)]


# --- the space ---------------------------------------------------------------------


def test_dimensions_are_table_1(space):
    cnn = {
        "stem_width": (16, 24),
        "mb1_width": (16, 24), "mb1_depth": (1, 2), "mb1_kernel": (3, 5),
        "mb2_width": (16, 24, 32, 40), "mb2_depth": (1, 2, 3), "mb2_kernel": (3, 5), "mb2_expand": (3, 4, 5),
        "mb3_width": stepped(24, 72, 8), "mb3_depth": (1, 2, 3), "mb3_kernel": (3, 5), "mb3_expand": (2, 3, 4, 5),
        "mb4_width": stepped(56, 136, 8), "mb4_depth": (1, 2, 3), "mb4_kernel": (3, 5), "mb4_expand": (2, 3, 4, 5),
        "mb5_width": stepped(88, 176, 8), "mb5_depth": (1, 2, 3, 4), "mb5_kernel": (3, 5), "mb5_expand": (4, 5, 6, 7),
    }
    vit = {}
    for i in range(1, 5):
        vit |= {
            f"vit{i}_heads": (2, 4, 6, 8, 10, 12),
            f"vit{i}_key_dim": (12, 14, 16, 18, 20),
            f"vit{i}_attn_ratio": (1.6, 1.8, 2.0, 2.2, 2.4),
            f"vit{i}_mlp_ratio": (1.6, 1.8, 2.0, 2.2, 2.4),
            f"vit{i}_depth": (1, 2),
        }
    assert space.block_names == ("cnn", "vit")
    assert {d.name: d.choices for d in space.block("cnn").dimensions} == cnn
    assert {d.name: d.choices for d in space.block("vit").dimensions} == vit
    assert space.cardinality == math.prod(len(c) for c in (cnn | vit).values())
    assert len(cnn["mb4_width"]) == 11 and len(cnn["mb5_width"]) == 12


def test_arch_names(space, tmp_path):
    assert space.arch_from_name("min") == space.min_arch()
    assert space.arch_from_name("max") == space.max_arch()
    assert space.arch_from_name("random", seed=3) == space.arch_from_name("random", seed=3)
    assert space.arch_from_name("random", seed=3) != space.arch_from_name("random", seed=4)
    assert space.arch_from_name("topformer-b") == space.validate(nearest_arch("topformer-b"))
    path = tmp_path / "arch.json"
    path.write_text(json.dumps({"arch": space.max_arch()}))
    assert space.arch_from_name(str(path)) == space.max_arch()
    path.write_text(json.dumps(space.max_arch() | {"mb3_width": 30}))
    with pytest.raises(InvalidArchitecture, match=r"'mb3_width'.*30.*\[24, 32, 40, 48, 56, 64, 72\]"):
        space.arch_from_name(str(path))
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        space.arch_from_name(str(path))


def test_spec_round_trips_through_json(space):
    for spec in (space.spec(space.sample(random.Random(7)), NUM_CLASSES), reference_spec("topformer-t")):
        assert TopFormerSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


# --- supernet ----------------------------------------------------------------------


def test_set_active_rejects_a_bad_arch_naming_the_field(space, supernet):
    before = supernet.active_arch
    with pytest.raises(InvalidArchitecture, match=r"'vit2_heads'.*7.*\[2, 4, 6, 8, 10, 12\]"):
        supernet.set_active(space.max_arch() | {"vit2_heads": 7})
    with pytest.raises(InvalidArchitecture, match="missing.*mb5_expand"):
        supernet.set_active({k: v for k, v in space.max_arch().items() if k != "mb5_expand"})
    assert supernet.active_arch == before


def test_extracted_subnets_equal_the_supernet(space, supernet):
    supernet.eval()
    x = torch.randn(2, 3, *SIZE, generator=torch.Generator().manual_seed(2))
    for arch in _archs(space):
        supernet.set_active(arch)
        static = supernet.extract(arch)
        assert not any(isinstance(m, ElasticBatchNorm2d) for m in static.modules())
        with torch.no_grad():
            expected, got = supernet(x), static.eval()(x)
        assert expected.shape == (2, NUM_CLASSES, *SIZE)
        assert got.abs().max() > 0.1  # a live network, not zeros
        assert (expected - got).abs().max().item() <= 1e-5, space.arch_id(arch)
        assert count(static, SIZE)["params"] == space.cost(arch, SIZE, NUM_CLASSES)["params"]


def test_extract_keeps_the_active_arch(space, supernet):
    supernet.set_active(space.min_arch())
    supernet.extract(space.max_arch())
    assert supernet.active_arch == space.min_arch()


@pytest.mark.parametrize("which", ["min", "max"])
def test_subnets_train_through_the_supernet(space, supernet, which):
    arch = space.arch_from_name(which)
    supernet.set_active(arch)
    supernet.train()
    supernet.zero_grad(set_to_none=True)
    x = torch.randn(2, 3, *SIZE, generator=torch.Generator().manual_seed(3))
    target = torch.randint(0, NUM_CLASSES, (2, *SIZE), generator=torch.Generator().manual_seed(4))
    loss = torch.nn.functional.cross_entropy(supernet(x), target)
    loss.backward()
    grads = [p.grad for p in supernet.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    # Only the active slice of a weight learns: MBConv-5's expand conv.
    expand = supernet.stages[4].blocks[0].expand.conv
    hidden, cin = round(arch["mb4_width"] * arch["mb5_expand"]), arch["mb4_width"]
    assert expand.weight.grad[:hidden, :cin].abs().sum() > 0
    assert expand.weight.grad[hidden:].abs().sum() == 0 and expand.weight.grad[:, cin:].abs().sum() == 0


def test_bn_updates_only_active_channels_including_gathered_ones(space, supernet):
    arch = space.min_arch()  # token channels are the prefixes of four segments: gathered
    supernet.set_active(arch)
    supernet.train()
    bn = supernet.vit[0].blocks[0].mlp.fc2.bn
    before = bn.running_mean.clone()
    with torch.no_grad():
        supernet(torch.randn(2, 3, *SIZE))
    changed = (bn.running_mean != before).nonzero().flatten().tolist()
    widths = [arch[f"mb{i}_width"] for i in (2, 3, 4, 5)]
    full = [space.dimension(f"mb{i}_width").choices[-1] for i in (2, 3, 4, 5)]
    starts = [sum(full[:i]) for i in range(4)]
    assert changed == [s + j for s, w in zip(starts, widths) for j in range(w)]


def test_bn_recalibration_matches_the_static_network(space, supernet):
    """Reset stats + cumulative averages in train mode: supernet and static net agree."""
    arch = space.sample(random.Random(11))
    supernet.set_active(arch)
    static = supernet.extract(arch)
    batches = [torch.randn(2, 3, *SIZE, generator=torch.Generator().manual_seed(20 + i)) for i in range(2)]
    for net in (supernet, static):
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None
        net.train()
        with torch.no_grad():
            for b in batches:
                net(b)
    recalibrated = supernet.extract(arch).state_dict()
    for name, value in static.state_dict().items():
        if "running" in name:
            torch.testing.assert_close(recalibrated[name], value, rtol=1e-4, atol=1e-5, msg=name)
    for m in supernet.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = 0.1


# --- cost --------------------------------------------------------------------------


@pytest.mark.parametrize("convention", ["macs", "mmcv"])
@pytest.mark.parametrize("resolution", [256, (224, 320)])
def test_analytic_cost_equals_the_counter(space, resolution, convention):
    for arch in _archs(space, n_random=3, seed=5):
        spec = space.spec(arch, 150)
        analytic = space.cost(arch, resolution, 150, convention)
        assert count(TopFormerNet(spec), resolution, convention=convention) == analytic
        breakdown = space.cost_breakdown(arch, resolution, 150, convention)
        assert set(breakdown) == {"stem", "mb1", "mb2", "mb3", "mb4", "mb5", "vit1", "vit2", "vit3", "vit4", "injection", "head"}
        assert sum(p["flops"] for p in breakdown.values()) == analytic["flops"]


def test_mmcv_convention_adds_elementwise_costs_drops_matmuls(space):
    arch = space.sample(random.Random(8))
    macs, mmcv = space.cost_breakdown(arch), space.cost_breakdown(arch, convention="mmcv")
    assert all(mmcv[p]["params"] == macs[p]["params"] for p in macs)
    assert all(mmcv[p]["flops"] > macs[p]["flops"] for p in macs if not p.startswith("vit"))
    # the transformer's attention products (n² per head) count in MACs only: at 1024² (16x16
    # tokens) they outweigh the BatchNorm/activation elements that mmcv adds
    big_macs, big_mmcv = space.cost_breakdown(arch, 1024), space.cost_breakdown(arch, 1024, convention="mmcv")
    assert big_mmcv["vit1"]["flops"] < big_macs["vit1"]["flops"]
    with pytest.raises(UserError, match=r"convention.*'flops'.*\['macs', 'mmcv'\]"):
        space.cost(arch, convention="flops")


def test_supernet_counts_its_active_subnet(space, supernet):
    arch = space.sample(random.Random(9))
    supernet.set_active(arch)
    assert count(supernet, SIZE)["flops"] == space.cost(arch, SIZE, NUM_CLASSES)["flops"]


def test_cost_is_monotone_between_min_and_max(space):
    low, high = space.cost(space.min_arch()), space.cost(space.max_arch())
    for arch in _archs(space, n_random=20, seed=6)[2:]:
        c = space.cost(arch)
        assert low["flops"] < c["flops"] < high["flops"] and low["params"] < c["params"] < high["params"]
    # The default head width makes the space span the paper's 0.6-1.8 GMAC targets at 512x512.
    assert low["flops"] < 0.6e9 and high["flops"] > 1.8e9


# --- references --------------------------------------------------------------------


@pytest.mark.parametrize("name", REFERENCE_NAMES)
def test_references_reproduce_published_counts(name):
    """TopFormer counted with mmcv's get_flops: under that convention the analytic model
    and the counter agree and both reproduce the published params and FLOPs within 5%."""
    model = reference_model(name)
    published = PUBLISHED[name]
    for convention in ("macs", "mmcv"):
        analytic = reference_cost(name, 512, 150, convention)
        assert count(model, 512, convention=convention) == analytic
        assert abs(analytic["params"] / published["params"] - 1) <= 0.05
    mmcv, macs = reference_cost(name, convention="mmcv")["flops"], reference_cost(name)["flops"]
    assert abs(mmcv / published["flops"] - 1) <= 0.05
    assert macs < mmcv  # at 8x8 tokens the attention products weigh less than BN/activations


def test_topformer_t_head_fuse_is_depthwise():
    """TopFormer-T's SimpleHead has is_dw=True (a depthwise 1x1 fuse); S and B fuse densely."""
    specs = {name: reference_spec(name) for name in REFERENCE_NAMES}
    assert [s.head_depthwise_fuse for s in specs.values()] == [True, False, False]
    fuse = reference_model("topformer-t").head.fuse.conv
    assert fuse.groups == fuse.in_channels == 128 and fuse.weight.shape == (128, 1, 1, 1)
    dense = dataclasses.replace(specs["topformer-t"], head_depthwise_fuse=False)
    saved = total_cost(spec_cost(dense, 512))["flops"] - reference_cost("topformer-t")["flops"]
    assert saved == 128 * 127 * 64 * 64  # 128 of 128² MACs per pixel of the 1/8 grid


@pytest.mark.parametrize("name", REFERENCE_NAMES)
def test_references_lie_outside_the_space_but_near_it(name):
    spec = reference_spec(name)
    space = make_space(head_channels=spec.head_channels)
    # per-block expand (MBConv-2) / kernel (MBConv-5) differ; T's head fuse is depthwise
    assert not space.reference_in_space(name)
    assert space.spec(nearest_arch(name)).head_depthwise_fuse is False  # the space's heads are dense
    nearest = space.cost(nearest_arch(name))
    # the nearest architecture is within 5% of the reference built with the space's dense head fuse
    ref = total_cost(spec_cost(dataclasses.replace(spec, head_depthwise_fuse=False), 512))
    assert abs(nearest["flops"] / ref["flops"] - 1) < 0.05
    assert abs(nearest["params"] / ref["params"] - 1) < 0.05
