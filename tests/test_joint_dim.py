"""The joint-dimensional space of seed 004: Table 7's baseline1, analytic = counted, the relaxed supernet."""

from __future__ import annotations

import json
import random

import pytest
import torch

from raynas.cli import main
from search_spaces import get_space
from search_spaces.flop_counter import count
from search_spaces.joint_dim.supernet import LEVELS, OPS


@pytest.fixture(scope="module")
def space():
    return get_space("joint_dim")


def test_blocks_are_the_papers_levels(space):
    assert space.block_names == ("depth", "dilation_spatial", "channel")
    assert space.dimension("s1_depth").choices == (3, 4, 5, 6, 7)
    assert space.dimension("s2_depth").choices == (6, 7, 8, 9, 10)
    assert space.dimension("s1_l7_dilation").choices == (1, 2, 4, 8, 16)
    assert space.dimension("s2_l10_pool").choices == (1, 2)
    assert space.dimension("s1_l1_c31").choices == tuple(range(32, 65, 4))
    assert space.dimension("s2_l3_c13").choices == tuple(range(96, 129, 4))
    assert len(space.block("dilation_spatial").dimensions) == 2 * (7 + 10)


def test_baseline1_reproduces_table_7(capsys):
    """0.96 M params and 11.2 G FLOPs at 512×1024 (19 classes), within 5%; analytic equals counted."""
    assert main(["inspect", "--space", "joint_dim", "--arch", "baseline1", "--resolution", "512x1024",
                 "--num-classes", "19", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["params"] == info["params_counted"] == 961_807
    assert info["flops"] == info["flops_counted"]
    assert abs(info["params"] / 0.96e6 - 1) < 0.05 and abs(info["flops"] / 11.2e9 - 1) < 0.05
    assert main(["inspect", "--space", "joint_dim", "--arch", "baseline1", "--resolution", "512x1024",
                 "--num-classes", "19", "--json", "--convention", "mmcv"]) == 0
    mmcv = json.loads(capsys.readouterr().out)
    assert mmcv["flops"] == mmcv["flops_counted"] and abs(mmcv["flops"] / 11.2e9 - 1) < 0.01


@pytest.mark.parametrize("aggregation", [False, True])
def test_analytic_cost_equals_the_counter_on_random_architectures(aggregation):
    space = get_space("joint_dim", aggregation=aggregation)
    for seed in range(3):
        arch = space.sample(random.Random(seed))
        for convention in ("macs", "mmcv"):
            assert space.cost(arch, (360, 480), 11, convention) == count(
                space.build_model(arch, 11), (360, 480), convention=convention)


def test_sizes_that_three_halvings_cannot_take_are_a_clear_error(space):
    from raynas.errors import UserError

    with pytest.raises(UserError, match="multiple of 8"):
        space.cost(space.min_arch(), (100, 128), 11)


def test_the_supernet_with_one_candidate_per_group_is_the_discrete_network(space):
    torch.manual_seed(0)
    net = space.build_supernet(11).eval()
    image = torch.randn(2, 3, 48, 64)
    for seed in range(3):
        arch = space.sample(random.Random(seed))
        static = net.extract(arch).eval()
        net.set_active(arch)
        with torch.no_grad():
            assert (net(image) - static(image)).abs().max() <= 1e-5
    net.set_active(None)
    assert net.extract().spec == space.spec(net.argmax_arch(), 11)  # default: the argmax architecture


def test_relaxed_probabilities_entropy_and_shrinking(space):
    import math

    torch.manual_seed(0)
    net = space.build_supernet(11)
    assert net.entropy("depth") == pytest.approx(2 * math.log(5))
    assert net.entropy("dilation_spatial") == pytest.approx(17 * math.log(10))
    with torch.no_grad():
        net.alpha[0].copy_(torch.tensor([-4.0, -4.0, 3.0, -4.0, -4.0]))  # depth 5 of stage 1 dominates
    removed = net.shrink("depth", 0.1)
    assert removed == 4 and net.probabilities(net.alpha[0]).tolist() == [0, 0, 1, 0, 0]
    assert net.argmax_arch()["s1_depth"] == 5
    # layers beyond the deepest alive depth are no longer considered by the next levels
    assert len(net.groups("dilation_spatial")) == 5 + 10
    assert len(net.groups("channel")) == (5 + 10) * len(OPS) * 2
    assert not net.discrete("depth")  # stage 2's depth is still open
    with torch.no_grad():
        net.alpha[1].copy_(torch.tensor([3.0, -4.0, -4.0, -4.0, -4.0]))
    net.shrink("depth", 0.1)
    assert net.discrete("depth") and net.entropy("depth") == 0.0
    # checkpoints keep which candidates are alive (buffers)
    again = space.build_supernet(11)
    again.load_state_dict(net.state_dict())
    assert again.discrete("depth") and again.argmax_arch()["s2_depth"] == 6
    assert set(LEVELS) == set(space.block_names)


def test_one_hot_parameters_give_the_discrete_network_and_its_exact_expected_flops(space):
    torch.manual_seed(1)
    net = space.build_supernet(19).eval()
    arch = space.sample(random.Random(7))
    net.select(arch)  # the search's own parameters, one candidate left per group
    assert all(net.discrete(level) for level in LEVELS) and net.argmax_arch() == arch
    image = torch.randn(1, 3, 48, 64)
    with torch.no_grad():
        assert (net(image) - net.extract(arch).eval()(image)).abs().max() <= 1e-5
    parts = space.cost_breakdown(arch, (512, 1024), 19)
    assert float(net.expected_flops((512, 1024))) == pytest.approx(parts["stage1"]["flops"] + parts["stage2"]["flops"])
