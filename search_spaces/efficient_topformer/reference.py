"""The published TopFormer-T/S/B models (Zhang et al., CVPR 2022), built from the same layers.

Configurations are those of TopFormer's official code: per layer
``(kernel, expand, channels, stride)``, grouped here into the five MBConv
stages; all use stem 16, key dim 16, attention and MLP ratio 2, four
transformer blocks and c2t_stride 2; TopFormer-T's head fuses with a
depthwise conv1x1 (``SimpleHead(is_dw=True)`` in ``topformer_tiny.py``), S's
and B's with a dense one. None of them lies inside the Efficient-TopFormer
space, which has one kernel and one expand ratio per stage and a dense head
fuse: all three expand 4 then 3 in MBConv-2, S and B end MBConv-5 with a 3x3
block after 5x5 ones, T's head fuse is depthwise (and the injection/head
width is the space's ``head_channels``). ``nearest_arch`` gives the closest
architecture that does: per stage the majority value over its blocks (ties:
the first block's value).
"""

from __future__ import annotations

from collections import Counter

from raynas.errors import check_choice
from search_spaces.efficient_topformer.network import (
    TopFormerNet,
    TopFormerSpec,
    TransformerSpec,
    mbconv_stage,
    spec_cost,
    total_cost,
)

# name -> MBConv stages of (kernel, expand, channels, stride) rows, heads, injection/head channels,
# whether the head's fuse conv is depthwise (default False)
CONFIGS = {
    "topformer-t": {
        "stages": [
            [(3, 1, 16, 1)],
            [(3, 4, 16, 2), (3, 3, 16, 1)],
            [(5, 3, 32, 2), (5, 3, 32, 1)],
            [(3, 3, 64, 2), (3, 3, 64, 1)],
            [(5, 6, 96, 2), (5, 6, 96, 1)],
        ],
        "heads": 4,
        "channels": 128,
        "depthwise_head": True,
    },
    "topformer-s": {
        "stages": [
            [(3, 1, 16, 1)],
            [(3, 4, 24, 2), (3, 3, 24, 1)],
            [(5, 3, 48, 2), (5, 3, 48, 1)],
            [(3, 3, 96, 2), (3, 3, 96, 1)],
            [(5, 6, 128, 2), (5, 6, 128, 1), (3, 6, 128, 1)],
        ],
        "heads": 6,
        "channels": 192,
    },
    "topformer-b": {
        "stages": [
            [(3, 1, 16, 1)],
            [(3, 4, 32, 2), (3, 3, 32, 1)],
            [(5, 3, 64, 2), (5, 3, 64, 1)],
            [(3, 3, 128, 2), (3, 3, 128, 1)],
            [(5, 6, 160, 2), (5, 6, 160, 1), (3, 6, 160, 1)],
        ],
        "heads": 8,
        "channels": 256,
    },
}
REFERENCE_NAMES = tuple(CONFIGS)
STEM, KEY_DIM, ATTN_RATIO, MLP_RATIO, BLOCKS = 16, 16, 2.0, 2.0, 4

# Params / FLOPs at 512x512, 150 classes (ADE20K), as published in TopFormer's Table and the
# Efficient-TopFormer paper's Table 2; TopFormer counted FLOPs with mmcv's get_flops
# (``convention="mmcv"``: conv MACs plus BatchNorm, activation and bias elements).
PUBLISHED = {
    "topformer-t": {"params": 1.4e6, "flops": 0.6e9},
    "topformer-s": {"params": 3.1e6, "flops": 1.2e9},
    "topformer-b": {"params": 5.1e6, "flops": 1.8e9},
}


def _config(name: str) -> dict:
    return CONFIGS[check_choice("reference model", name, REFERENCE_NAMES)]


def reference_spec(name: str, num_classes: int = 150) -> TopFormerSpec:
    config = _config(name)
    stages, channels = [], STEM
    for layers in config["stages"]:
        stages.append(mbconv_stage(channels, layers))
        channels = layers[-1][2]
    block = TransformerSpec(config["heads"], KEY_DIM, ATTN_RATIO, MLP_RATIO)
    return TopFormerSpec(
        stem_channels=STEM,
        stages=tuple(stages),
        vit=tuple((block,) for _ in range(BLOCKS)),
        head_channels=config["channels"],
        num_classes=num_classes,
        head_depthwise_fuse=config.get("depthwise_head", False),
    )


def reference_model(name: str, num_classes: int = 150) -> TopFormerNet:
    """TopFormer-T/S/B as a static network."""
    return TopFormerNet(reference_spec(name, num_classes))


def reference_cost(
    name: str, resolution: int | tuple[int, int] = 512, num_classes: int = 150, convention: str = "macs"
) -> dict[str, int]:
    """Analytic params and FLOPs of a reference model: MACs, or mmcv's count with
    ``convention="mmcv"`` (the convention of the ``PUBLISHED`` figures)."""
    return total_cost(spec_cost(reference_spec(name, num_classes), resolution, convention))


def _majority(values: list) -> object:
    counts = Counter(values)
    best = max(counts.values())
    return next(v for v in values if counts[v] == best)


def nearest_arch(name: str) -> dict:
    """The Efficient-TopFormer architecture closest to a reference model (see the module docstring)."""
    config = _config(name)
    arch: dict = {"stem_width": STEM}
    for i, layers in enumerate(config["stages"], start=1):
        arch[f"mb{i}_width"] = layers[-1][2]
        arch[f"mb{i}_depth"] = len(layers)
        arch[f"mb{i}_kernel"] = _majority([layer[0] for layer in layers])
        if i > 1:
            arch[f"mb{i}_expand"] = _majority([layer[1] for layer in layers])
    for i in range(1, BLOCKS + 1):
        arch |= {
            f"vit{i}_heads": config["heads"],
            f"vit{i}_key_dim": KEY_DIM,
            f"vit{i}_attn_ratio": ATTN_RATIO,
            f"vit{i}_mlp_ratio": MLP_RATIO,
            f"vit{i}_depth": 1,
        }
    return arch
