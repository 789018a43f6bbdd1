"""The joint-dimensional search space of seed paper 004 (Tables 1–2) as data.

Dimensions, in three coordinate blocks by the paper's levels:

- ``depth``: ``s1_depth`` ∈ {3..7} and ``s2_depth`` ∈ {6..10} (Table 1's
  "2 + 1–5" and "5 + 1–5");
- ``dilation_spatial``: per layer ``s{i}_l{j}_dilation`` ∈ {1, 2, 4, 8, 16}
  and ``s{i}_l{j}_pool`` ∈ {1, 2} (the 10 NB-1D operators of Table 2);
- ``channel``: per layer ``s{i}_l{j}_c31`` and ``s{i}_l{j}_c13`` ∈
  {C−32 : 4 : C} (C = 64 in stage 1, 128 in stage 2).

Layers beyond a stage's depth are inactive: their dimensions do not change
the network (two such architectures have different ids but one network).
``baseline1`` (Table 7: 5 + 8 layers, no
dilation, no pooling, full channels) and ``max``/``min`` are named
architectures; ``python -m raynas inspect --space joint_dim --arch baseline1
--resolution 512x1024 --num-classes 19`` prints its cost (0.962 M params,
11.06 GMACs against Table 7's 0.96 M and 11.2 G).
"""

from __future__ import annotations

from typing import Any, Mapping

from search_spaces.base import Arch, Block, Dimension, SearchSpace, WeightSharingSpace, stepped
from search_spaces.joint_dim.network import (
    CHANNEL_RANGE,
    CHANNEL_STEP,
    DEPTHS,
    DILATIONS,
    POOLS,
    WIDTHS,
    JointDimNet,
    JointDimSpec,
    LayerSpec,
    layer_name,
    spec_cost,
    total_cost,
)


class JointDimSpace(WeightSharingSpace):
    """Depth, dilation-and-spatial and channel of the two searchable stages (see the module docstring)."""

    ARCH_NAMES = SearchSpace.ARCH_NAMES + ("baseline1",)

    def __init__(self, aggregation: bool = False):
        self.aggregation = bool(aggregation)
        depth = Block("depth", (Dimension("s1_depth", DEPTHS[0]), Dimension("s2_depth", DEPTHS[1])))
        ops, channels = [], []
        for stage, (width, depths) in enumerate(zip(WIDTHS, DEPTHS), start=1):
            choices = stepped(width - CHANNEL_RANGE, width, CHANNEL_STEP)
            for layer in range(1, max(depths) + 1):
                ops += [Dimension(layer_name(stage, layer, "dilation"), DILATIONS),
                        Dimension(layer_name(stage, layer, "pool"), POOLS)]
                channels += [Dimension(layer_name(stage, layer, "c31"), choices),
                             Dimension(layer_name(stage, layer, "c13"), choices)]
        super().__init__("joint_dim", [depth, Block("dilation_spatial", tuple(ops)), Block("channel", tuple(channels))])

    @property
    def depth_dimensions(self) -> tuple[str, ...]:
        return ("s1_depth", "s2_depth")

    def layers(self, arch: Mapping[str, Any]) -> tuple[tuple[LayerSpec, ...], tuple[LayerSpec, ...]]:
        a = self.validate(arch)
        return tuple(
            tuple(LayerSpec(a[layer_name(stage, j, "dilation")], a[layer_name(stage, j, "pool")],
                            a[layer_name(stage, j, "c31")], a[layer_name(stage, j, "c13")])
                  for j in range(1, a[f"s{stage}_depth"] + 1))
            for stage in (1, 2))

    def spec(self, arch: Mapping[str, Any], num_classes: int = 19) -> JointDimSpec:
        return JointDimSpec(WIDTHS, self.layers(arch), num_classes, self.aggregation)

    def baseline1(self) -> Arch:
        """Table 7's baseline1: 5 layers at 1/4 and 8 at 1/8, no dilation, no pooling, full channels."""
        arch = self.max_arch() | {"s1_depth": 5, "s2_depth": 8}
        for d in self.block("dilation_spatial").dimensions:
            arch[d.name] = 1
        return arch

    def arch_from_name(self, name: str, seed: int | None = None) -> Arch:
        if name == "baseline1":
            return self.baseline1()
        return super().arch_from_name(name, seed)

    # --- cost ---------------------------------------------------------------------
    def cost_breakdown(self, arch: Mapping[str, Any], resolution: int | tuple[int, int] = (512, 1024),
                       num_classes: int = 19, convention: str = "macs") -> dict[str, dict[str, int]]:
        """Params and FLOPs of db1, db2, stage1, db3, stage2, head (``network.spec_cost``)."""
        return spec_cost(self.spec(arch, num_classes), resolution, convention)

    def cost(self, arch: Mapping[str, Any], resolution: int | tuple[int, int] = (512, 1024), num_classes: int = 19,
             convention: str = "macs") -> dict[str, int]:
        return total_cost(self.cost_breakdown(arch, resolution, num_classes, convention))

    # --- networks -----------------------------------------------------------------------
    def build_model(self, arch: Mapping[str, Any], num_classes: int = 19) -> JointDimNet:
        return JointDimNet(self.spec(arch, num_classes))

    def build_supernet(self, num_classes: int):
        """The relaxed supernet of §3.2 (``supernet.RelaxedJointDimNet``)."""
        from search_spaces.joint_dim.supernet import RelaxedJointDimNet

        return RelaxedJointDimNet(self, num_classes)


def make_space(aggregation: bool = False) -> JointDimSpace:
    return JointDimSpace(aggregation=aggregation)

