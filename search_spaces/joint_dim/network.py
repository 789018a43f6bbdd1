"""The joint-dimensional backbone of seed paper 004 (Table 1, Table 2): a spec, its static network and its cost.

Macro architecture (Table 1; ERFNet's encoder layout):

| part | output stride | channels |
| --- | --- | --- |
| downsampler block (DB) | 1/2 | 3 → 16 |
| DB | 1/4 | 16 → 64 |
| stage 1: NB-1D layers, depth 3..7 ("2 + 1–5") | 1/4 | 64 |
| DB | 1/8 | 64 → 128 |
| stage 2: NB-1D layers, depth 6..10 ("5 + 1–5") | 1/8 | 128 |
| head: 1×1 classifier at 1/8, logits resized to the input | | |

A DB is ERFNet's: a 3×3 stride-2 convolution (with bias) to ``out - in``
channels beside a 2×2 max-pool of the input, concatenated, then BatchNorm and
ReLU. An NB-1D layer (Table 2, the simplified non-bottleneck-1D block) is
``x → avg-pool s×s → conv 3×1 (dilation r, C → c31) → BN → ReLU → conv 1×3
(dilation r, c31 → c13) → BN → bilinear upsample to x's size → add to the
first c13 channels of x → ReLU``: dilation r ∈ {1, 2, 4, 8, 16}, spatial
pooling s ∈ {1, 2}, c31 and c13 ∈ {C−32 : 4 : C}. Convolutions inside the
layers have no bias (BatchNorm follows). The optional aggregation head
(§5.2, for retraining) upsamples stage 2 to 1/4, concatenates stage 1,
applies a 3×3 convolution to 64 channels, BN, ReLU and the classifier at 1/4.

Counting convention (``cost``; ``search_spaces.flop_counter`` agrees
exactly): FLOPs are multiply-accumulates of convolutions (``"macs"``);
pooling, resizing, additions, BatchNorm and activations count nothing.
``"mmcv"`` adds, per output element, 1 for a convolution bias, 2 for an
affine BatchNorm and 1 for a ReLU. Parameters include biases and BatchNorm's
affine pairs. Sizes: every side must be a multiple of 8 (the three DBs
halve it exactly); a pooled layer runs at ``floor(h/s) × floor(w/s)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from raynas.errors import UserError, check_choice
from search_spaces.base import FLOP_CONVENTIONS

# the searchable dimensions of Table 1-2 (the space and the relaxed supernet both read them here)
WIDTHS = (64, 128)
DEPTHS = ((3, 4, 5, 6, 7), (6, 7, 8, 9, 10))
DILATIONS = (1, 2, 4, 8, 16)
POOLS = (1, 2)
CHANNEL_RANGE = 32  # channels searched in {C - 32 : 4 : C}
CHANNEL_STEP = 4


def layer_name(stage: int, layer: int, field: str) -> str:
    """The dimension name of one field of one searchable layer: ``s<stage>_l<layer>_<field>``."""
    return f"s{stage}_l{layer}_{field}"


@dataclass(frozen=True)
class LayerSpec:
    """One NB-1D layer: dilation, pooling, the output channels of its 3×1 and 1×3 convolutions."""

    dilation: int
    pool: int
    c31: int
    c13: int


@dataclass(frozen=True)
class JointDimSpec:
    """A whole network: stage widths, the layers of each stage, classes, head."""

    widths: tuple[int, int]  # stage 1 and stage 2 channels (64, 128)
    stages: tuple[tuple[LayerSpec, ...], tuple[LayerSpec, ...]]
    num_classes: int
    aggregation: bool = False
    stem: tuple[int, int] = (16, 64)  # the first two DBs' outputs (the second is stage 1's width)


def input_hw(resolution: int | tuple[int, int]) -> tuple[int, int]:
    h, w = (resolution, resolution) if isinstance(resolution, int) else tuple(resolution)
    if h % 8 or w % 8 or h <= 0 or w <= 0:
        raise UserError(f"resolution: the joint_dim backbone halves its input three times; each side must be a "
                        f"positive multiple of 8, got {h}x{w}")
    return h, w


def spec_cost(spec: JointDimSpec, resolution: int | tuple[int, int], convention: str = "macs"
              ) -> dict[str, dict[str, int]]:
    """Params and FLOPs per part: db1, db2, stage1, db3, stage2, head."""
    check_choice("convention", convention, FLOP_CONVENTIONS)
    mmcv = convention == "mmcv"
    h, w = input_hw(resolution)
    parts: dict[str, dict[str, int]] = {}

    def db(name: str, cin: int, cout: int, hh: int, ww: int) -> None:
        conv = cout - cin
        area = hh * ww
        flops = conv * cin * 9 * area + (conv * area + 3 * cout * area if mmcv else 0)  # bias, BN, ReLU
        parts[name] = {"params": conv * cin * 9 + conv + 2 * cout, "flops": flops}

    def stage(name: str, width: int, layers: tuple[LayerSpec, ...], hh: int, ww: int) -> None:
        params = flops = 0
        for layer in layers:
            area = (hh // layer.pool) * (ww // layer.pool)
            params += 3 * width * layer.c31 + 3 * layer.c31 * layer.c13 + 2 * layer.c31 + 2 * layer.c13
            flops += (3 * width * layer.c31 + 3 * layer.c31 * layer.c13) * area
            if mmcv:  # BN and ReLU after the 3x1, BN after the 1x3, ReLU after the residual add
                flops += 3 * layer.c31 * area + 2 * layer.c13 * area + width * hh * ww
        parts[name] = {"params": params, "flops": flops}

    (s1, s2), k = spec.widths, spec.num_classes
    db("db1", 3, spec.stem[0], h // 2, w // 2)
    db("db2", spec.stem[0], s1, h // 4, w // 4)
    stage("stage1", s1, spec.stages[0], h // 4, w // 4)
    db("db3", s1, s2, h // 8, w // 8)
    stage("stage2", s2, spec.stages[1], h // 8, w // 8)
    if spec.aggregation:
        area = (h // 4) * (w // 4)
        fuse = (s1 + s2) * 64 * 9
        parts["head"] = {"params": fuse + 2 * 64 + 64 * k + k,
                         "flops": (fuse + 64 * k) * area + ((3 * 64 + k) * area if mmcv else 0)}
    else:
        area = (h // 8) * (w // 8)
        parts["head"] = {"params": s2 * k + k, "flops": s2 * k * area + (k * area if mmcv else 0)}
    return parts


def total_cost(parts: dict[str, dict[str, int]]) -> dict[str, int]:
    return {key: sum(p[key] for p in parts.values()) for key in ("params", "flops")}


class Downsampler(nn.Module):
    """ERFNet's downsampler block: conv 3×3 stride 2 beside a 2×2 max-pool, concatenated, BN, ReLU."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout - cin, 3, stride=2, padding=1, bias=True)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.relu(self.bn(torch.cat([self.conv(x), F.max_pool2d(x, 2, 2)], dim=1)))


class NB1D(nn.Module):
    """The simplified non-bottleneck-1D layer of a ``LayerSpec`` (see the module docstring)."""

    def __init__(self, width: int, spec: LayerSpec):
        super().__init__()
        self.spec = spec
        r = spec.dilation
        self.conv31 = nn.Conv2d(width, spec.c31, (3, 1), padding=(r, 0), dilation=(r, 1), bias=False)
        self.bn31 = nn.BatchNorm2d(spec.c31)
        self.conv13 = nn.Conv2d(spec.c31, spec.c13, (1, 3), padding=(0, r), dilation=(1, r), bias=False)
        self.bn13 = nn.BatchNorm2d(spec.c13)

    def branch(self, x):
        s = self.spec.pool
        y = F.avg_pool2d(x, s, s) if s > 1 else x
        y = self.bn13(self.conv13(F.relu(self.bn31(self.conv31(y)))))
        if s > 1:
            y = F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return y

    def forward(self, x):
        return F.relu(add_prefix(x, self.branch(x)))


def add_prefix(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``x`` with ``y`` added to its first ``y.shape[1]`` channels."""
    if y.shape[1] == x.shape[1]:
        return x + y
    return torch.cat([x[:, : y.shape[1]] + y, x[:, y.shape[1]:]], dim=1)


class Head(nn.Module):
    """The classifier at 1/8, or the aggregation block (§5.2) and the classifier at 1/4."""

    def __init__(self, widths: tuple[int, int], num_classes: int, aggregation: bool):
        super().__init__()
        self.aggregation = aggregation
        if aggregation:
            self.fuse = nn.Conv2d(sum(widths), 64, 3, padding=1, bias=False)
            self.bn = nn.BatchNorm2d(64)
        self.classifier = nn.Conv2d(64 if aggregation else widths[1], num_classes, 1)

    def forward(self, low, high):
        if self.aggregation:
            high = F.interpolate(high, size=low.shape[-2:], mode="bilinear", align_corners=False)
            high = F.relu(self.bn(self.fuse(torch.cat([low, high], dim=1))))
        return self.classifier(high)


class JointDimNet(nn.Module):
    """The static network of a ``JointDimSpec``; logits are resized to the input (bilinear)."""

    def __init__(self, spec: JointDimSpec):
        super().__init__()
        self.spec = spec
        (s1, s2), stem = spec.widths, spec.stem
        self.db1 = Downsampler(3, stem[0])
        self.db2 = Downsampler(stem[0], s1)
        self.stage1 = nn.ModuleList(NB1D(s1, layer) for layer in spec.stages[0])
        self.db3 = Downsampler(s1, s2)
        self.stage2 = nn.ModuleList(NB1D(s2, layer) for layer in spec.stages[1])
        self.head = Head(spec.widths, spec.num_classes, spec.aggregation)

    def features(self, x):
        low = self.db2(self.db1(x))
        for layer in self.stage1:
            low = layer(low)
        high = self.db3(low)
        for layer in self.stage2:
            high = layer(high)
        return low, high

    def forward(self, x):
        logits = self.head(*self.features(x))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
