"""The ImageNet start: EfficientNet-Lite0's weights in the token pyramid, checked against Lite0 itself."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from search_spaces import get_space
from search_spaces.efficient_topformer.imagenet import LITE0_BLOCKS, inherit_lite0, lite0_state


def lite0_features(state, x: torch.Tensor, blocks: int, act=F.relu) -> torch.Tensor:
    """Lite0's own forward (written from its state dict alone) up to the output of block ``blocks - 1``."""
    def bn(t, name):
        return F.batch_norm(t, state[f"{name}.running_mean"], state[f"{name}.running_var"], state[f"{name}.weight"],
                            state[f"{name}.bias"], False, 0.0, 1e-3)

    def conv(t, weight, stride=1, groups=1):
        return F.conv2d(t, weight, None, stride, weight.shape[-1] // 2, 1, groups)

    x = act(bn(conv(x, state["_conv_stem.weight"], 2), "_bn0"))
    for i, (cin, cout, expand, _, stride) in enumerate(LITE0_BLOCKS[:blocks]):
        p = f"_blocks.{i}."
        y = act(bn(conv(x, state[p + "_expand_conv.weight"]), p + "_bn0")) if expand != 1 else x
        y = act(bn(conv(y, state[p + "_depthwise_conv.weight"], stride, y.shape[1]), p + "_bn1"))
        y = bn(conv(y, state[p + "_project_conv.weight"]), p + "_bn2")
        x = x + y if stride == 1 and cin == cout else y
    return x


@pytest.fixture(scope="module")
def state():
    return lite0_state()


def test_the_inherited_channels_compute_lite0_through_mbconv4(state):
    """With ``exact``, the supernet's inherited channels are Lite0's features, in Lite0's order of importance.

    Two differences are removed from the check, each a documented limit of the mapping: Lite0's ReLU6 (both
    run ReLU here) and the 8 of Lite0's 32 stem channels a 24-wide stem cannot hold (their weights in block 0
    are zeroed in both; the check takes stem 16 and MBConv-1 24 wide, where MBConv-1 has no residual, as Lite0).
    """
    state = dict(state)
    space = get_space("efficient_topformer")
    supernet = space.build_supernet(num_classes=11)
    importance = state["_blocks.0._project_conv.weight"].abs().sum(dim=(0, 2, 3))
    weakest = torch.argsort(importance)[:16]
    state["_blocks.0._project_conv.weight"] = state["_blocks.0._project_conv.weight"].clone()
    state["_blocks.0._project_conv.weight"][:, weakest] = 0  # the stem channels a 16-wide stem leaves out
    fractions = inherit_lite0(supernet, state)
    arch = space.max_arch() | {"stem_width": 16, "mb1_depth": 1, "mb2_depth": 2, "mb3_depth": 2, "mb4_depth": 3}
    supernet.set_active(arch)
    supernet.eval()
    x = torch.randn(2, 3, 64, 96)
    feats = supernet.pyramid(x)
    reference = lite0_features(state, x, blocks=8)  # blocks 0..7: Lite0's output at stride 16 (80 channels)
    order = torch.argsort(state["_blocks.8._expand_conv.weight"].abs().sum(dim=(0, 2, 3))
                          + state["_blocks.6._expand_conv.weight"].abs().sum(dim=(0, 2, 3))
                          + state["_blocks.7._expand_conv.weight"].abs().sum(dim=(0, 2, 3)), descending=True)
    ours = feats[2][:, :80]  # MBConv-4's output
    assert torch.allclose(ours, reference[:, order], atol=1e-4), (ours - reference[:, order]).abs().max()
    assert fractions["stem"] == 1.0 and 0.7 < fractions["pyramid"] < 0.75


def test_a_narrower_sub_network_inherits_the_most_important_channels(state):
    """Ordered by importance, the min sub-network keeps most of what Lite0's block 0 reads from the stem."""
    space = get_space("efficient_topformer")
    ordered, by_index = space.build_supernet(11), space.build_supernet(11)
    inherit_lite0(ordered, state)
    inherit_lite0(by_index, state, order=False)
    reads = state["_blocks.0._project_conv.weight"].abs().sum(dim=(0, 2, 3))
    width = space.min_arch()["stem_width"]

    def kept(net) -> float:  # the share of block 0's reading weight that the first `width` stem channels carry
        stem = net.stem.conv.weight[:width]
        picked = [int(torch.nonzero((state["_conv_stem.weight"] == row).all(dim=(1, 2, 3)))[0]) for row in stem]
        return float(reads[picked].sum() / reads.sum())

    assert kept(ordered) > kept(by_index)
    assert kept(ordered) == pytest.approx(float(torch.sort(reads, descending=True).values[:width].sum() / reads.sum()))


def test_blocks_beyond_lite0s_depth_start_as_identities(state):
    space = get_space("efficient_topformer")
    supernet = space.build_supernet(11)
    inherit_lite0(supernet, state)
    extra = supernet.stages[1].blocks[2]  # MBConv-2 holds 3 blocks, Lite0's stride-4 stage 2
    assert extra.residual and not extra.project.bn.weight.any() and not extra.project.bn.bias.any()
    x = torch.randn(1, 40, 8, 8)
    supernet.eval()
    assert torch.equal(extra(x), x)
