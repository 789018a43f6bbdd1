"""A TopFormer-style segmentation network built from a per-layer spec.

Follows TopFormer (Zhang et al., "TopFormer: Token Pyramid Transformer for
Mobile Semantic Segmentation", CVPR 2022). One JSON-able ``TopFormerSpec``
describes every layer; the static network (``TopFormerNet``), the analytic
cost (``spec_cost``), the reference models and the supernet's extracted
sub-networks all derive from it.

Stride plan (output stride after each part, 512x512 input → grid size)::

    stem     conv3x3 s2 + BN + ReLU            1/2   (256)
    MBConv-1 inverted residuals, s1            1/2   (256)
    MBConv-2 first block s2                    1/4   (128)  → pyramid
    MBConv-3 first block s2                    1/8   (64)   → pyramid, injection
    MBConv-4 first block s2                    1/16  (32)   → pyramid, injection
    MBConv-5 first block s2                    1/32  (16)   → pyramid, injection
    token pyramid: each pyramid output average-pooled to the 1/64 grid (8x8;
        TopFormer's c2t_stride 2) and concatenated on channels, so the
        transformer width is the sum of the four stage widths
    ViT stages 1-4 (TopFormer blocks) over the 8x8 tokens
    split the tokens back by channels; Semantics Injection (sigmoid-gated,
        TopFormer's InjectionMultiSum) at 1/8, 1/16 and 1/32 → head channels
    SimpleHead: upsample to 1/8 and sum, conv1x1+BN+ReLU, dropout, conv1x1
        (the fuse conv is depthwise when ``head_depthwise_fuse``: TopFormer-T's
        ``is_dw=True``; dense otherwise, as S, B and the search space)
    logits upsampled bilinearly to the input size

Activations as TopFormer's code: ReLU in the stem and MBConv blocks (its token
pyramid module's default), ReLU6 in the transformer, h_sigmoid (= hardsigmoid)
for the injection gate, ReLU in the head.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from raynas.errors import check_choice
from search_spaces.base import FLOP_CONVENTIONS

PYRAMID_STAGES = (1, 2, 3, 4)  # MBConv-2..5 (0-based) feed the token pyramid
INJECTED = (1, 2, 3)  # pyramid entries (1/8, 1/16, 1/32) that get semantics injection


def scaled(ratio: float, n: int) -> int:
    """``int(ratio * n)`` as TopFormer computes value and MLP widths, robust to float drift."""
    return int(ratio * n + 1e-6)


@dataclass(frozen=True, slots=True)
class MBConvSpec:
    """A MobileNetV2 inverted residual block."""

    in_channels: int
    out_channels: int
    kernel: int
    expand: float
    stride: int

    @property
    def hidden(self) -> int:
        return int(round(self.in_channels * self.expand))

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels


@dataclass(frozen=True, slots=True)
class TransformerSpec:
    """A TopFormer transformer block (attention + MLP); its width is the token width."""

    heads: int
    key_dim: int
    attn_ratio: float
    mlp_ratio: float

    @property
    def value_dim(self) -> int:
        return scaled(self.attn_ratio, self.key_dim)


@dataclass(frozen=True)
class TopFormerSpec:
    """Every layer of one network: stem, five MBConv stages, four ViT stages, injection, head."""

    stem_channels: int
    stages: tuple[tuple[MBConvSpec, ...], ...]
    vit: tuple[tuple[TransformerSpec, ...], ...]
    head_channels: int
    num_classes: int
    pool_stride: int = 2
    head_depthwise_fuse: bool = False

    @property
    def pyramid_channels(self) -> tuple[int, ...]:
        return tuple(self.stages[i][-1].out_channels for i in PYRAMID_STAGES)

    @property
    def embed_dim(self) -> int:
        return sum(self.pyramid_channels)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TopFormerSpec":
        return cls(
            stem_channels=data["stem_channels"],
            stages=tuple(tuple(MBConvSpec(**b) for b in stage) for stage in data["stages"]),
            vit=tuple(tuple(TransformerSpec(**b) for b in stage) for stage in data["vit"]),
            head_channels=data["head_channels"],
            num_classes=data["num_classes"],
            pool_stride=data.get("pool_stride", 2),
            head_depthwise_fuse=data.get("head_depthwise_fuse", False),
        )


def mbconv_stage(in_channels: int, layers: Sequence[tuple[int, float, int, int]]) -> tuple[MBConvSpec, ...]:
    """A stage from TopFormer-style ``(kernel, expand, channels, stride)`` rows, chaining widths."""
    blocks = []
    for kernel, expand, channels, stride in layers:
        blocks.append(MBConvSpec(in_channels, channels, kernel, expand, stride))
        in_channels = channels
    return tuple(blocks)


# --- static modules --------------------------------------------------------------


class ConvBN(nn.Module):
    """Conv (no bias, 'same' padding) followed by BatchNorm."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 1, stride: int = 1, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: [expand 1x1 + ReLU] → depthwise k×k + ReLU → project 1x1 (+ residual)."""

    def __init__(self, spec: MBConvSpec):
        super().__init__()
        hidden = spec.hidden
        self.expand = ConvBN(spec.in_channels, hidden) if spec.expand != 1 else None
        self.dw = ConvBN(hidden, hidden, spec.kernel, spec.stride, groups=hidden)
        self.project = ConvBN(hidden, spec.out_channels)
        self.residual = spec.residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.expand(x)) if self.expand is not None else x
        y = self.project(F.relu(self.dw(y)))
        return x + y if self.residual else y


class Attention(nn.Module):
    """TopFormer attention: q, k, v as conv1x1+BN; softmax(q·kᵀ/√key_dim)·v; ReLU6; proj conv1x1+BN.

    (TopFormer's code defines the 1/√key_dim scale but leaves it out of the softmax;
    we apply it, as the attention it describes.)
    """

    def __init__(self, dim: int, spec: TransformerSpec):
        super().__init__()
        self.heads, self.key_dim, self.value_dim = spec.heads, spec.key_dim, spec.value_dim
        self.to_q = ConvBN(dim, spec.heads * spec.key_dim)
        self.to_k = ConvBN(dim, spec.heads * spec.key_dim)
        self.to_v = ConvBN(dim, spec.heads * spec.value_dim)
        self.proj = ConvBN(spec.heads * spec.value_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        q = self.to_q(x).reshape(b, self.heads, self.key_dim, h * w).transpose(2, 3)
        k = self.to_k(x).reshape(b, self.heads, self.key_dim, h * w)
        v = self.to_v(x).reshape(b, self.heads, self.value_dim, h * w).transpose(2, 3)
        attn = torch.softmax((q @ k) * self.key_dim**-0.5, dim=-1)
        y = (attn @ v).transpose(2, 3).reshape(b, self.heads * self.value_dim, h, w)
        return self.proj(F.relu6(y))


class Mlp(nn.Module):
    """TopFormer MLP: conv1x1+BN → depthwise 3x3 (bias) → ReLU6 → conv1x1+BN."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = ConvBN(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden, bias=True)
        self.fc2 = ConvBN(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu6(self.dwconv(self.fc1(x))))


class TransformerBlock(nn.Module):
    def __init__(self, dim: int, spec: TransformerSpec):
        super().__init__()
        self.attn = Attention(dim, spec)
        self.mlp = Mlp(dim, scaled(spec.mlp_ratio, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.mlp(x)


class Stage(nn.Module):
    """A sequence of blocks of which the first ``depth`` run (all of them in a static net)."""

    def __init__(self, blocks: Sequence[nn.Module]):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.depth = len(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(self.depth):
            x = self.blocks[i](x)
        return x


def pooled_size(height: int, width: int, stride: int) -> tuple[int, int]:
    """TopFormer's token grid: the 1/32 grid reduced by ``stride`` (ceil)."""
    return (height - 1) // stride + 1, (width - 1) // stride + 1


def _pooling_matrix(n_in: torch.Tensor, n_out: torch.Tensor) -> torch.Tensor:
    """``(n_out, n_in)``: row i averages the inputs of ``adaptive_avg_pool``'s bin i,
    ``[floor(i·n_in/n_out), ceil((i+1)·n_in/n_out))``, from shapes that may be traced tensors."""
    i = torch.arange(n_out).unsqueeze(1)
    j = torch.arange(n_in).unsqueeze(0)
    start = torch.div(i * n_in, n_out, rounding_mode="floor")
    end = torch.div((i + 1) * n_in + n_out - 1, n_out, rounding_mode="floor")
    inside = ((j >= start) & (j < end)).float()
    return inside / inside.sum(dim=1, keepdim=True)


def adaptive_avg_pool(x: torch.Tensor, size: tuple) -> torch.Tensor:
    """``F.adaptive_avg_pool2d(x, size)``; in an ONNX export, the same averages as two matrix products, so that
    the exported graph takes any input size (ONNX's pooling needs a kernel fixed at export)."""
    if not torch.onnx.is_in_onnx_export():
        return F.adaptive_avg_pool2d(x, size)
    height, width = x.shape[-2:]
    rows, cols = _pooling_matrix(height, size[0]), _pooling_matrix(width, size[1])
    return torch.matmul(torch.matmul(rows, x), cols.transpose(0, 1))


class PyramidPool(nn.Module):
    """Average-pool every pyramid level to the token grid and concatenate on channels."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        size = pooled_size(*feats[-1].shape[-2:], self.stride)
        return torch.cat([adaptive_avg_pool(f, size) for f in feats], dim=1)


class Injection(nn.Module):
    """TopFormer's InjectionMultiSum: local·h_sigmoid(gate(global)) + embed(global), upsampled."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.local_embedding = ConvBN(in_channels, out_channels)
        self.global_embedding = ConvBN(in_channels, out_channels)
        self.global_act = ConvBN(in_channels, out_channels)

    def forward(self, local: torch.Tensor, semantics: torch.Tensor) -> torch.Tensor:
        size = local.shape[-2:]
        gate = F.interpolate(F.hardsigmoid(self.global_act(semantics)), size, mode="bilinear", align_corners=False)
        embed = F.interpolate(self.global_embedding(semantics), size, mode="bilinear", align_corners=False)
        return self.local_embedding(local) * gate + embed


class SimpleHead(nn.Module):
    """TopFormer's SimpleHead: sum the levels at the finest one, conv1x1+BN+ReLU, dropout, classifier.

    ``depthwise``: the fuse conv1x1 is depthwise (TopFormer's ``is_dw``, used by TopFormer-T).
    """

    def __init__(self, channels: int, num_classes: int, dropout: float = 0.1, depthwise: bool = False):
        super().__init__()
        self.fuse = ConvBN(channels, channels, groups=channels if depthwise else 1)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        x = feats[0]
        for f in feats[1:]:
            x = x + F.interpolate(f, x.shape[-2:], mode="bilinear", align_corners=False)
        return self.classifier(self.dropout(F.relu(self.fuse(x))))


class TopFormerNet(nn.Module):
    """The static network of one ``TopFormerSpec``; ``forward`` returns logits at the input size."""

    def __init__(self, spec: TopFormerSpec):
        super().__init__()
        self.spec = spec
        self.stem = ConvBN(3, spec.stem_channels, 3, 2)
        self.stages = nn.ModuleList(Stage([InvertedResidual(b) for b in stage]) for stage in spec.stages)
        self.pool = PyramidPool(spec.pool_stride)
        dim = spec.embed_dim
        self.vit = nn.ModuleList(Stage([TransformerBlock(dim, b) for b in stage]) for stage in spec.vit)
        self.pyramid_channels = spec.pyramid_channels
        self.injections = nn.ModuleList(Injection(self.pyramid_channels[i], spec.head_channels) for i in INJECTED)
        self.head = SimpleHead(spec.head_channels, spec.num_classes, depthwise=spec.head_depthwise_fuse)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, Attention):
                nn.init.zeros_(m.proj.bn.weight)  # residual branch starts as identity (TopFormer)
        # small logits at the start, as mmseg's decode heads: the first loss is near ln(classes)
        nn.init.normal_(self.head.classifier.weight, std=0.01)

    def pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The token pyramid's outputs at strides 4, 8, 16 and 32 (MBConv-2..5)."""
        x = F.relu(self.stem(x))
        pyramid = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in PYRAMID_STAGES:
                pyramid.append(x)
        return pyramid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        pyramid = self.pyramid(x)
        tokens = self.pool(pyramid)
        for stage in self.vit:
            tokens = stage(tokens)
        semantics = tokens.split(self.pyramid_channels, dim=1)
        fused = [inj(pyramid[i], semantics[i]) for inj, i in zip(self.injections, INJECTED)]
        return F.interpolate(self.head(fused), size, mode="bilinear", align_corners=False)


# --- analytic cost ---------------------------------------------------------------


def _out(size: int, stride: int) -> int:
    return (size - 1) // stride + 1


def spec_cost(
    spec: TopFormerSpec, resolution: int | tuple[int, int], convention: str = "macs"
) -> dict[str, dict[str, int]]:
    """Parameters and FLOPs per part, at ``resolution`` (square side or (H, W)).

    ``convention`` (``search_spaces.base.FLOP_CONVENTIONS``; ``search_spaces.flop_counter``
    counts the same on a real model):

    - ``"macs"``: multiply-accumulates of every convolution (weights × output
      pixels) and of the two attention matrix products (q·kᵀ and attn·v);
      BatchNorm, activations, pooling, softmax, upsampling and biases add nothing.
    - ``"mmcv"``: mmcv's ``get_flops`` (TopFormer's published figures): conv MACs,
      plus per output element 1 for a conv bias, 2 for a BatchNorm and 1 for a
      ReLU / ReLU6 / h_sigmoid; matrix products, pooling and resizing (functional
      in TopFormer's code) add nothing.

    Parameters: every weight, bias and BatchNorm affine pair (2 per channel).
    """
    mmcv = check_choice("convention", convention, FLOP_CONVENTIONS) == "mmcv"
    h, w = (resolution, resolution) if isinstance(resolution, int) else resolution
    h, w = _out(h, 2), _out(w, 2)
    c = spec.stem_channels
    parts = {"stem": {"params": 27 * c + 2 * c, "flops": (27 + 3 if mmcv else 27) * c * h * w}}  # mmcv: BN + ReLU
    grids = []
    for i, stage in enumerate(spec.stages):
        params = flops = 0
        for b in stage:
            hid, cout = b.hidden, b.out_channels
            if b.expand != 1:
                weights = b.in_channels * hid
                params += weights + 2 * hid
                flops += (weights + 3 * hid if mmcv else weights) * h * w  # mmcv: BN + ReLU
            h, w = _out(h, b.stride), _out(w, b.stride)
            weights = hid * b.kernel * b.kernel + hid * cout  # depthwise + project
            params += weights + 2 * (hid + cout)
            flops += (weights + 3 * hid + 2 * cout if mmcv else weights) * h * w  # mmcv: dw BN + ReLU, project BN
        grids.append(h * w)
        parts[f"mb{i + 1}"] = {"params": params, "flops": flops}
    th, tw = pooled_size(h, w, spec.pool_stride)
    n = th * tw
    pyramid = spec.pyramid_channels
    dim = sum(pyramid)
    for i, stage in enumerate(spec.vit):
        params = flops = 0
        for b in stage:
            value_dim = scaled(b.attn_ratio, b.key_dim)
            qk, v, hidden = b.heads * b.key_dim, b.heads * value_dim, scaled(b.mlp_ratio, dim)
            dense = dim * (2 * qk + 2 * v + 2 * hidden)  # q, k, v, proj, fc1, fc2
            params += dense + 2 * (2 * qk + v + hidden + 2 * dim) + 10 * hidden  # + BNs, depthwise 3x3 with bias
            if mmcv:  # BNs of q, k, v, proj, fc1, fc2; ReLU6 before proj; dw bias and ReLU6
                flops += (dense + 9 * hidden + 4 * qk + 3 * v + 4 * hidden + 4 * dim) * n
            else:
                flops += (dense + 9 * hidden) * n + b.heads * n * n * (b.key_dim + value_dim)
        parts[f"vit{i + 1}"] = {"params": params, "flops": flops}
    params = flops = 0
    c = spec.head_channels
    for i in INJECTED:
        weights, grid = pyramid[i] * c, grids[PYRAMID_STAGES[i]]
        params += 3 * (weights + 2 * c)  # local embedding, global embedding, gate
        flops += weights * (grid + 2 * n)
        if mmcv:  # three BNs, h_sigmoid on the gate
            flops += 2 * c * grid + 5 * c * n
    parts["injection"] = {"params": params, "flops": flops}
    classes, pixels = spec.num_classes, grids[PYRAMID_STAGES[INJECTED[0]]]
    fuse = c if spec.head_depthwise_fuse else c * c
    weights = fuse + c * classes  # fuse + classifier
    flops = (weights + 3 * c + classes if mmcv else weights) * pixels  # mmcv: fuse BN + ReLU, classifier bias
    parts["head"] = {"params": weights + 2 * c + classes, "flops": flops}
    return parts


def total_cost(parts: Mapping[str, Mapping[str, int]]) -> dict[str, int]:
    return {"params": sum(p["params"] for p in parts.values()), "flops": sum(p["flops"] for p in parts.values())}
