"""The HR-NAS search space (seed paper 001) as data: kept channels per kernel group and kept tokens per block.

For every searching block ``B`` of the layout (``network.block_specs``):
``B_k3``, ``B_k5``, ``B_k7`` ∈ ``channel_steps + 1`` evenly spaced counts
from 0 to ``r·c_in`` (the group's channels), and ``B_tokens`` ∈ 0, ``token_step``,
…, ``tokens``. Coordinate blocks (``coordinates``): ``branch`` — one per
output branch (1/4 … 1/32; the head with 1/4) — or ``kind`` — convolution
channels, then Transformer tokens.

Named architectures beside ``min``/``max``/``random``: ``k3`` (3×3 channels
only, no tokens) and ``mixconv`` (all channels, no tokens), the ablation
steps of Table 6.
"""

from __future__ import annotations

from typing import Any, Mapping

from raynas.errors import UserError, check_choice
from search_spaces.base import Arch, Block, Dimension, SearchSpace, WeightSharingSpace
from search_spaces.hr_nas.network import (
    FIELDS,
    KERNELS,
    HRNASNet,
    Layout,
    block_cost,
    block_specs,
    fixed_cost,
    input_hw,
    total,
    unit_costs,
)

COORDINATES = ("branch", "kind")


class HRNASSpace(WeightSharingSpace):
    """Channels and tokens of every searching block of an HR-NAS supernet (see the module docstring)."""

    ARCH_NAMES = SearchSpace.ARCH_NAMES + ("k3", "mixconv")

    def __init__(self, coordinates: str = "branch", channel_steps: int = 8, token_step: int = 2, **layout):
        check_choice("space_options.coordinates", coordinates, COORDINATES)
        if int(channel_steps) < 1 or int(token_step) < 1:
            raise UserError(f"space_options.channel_steps and token_step: positive whole numbers; got "
                            f"{channel_steps!r} and {token_step!r}")
        self.layout = Layout.from_options(**layout)
        self.coordinates, self.channel_steps, self.token_step = coordinates, int(channel_steps), int(token_step)
        self.specs = tuple(block_specs(self.layout))
        tokens = tuple(sorted(set(range(0, self.layout.tokens + 1, self.token_step)) | {self.layout.tokens}))
        groups: dict[str, list[Dimension]] = {}
        for spec in self.specs:
            capacity = spec.group_capacity(self.layout)
            counts = tuple(sorted({round(capacity * i / self.channel_steps) for i in range(self.channel_steps + 1)}))
            for field in FIELDS:
                key = self._coordinate(spec, field)
                groups.setdefault(key, []).append(Dimension(f"{spec.name}_{field}",
                                                            tokens if field == "tokens" else counts))
        super().__init__("hr_nas", [Block(name, tuple(dims)) for name, dims in groups.items()])

    def _coordinate(self, spec, field: str) -> str:
        if self.coordinates == "kind":
            return "transformer" if field == "tokens" else "convolution"
        branch = spec.branch + (spec.stride == 2) - spec.upsample
        return f"branch{branch}"

    def options(self) -> dict[str, Any]:
        """The options that rebuild this space (``get_space("hr_nas", **options)``)."""
        return {"coordinates": self.coordinates, "channel_steps": self.channel_steps, "token_step": self.token_step,
                **self.layout.options()}

    @property
    def depth_dimensions(self) -> tuple[str, ...]:
        return ()  # depth is fixed by the layout; a block whose units are all removed is a residual path

    def arch_from_name(self, name: str, seed: int | None = None) -> Arch:
        if name in ("k3", "mixconv"):
            arch = self.max_arch()
            for spec in self.specs:
                arch[f"{spec.name}_tokens"] = 0
                if name == "k3":
                    arch[f"{spec.name}_k5"] = arch[f"{spec.name}_k7"] = 0
            return arch
        return super().arch_from_name(name, seed)

    # --- cost ---------------------------------------------------------------------------------
    def cost_breakdown(self, arch: Mapping[str, Any], resolution: int | tuple[int, int] = (512, 1024),
                       num_classes: int = 19, convention: str = "macs") -> dict[str, dict[str, int]]:
        """Params and MACs of the stem, each module's searching blocks (``m0`` …), the head block and the
        classifier."""
        if convention != "macs":
            raise UserError(f"convention: space 'hr_nas' counts FLOPs as multiply-accumulates only; "
                            f"allowed values: ['macs'], got {convention!r}")
        arch = self.validate(arch)
        h, w = input_hw(resolution)
        fixed = fixed_cost(self.layout, h, w, num_classes)
        parts: dict[str, dict[str, int]] = {"stem": fixed["stem"]}
        for spec in self.specs:
            part = parts.setdefault(spec.part, {"params": 0, "flops": 0})
            cost = block_cost(spec, spec.counts(arch), h, w, self.layout)
            part["params"] += cost["params"]
            part["flops"] += cost["flops"]
        parts["classifier"] = fixed["classifier"]
        return parts

    def cost(self, arch: Mapping[str, Any], resolution: int | tuple[int, int] = (512, 1024), num_classes: int = 19,
             convention: str = "macs") -> dict[str, int]:
        return total(self.cost_breakdown(arch, resolution, num_classes, convention))

    def unit_costs(self, arch: Mapping[str, Any], resolution: int | tuple[int, int]) -> dict[str, dict[str, float]]:
        """Δ of one unit of each kind per block (``network.unit_costs``), tokens at ``arch``'s counts."""
        h, w = input_hw(resolution)
        arch = self.validate(arch)
        return {spec.name: unit_costs(spec, spec.counts(arch), h, w, self.layout) for spec in self.specs}

    # --- networks --------------------------------------------------------------------------------
    def build_model(self, arch: Mapping[str, Any], num_classes: int = 19) -> HRNASNet:
        return HRNASNet(self.layout, self.validate(arch), num_classes)

    def build_supernet(self, num_classes: int) -> HRNASNet:
        """The largest network; ``set_active(arch)`` and ``extract(arch)`` (``HRNASNet``) select sub-networks."""
        return HRNASNet(self.layout, self.max_arch(), num_classes)


def make_space(**options) -> HRNASSpace:
    return HRNASSpace(**options)


__all__ = ["COORDINATES", "HRNASSpace", "KERNELS", "make_space"]
