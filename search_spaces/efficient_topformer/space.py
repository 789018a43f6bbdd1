"""The Efficient-TopFormer search space (Table 1 of the paper) and its analytic cost.

Coordinate blocks, in order:

- ``cnn``: ``stem_width``; for MBConv-i (i = 1..5) ``mbi_width``, ``mbi_depth``,
  ``mbi_kernel`` and (i ≥ 2) ``mbi_expand``. MBConv-1's expand ratio is the
  constant 1, the stem is one 3x3 conv.
- ``vit``: for ViT stage i (i = 1..4) ``viti_heads``, ``viti_key_dim``,
  ``viti_attn_ratio`` (value dim = int(ratio × key dim)), ``viti_mlp_ratio``
  (MLP hidden = int(ratio × token width)), ``viti_depth``.

Not searched: the injection and head width ``head_channels`` (a space option)
and the token pooling stride (2, as TopFormer). ``head_channels`` defaults to
128, TopFormer-T's width: at 512x512 the space then spans 0.37–4.07 GMACs (median
of uniform samples 1.25 G), so the paper's tightest targets (0.6 G; 0.5 G at
448x448) stay reachable; with 192 (256) the smallest sub-network alone costs
0.51 (0.68) G.
"""

from __future__ import annotations

from typing import Any, Mapping

from raynas.errors import check_choice, check_whole
from search_spaces.base import Arch, Block, Dimension, SearchSpace, WeightSharingSpace, stepped
from search_spaces.efficient_topformer import imagenet, reference
from search_spaces.efficient_topformer.network import (
    TopFormerNet,
    TopFormerSpec,
    TransformerSpec,
    mbconv_stage,
    spec_cost,
    total_cost,
)

KERNELS = (3, 5)
# (width choices, depth choices, expand choices or the constant, stride of the first block)
MBCONV_TABLE = (
    ((16, 24), (1, 2), 1, 1),
    (stepped(16, 40, 8), (1, 2, 3), (3, 4, 5), 2),
    (stepped(24, 72, 8), (1, 2, 3), (2, 3, 4, 5), 2),
    (stepped(56, 136, 8), (1, 2, 3), (2, 3, 4, 5), 2),
    (stepped(88, 176, 8), (1, 2, 3, 4), (4, 5, 6, 7), 2),
)
STEM_WIDTHS = (16, 24)
VIT_STAGES = 4
VIT_TABLE = {
    "heads": stepped(2, 12, 2),
    "key_dim": stepped(12, 20, 2),
    "attn_ratio": stepped(1.6, 2.4, 0.2),
    "mlp_ratio": stepped(1.6, 2.4, 0.2),
    "depth": (1, 2),
}
DEFAULT_HEAD_CHANNELS = 128


def _dimensions() -> tuple[Block, Block]:
    cnn = [Dimension("stem_width", STEM_WIDTHS)]
    for i, (widths, depths, expands, _) in enumerate(MBCONV_TABLE, start=1):
        cnn += [Dimension(f"mb{i}_width", widths), Dimension(f"mb{i}_depth", depths), Dimension(f"mb{i}_kernel", KERNELS)]
        if isinstance(expands, tuple):
            cnn.append(Dimension(f"mb{i}_expand", expands))
    vit = [Dimension(f"vit{i}_{field}", choices) for i in range(1, VIT_STAGES + 1) for field, choices in VIT_TABLE.items()]
    return Block("cnn", tuple(cnn)), Block("vit", tuple(vit))


class EfficientTopFormerSpace(WeightSharingSpace):
    """Table 1 of Efficient-TopFormer, with a TopFormer network around it (see ``network``)."""

    def __init__(self, head_channels: int = DEFAULT_HEAD_CHANNELS, pool_stride: int = 2):
        super().__init__("efficient_topformer", _dimensions())
        self.head_channels = check_whole("space_options.head_channels", head_channels, 1)
        self.pool_stride = check_whole("space_options.pool_stride", pool_stride, 1)

    # --- architecture → network -----------------------------------------------
    def spec(self, arch: Mapping[str, Any], num_classes: int = 150) -> TopFormerSpec:
        """The per-layer spec of an architecture (validated)."""
        return self._spec(self.validate(arch), num_classes)

    def _spec(self, a: Arch, num_classes: int) -> TopFormerSpec:
        stages, channels = [], a["stem_width"]
        for i, (_, _, expands, stride) in enumerate(MBCONV_TABLE, start=1):
            width, kernel = a[f"mb{i}_width"], a[f"mb{i}_kernel"]
            expand = a[f"mb{i}_expand"] if isinstance(expands, tuple) else expands
            rows = [(kernel, expand, width, stride)] + [(kernel, expand, width, 1)] * (a[f"mb{i}_depth"] - 1)
            stages.append(mbconv_stage(channels, rows))
            channels = width
        vit = []
        for i in range(1, VIT_STAGES + 1):
            block = TransformerSpec(a[f"vit{i}_heads"], a[f"vit{i}_key_dim"], a[f"vit{i}_attn_ratio"], a[f"vit{i}_mlp_ratio"])
            vit.append((block,) * a[f"vit{i}_depth"])
        return TopFormerSpec(a["stem_width"], tuple(stages), tuple(vit), self.head_channels, num_classes, self.pool_stride)

    # --- cost ---------------------------------------------------------------------
    def cost_breakdown(
        self,
        arch: Mapping[str, Any],
        resolution: int | tuple[int, int] = 512,
        num_classes: int = 150,
        convention: str = "macs",
    ) -> dict[str, dict[str, int]]:
        """Params and FLOPs per part: stem, mb1..mb5, vit1..vit4, injection, head.

        FLOPs are multiply-accumulates (``convention="macs"``, what the search uses) or
        mmcv's count (``"mmcv"``, TopFormer's published figures); see ``network.spec_cost``.
        """
        return spec_cost(self.spec(arch, num_classes), resolution, convention)

    def cost(
        self,
        arch: Mapping[str, Any],
        resolution: int | tuple[int, int] = 512,
        num_classes: int = 150,
        convention: str = "macs",
    ) -> dict[str, int]:
        """Total params and FLOPs (``convention`` as ``cost_breakdown``), analytic: no model is built."""
        return total_cost(self.cost_breakdown(arch, resolution, num_classes, convention))

    # --- networks -------------------------------------------------------------------
    def build_model(self, arch: Mapping[str, Any], num_classes: int = 150) -> TopFormerNet:
        """A freshly initialised static network of ``arch`` (no supernet weights)."""
        return TopFormerNet(self.spec(arch, num_classes))

    def build_supernet(self, num_classes: int):
        """The elastic supernet holding the largest weights (see ``supernet``)."""
        from search_spaces.efficient_topformer.supernet import TopFormerSupernet

        return TopFormerSupernet(self, num_classes)

    def build_classifier(self, num_classes: int):
        """The supernet's token pyramid with a classification head (``supernet.PyramidClassifier``)."""
        from search_spaces.efficient_topformer.supernet import PyramidClassifier

        return PyramidClassifier(self.build_supernet(num_classes=1), num_classes)

    IMAGENET_SOURCE = imagenet.SOURCE

    def inherit_imagenet(self, model) -> dict[str, float]:
        """EfficientNet-Lite0's ImageNet weights in the token pyramid (see ``imagenet``)."""
        return imagenet.inherit_lite0(model)

    @property
    def depth_dimensions(self) -> tuple[str, ...]:
        return tuple(f"mb{i}_depth" for i in range(1, len(MBCONV_TABLE) + 1)) + \
            tuple(f"vit{i}_depth" for i in range(1, VIT_STAGES + 1))

    # --- named architectures --------------------------------------------------------
    REFERENCE_NAMES = reference.REFERENCE_NAMES
    ARCH_NAMES = SearchSpace.ARCH_NAMES + REFERENCE_NAMES

    def arch_from_name(self, name: str, seed: int | None = None) -> Arch:
        """As ``SearchSpace.arch_from_name``; a reference name gives its nearest architecture."""
        if name in reference.REFERENCE_NAMES:
            return self.validate(reference.nearest_arch(name))
        return super().arch_from_name(name, seed)

    def reference_in_space(self, name: str) -> bool:
        """Whether a reference model is exactly the network of an architecture of this space."""
        nearest = self.spec(reference.nearest_arch(name), num_classes=1)
        return nearest == reference.reference_spec(name, num_classes=1)

    def reference_model(self, name: str, num_classes: int = 150) -> TopFormerNet:
        """The published TopFormer-T/S/B network (not in the space; see ``reference``)."""
        return reference.reference_model(name, num_classes)

    def reference_cost(self, name: str, resolution: int | tuple[int, int] = 512, num_classes: int = 150,
                       convention: str = "macs") -> dict[str, int]:
        return reference.reference_cost(name, resolution, num_classes, convention)

    def published(self, name: str) -> dict[str, float]:
        """The paper's params and FLOPs (mmcv's convention) at 512x512, 150 classes."""
        return dict(reference.PUBLISHED[check_choice("reference model", name, self.REFERENCE_NAMES)])


def make_space(head_channels: int = DEFAULT_HEAD_CHANNELS, pool_stride: int = 2) -> EfficientTopFormerSpace:
    return EfficientTopFormerSpace(head_channels=head_channels, pool_stride=pool_stride)
