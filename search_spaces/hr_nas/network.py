"""HR-NAS's multi-branch network (seed paper 001, §3.1–3.2): layout, searching blocks, cost.

The network (Fig. 3): two stride-2 3×3 stems to 1/4, then parallel modules
with 1 → 4 branches (1/4 … 1/32) alternating with fusion modules, then the
branches resized to 1/4, concatenated, passed through one more searching
block (``head``, to ``last_channel``) and classified by a 1×1 convolution;
logits are resized to the input (bilinear).

- A **fusion module** (HRNet, neighbours only, as the public code): output
  branch ``i`` sums searching blocks from input branches ``i-1`` (stride 2),
  ``i`` and ``i+1`` (at its own resolution, then bilinear upsampling), then
  ReLU; a new, lower branch comes from the previous lowest output branch by a
  stride-2 searching block.
- A **searching block** (Eq. 5, Fig. 3c) from ``c_in`` to ``c_out`` channels:
  a MixConv path — per kernel k ∈ {3, 5, 7} a group of ``r·c_in`` channels
  (1×1 expansion, BN, ReLU, depthwise k×k, BN, ReLU), the groups projected to
  ``c_out`` by a 1×1 convolution and BN (one convolution over the
  concatenation, written as a sum over groups) — plus the lightweight
  Transformer (§3.1) with ``n`` tokens: bilinear resize to s×s, concatenation
  with the 2-D positional map (Eq. 2), 1×1 projection to n tokens and BN
  (projector P), an encoder (single-head attention with hidden size d, FFN
  s² → 4s² → s², residuals and LayerNorm), a decoder whose queries are n
  learned embeddings attending to the encoder output (no first
  self-attention), then the inverse projection (1×1 to ``c_out``, BN) and
  bilinear resize to the block's output size. With stride 1 and
  ``c_in == c_out`` the block adds its input (the residual path), so a block
  whose channels and tokens are all removed degenerates to it (a transition
  block to zeros).

The architecture, per searching block, is the number of channels kept in
each kernel group (``<block>_k3``, ``_k5``, ``_k7``) and the number of tokens
(``<block>_tokens``); kept units are the first ones (a shrinking run orders
them by importance, ``trainables.shrinking``).

The analytic cost (``block_cost``) counts multiply-accumulates of every
convolution, linear layer and matrix product, as ``search_spaces.flop_counter``
does on the real module. The Transformer's are §3.1's terms exactly:
attention 4nds² + 2n²d and FFN 8ns⁴ for the encoder and again for the
decoder, plus the projections (c_in + 2)·n·s² and n·c_out·s².
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from raynas.errors import UserError
from search_spaces.elastic import ElasticBatchNorm2d, ElasticConv2d, take

KERNELS = (3, 5, 7)
FIELDS = tuple(f"k{k}" for k in KERNELS) + ("tokens",)


@dataclass(frozen=True)
class Layout:
    """The supernet's fixed structure (the paper's Fig. 3 and its public segmentation configuration).

    ``modules``: per parallel module, ``(blocks per branch, width per branch)``.
    Defaults: stems 24/24; modules with 1, 2, 3, 4, 4 branches, blocks
    1 / 2,2 / 2,2,3 / 2,2,3,4 / 2,2,3,4 and widths 24 / 18,36 / 18,36,72 /
    18,36,72,144 ×2; expansion r = 4 per kernel group; ``last_channel`` 90;
    tokens of s² = 64 dimensions (s = 8), attention hidden size d = 64, one
    head (§4.1). The paper does not give the number of tokens; ``tokens`` is
    the most a block has.
    """

    stem: tuple[int, int] = (24, 24)
    modules: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...] = (
        ((1,), (24,)), ((2, 2), (18, 36)), ((2, 2, 3), (18, 36, 72)),
        ((2, 2, 3, 4), (18, 36, 72, 144)), ((2, 2, 3, 4), (18, 36, 72, 144)))
    expand_ratio: int = 4
    last_channel: int = 90
    tokens: int = 16
    token_size: int = 8  # s
    hidden: int = 64  # d

    @classmethod
    def from_options(cls, **options) -> "Layout":
        """A layout from YAML-style options (lists for tuples), each field checked."""
        allowed = [f for f in cls.__dataclass_fields__]
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise UserError(f"space_options: unknown field(s) {unknown} for space 'hr_nas'; allowed: {allowed}")
        fields = dict(options)
        try:
            if "stem" in fields:
                fields["stem"] = tuple(int(v) for v in fields["stem"])
            if "modules" in fields:
                fields["modules"] = tuple((tuple(int(b) for b in blocks), tuple(int(w) for w in widths))
                                          for blocks, widths in fields["modules"])
        except (TypeError, ValueError):
            raise UserError(f"space_options.stem and modules: [stem width, stem width] and, per module, "
                            f"[[blocks per branch], [widths per branch]]; got stem {options.get('stem')!r}, "
                            f"modules {options.get('modules')!r}") from None
        layout = cls(**fields)
        layout.check()
        return layout

    def check(self) -> None:
        if len(self.stem) != 2 or min(self.stem) < 1:
            raise UserError(f"space_options.stem: two positive widths; got {list(self.stem)}")
        previous = 1
        for m, (blocks, widths) in enumerate(self.modules):
            if len(blocks) != len(widths) or not 1 <= len(widths) <= 4 or len(widths) - previous not in (0, 1):
                raise UserError(f"space_options.modules[{m}]: [blocks per branch, widths per branch] with 1-4 "
                                f"branches, one more than the module before at most; got {[list(blocks), list(widths)]}")
            if min(blocks) < 1 or min(widths) < 1:
                raise UserError(f"space_options.modules[{m}]: blocks and widths must be positive; "
                                f"got {[list(blocks), list(widths)]}")
            previous = len(widths)
        for name in ("expand_ratio", "last_channel", "tokens", "token_size", "hidden"):
            if int(getattr(self, name)) < 1:
                raise UserError(f"space_options.{name}: a positive whole number; got {getattr(self, name)!r}")

    def options(self) -> dict[str, Any]:
        """The fields as plain YAML/JSON values (``from_options`` inverts it)."""
        return {"stem": list(self.stem), "modules": [[list(b), list(w)] for b, w in self.modules],
                "expand_ratio": self.expand_ratio, "last_channel": self.last_channel, "tokens": self.tokens,
                "token_size": self.token_size, "hidden": self.hidden}


@dataclass(frozen=True)
class BlockSpec:
    """One searching block: name, channels, stride, the branch (resolution 1/(4·2^branch)) of its input."""

    name: str
    c_in: int
    c_out: int
    stride: int
    branch: int  # the input's branch; the output is at branch + (stride == 2)
    upsample: bool = False  # a fusion path from a lower branch: resized up after the block
    part: str = "head"  # the module it belongs to (``m0`` …), for cost breakdowns

    def counts(self, arch: Mapping[str, Any]) -> dict[str, int]:
        """``{k3, k5, k7, tokens}`` of this block in a (flat) architecture."""
        return {field: int(arch[f"{self.name}_{field}"]) for field in FIELDS}

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.c_in == self.c_out

    def group_capacity(self, layout: Layout) -> int:
        return layout.expand_ratio * self.c_in


def block_specs(layout: Layout) -> list[BlockSpec]:
    """Every searching block, in forward order (fusion, then parallel, per module; the head last)."""
    specs, widths = [], [layout.stem[1]]
    for m, (blocks, out) in enumerate(layout.modules):
        specs += [s for s, _, _ in fusion_paths(m, widths, out)]
        specs += [BlockSpec(f"m{m}b{b}l{layer}", out[b], out[b], 1, b, part=f"m{m}") for b in range(len(out))
                  for layer in range(blocks[b])]
        widths = list(out)
    specs.append(BlockSpec("head", sum(widths), layout.last_channel, 1, 0))
    return specs


def fusion_paths(m: int, widths_in: list[int], widths_out: tuple[int, ...]) -> list[tuple[BlockSpec, int, int]]:
    """``(spec, from branch, to branch)`` of module ``m``'s fusion: ``neighbour_paths`` then ``new_branch_paths``."""
    return neighbour_paths(m, widths_in, widths_out) + new_branch_paths(m, widths_in, widths_out)


def neighbour_paths(m: int, widths_in: list[int], widths_out: tuple[int, ...]) -> list[tuple[BlockSpec, int, int]]:
    """Into each existing branch ``i``: from input branches ``i-1`` (stride 2), ``i`` and ``i+1`` (upsampled)."""
    n_in = len(widths_in)
    return [(BlockSpec(f"m{m}f{i}{j}", widths_in[j], widths_out[i], 2 if j < i else 1, j, upsample=j > i,
                       part=f"m{m}"), j, i)
            for i in range(n_in) for j in range(max(0, i - 1), min(n_in, i + 2))]


def new_branch_paths(m: int, widths_in: list[int], widths_out: tuple[int, ...]) -> list[tuple[BlockSpec, int, int]]:
    """A new, lower branch from the fused lowest one (stride 2)."""
    return [(BlockSpec(f"m{m}n{b}", widths_out[b - 1], widths_out[b], 2, b - 1, part=f"m{m}"), b - 1, b)
            for b in range(len(widths_in), len(widths_out))]


# --- cost -----------------------------------------------------------------------------------


def branch_hw(h: int, w: int, branch: int) -> tuple[int, int]:
    return h // (4 << branch), w // (4 << branch)


def input_hw(resolution: int | tuple[int, int]) -> tuple[int, int]:
    h, w = (resolution, resolution) if isinstance(resolution, int) else tuple(resolution)
    if h <= 0 or w <= 0 or h % 32 or w % 32:
        raise UserError(f"resolution: hr_nas halves its input five times (to 1/32); each side must be a positive "
                        f"multiple of 32, got {h}x{w}")
    return h, w


def transformer_cost(n: int, c_in: int, c_out: int, layout: Layout) -> dict[str, int]:
    """``O_T(n)`` (§3.1) with the projections, and the parameters, of a Transformer path with n tokens."""
    if n == 0:
        return {"params": 0, "flops": 0}
    s2, d = layout.token_size ** 2, layout.hidden
    layer = 4 * n * d * s2 + 2 * n * n * d + 8 * n * s2 * s2  # attention + FFN
    layer_params = 4 * s2 * d + (2 * 4 * s2 * s2 + 5 * s2) + 4 * s2  # Q K V O, FFN with biases, 2 LayerNorms
    return {"flops": (c_in + 2) * n * s2 + 2 * layer + n * c_out * s2,
            "params": (c_in + 2) * n + 2 * n + 2 * layer_params + n * s2 + n * c_out + 2 * c_out}


def block_cost(spec: BlockSpec, counts: Mapping[str, int], h: int, w: int, layout: Layout) -> dict[str, int]:
    """Params and MACs of one searching block with ``counts`` (``k3``, ``k5``, ``k7``, ``tokens``); input
    image ``h``×``w``."""
    hi, wi = branch_hw(h, w, spec.branch)
    ho, wo = hi // spec.stride, wi // spec.stride
    kept = [counts[f"k{k}"] for k in KERNELS]
    total = sum(kept)
    flops = total * spec.c_in * hi * wi + sum(c * k * k for c, k in zip(kept, KERNELS)) * ho * wo \
        + total * spec.c_out * ho * wo
    params = total * spec.c_in + 2 * total + sum(c * k * k for c, k in zip(kept, KERNELS)) + 2 * total \
        + total * spec.c_out + (2 * spec.c_out if total else 0)
    t = transformer_cost(counts["tokens"], spec.c_in, spec.c_out, layout)
    return {"params": params + t["params"], "flops": flops + t["flops"]}


def unit_costs(spec: BlockSpec, counts: Mapping[str, int], h: int, w: int, layout: Layout) -> dict[str, float]:
    """Δ_i of Eq. 6: the MACs one search unit costs — a channel of kernel group k (its 1×1 expansion,
    depthwise k×k and share of the 1×1 projection; Eq. 6 counts the depthwise part only), and a token,
    ``O_T(n') − O_T(n' − 1)`` at the ``n'`` tokens kept now."""
    hi, wi = branch_hw(h, w, spec.branch)
    ho, wo = hi // spec.stride, wi // spec.stride
    out = {f"k{k}": float(spec.c_in * hi * wi + (k * k + spec.c_out) * ho * wo) for k in KERNELS}
    n = counts["tokens"]
    out["tokens"] = float(transformer_cost(max(n, 1), spec.c_in, spec.c_out, layout)["flops"]
                          - transformer_cost(max(n, 1) - 1, spec.c_in, spec.c_out, layout)["flops"])
    return out


def fixed_cost(layout: Layout, h: int, w: int, num_classes: int) -> dict[str, dict[str, int]]:
    """The parts no architecture changes: the two stems and the classifier."""
    a, b = layout.stem
    return {"stem": {"params": 27 * a + 2 * a + 9 * a * b + 2 * b,
                     "flops": 27 * a * (h // 2) * (w // 2) + 9 * a * b * (h // 4) * (w // 4)},
            "classifier": {"params": layout.last_channel * num_classes + num_classes,
                           "flops": layout.last_channel * num_classes * (h // 4) * (w // 4)}}


# --- modules ----------------------------------------------------------------------------------


def conv_bn(c_in: int, c_out: int, kernel: int = 1, stride: int = 1, depthwise: bool = False
            ) -> tuple[ElasticConv2d, ElasticBatchNorm2d]:
    conv = ElasticConv2d(c_in, c_out, kernel, stride, kernel // 2, groups=c_out if depthwise else 1, bias=False)
    return conv, ElasticBatchNorm2d(c_out)


class KernelGroup(nn.Module):
    """The channels of one kernel size: 1×1 expansion, BN, ReLU, depthwise k×k (stride), BN, ReLU, and their
    columns of the block's 1×1 projection. The depthwise BN's scales are the units' importance (§4)."""

    def __init__(self, c_in: int, channels: int, c_out: int, kernel: int, stride: int):
        super().__init__()
        self.expand, self.expand_bn = conv_bn(c_in, channels)
        self.depthwise, self.bn = conv_bn(channels, channels, kernel, stride, depthwise=True)
        self.project = ElasticConv2d(channels, c_out, 1, bias=False)

    def set_active(self, n: int) -> None:
        for layer in (self.expand, self.depthwise):
            layer.set_active(out=n)
        self.expand_bn.set_active(n)
        self.bn.set_active(n)
        self.project.set_active(in_=n)

    def forward(self, x):
        x = F.relu(self.expand_bn(self.expand(x)))
        return self.project(F.relu(self.bn(self.depthwise(x))))


class Attention(nn.Module):
    """Single-head attention over tokens of ``dim`` values with hidden size ``hidden`` (Eq. 3, h = 1)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.q, self.k, self.v = (nn.Linear(dim, hidden, bias=False) for _ in range(3))
        self.out = nn.Linear(hidden, dim, bias=False)
        self.scale = hidden ** -0.5

    def forward(self, queries, memory):
        q, k, v = self.q(queries), self.k(memory), self.v(memory)
        weights = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * self.scale, dim=-1)
        return self.out(torch.matmul(weights, v))


class TransformerLayer(nn.Module):
    """Attention and FFN (Eq. 4: s² → 4s² → s², ReLU), each with a residual and LayerNorm (post-norm)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.attention = Attention(dim, hidden)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, 4 * dim), nn.ReLU(), nn.Linear(4 * dim, dim))

    def forward(self, queries, memory):
        x = self.norm1(memory + self.attention(queries, memory))
        return self.norm2(x + self.ffn(x))


class LightTransformer(nn.Module):
    """§3.1's lightweight Transformer with up to ``tokens`` tokens (the first ``n`` active). Its projector
    BN's scales are the tokens' importance (§4)."""

    def __init__(self, c_in: int, c_out: int, tokens: int, size: int, hidden: int):
        super().__init__()
        self.size = size
        self.project, self.project_bn = conv_bn(c_in + 2, tokens)
        self.encoder = TransformerLayer(size * size, hidden)
        self.decoder = TransformerLayer(size * size, hidden)
        self.queries = nn.Parameter(torch.randn(tokens, size * size) * 0.02)
        self.inverse, self.inverse_bn = conv_bn(tokens, c_out)
        ii, jj = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
        self.register_buffer("position", torch.stack([ii / size, jj / size]).float()[None], persistent=False)
        self.active = tokens

    def set_active(self, n: int) -> None:
        self.active = n
        self.project.set_active(out=n)
        self.project_bn.set_active(n)
        self.inverse.set_active(in_=n)

    def forward(self, x, out_hw: tuple[int, int]):
        b, s = x.shape[0], self.size
        f = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False)
        f = torch.cat([f, self.position.expand(b, -1, -1, -1)], dim=1)
        tokens = self.project_bn(self.project(f)).flatten(2)  # b × n × s²
        memory = self.encoder(tokens, tokens)
        queries = take(self.queries, 0, self.active).unsqueeze(0).expand(b, -1, -1)
        decoded = self.decoder(queries, memory).reshape(b, self.active, s, s)
        y = self.inverse_bn(self.inverse(decoded))
        return F.interpolate(y, size=out_hw, mode="bilinear", align_corners=False)


class SearchingBlock(nn.Module):
    """A searching block holding ``capacity`` channels per kernel group and tokens (the first ``counts`` active)."""

    def __init__(self, spec: BlockSpec, arch: Mapping[str, int], layout: Layout):
        super().__init__()
        self.spec = spec
        capacity = spec.counts(arch)
        self.groups = nn.ModuleDict({
            f"k{k}": KernelGroup(spec.c_in, capacity[f"k{k}"], spec.c_out, k, spec.stride)
            for k in KERNELS if capacity[f"k{k}"] > 0})
        self.project_bn = ElasticBatchNorm2d(spec.c_out) if self.groups else None
        self.transformer = LightTransformer(spec.c_in, spec.c_out, capacity["tokens"], layout.token_size,
                                            layout.hidden) if capacity["tokens"] > 0 else None
        self.counts = dict(capacity)

    def set_active(self, arch: Mapping[str, int]) -> None:
        counts = self.spec.counts(arch)
        for name, group in self.groups.items():
            group.set_active(counts[name])
        if self.transformer is not None:
            self.transformer.set_active(counts["tokens"])
        self.counts = dict(counts)

    def forward(self, x):
        stride = self.spec.stride
        out_hw = (x.shape[-2] // stride, x.shape[-1] // stride)
        y = x if self.spec.residual else None
        convs = [group(x) for name, group in self.groups.items() if self.counts[name] > 0]
        if convs:
            z = self.project_bn(sum(convs[1:], convs[0]))
            y = z if y is None else y + z
        if self.transformer is not None and self.counts["tokens"] > 0:
            t = self.transformer(x, out_hw)
            y = t if y is None else y + t
        return y if y is not None else x.new_zeros(x.shape[0], self.spec.c_out, *out_hw)

    def load_active(self, other: "SearchingBlock") -> None:
        """Copy ``other``'s active weights (an elastic block of the same spec) into this block's full ones."""
        with torch.no_grad():
            for name, group in self.groups.items():
                source = other.groups[name]
                for mine, theirs in ((group.expand, source.expand), (group.depthwise, source.depthwise),
                                     (group.project, source.project)):
                    mine.weight.copy_(theirs.active_weight())
                for mine, theirs in ((group.expand_bn, source.expand_bn), (group.bn, source.bn)):
                    mine.load_state_dict(theirs.active_state())
            if self.project_bn is not None:
                self.project_bn.load_state_dict(other.project_bn.state_dict())
            if self.transformer is not None:
                mine, theirs = self.transformer, other.transformer
                mine.project.weight.copy_(theirs.project.active_weight())
                mine.project_bn.load_state_dict(theirs.project_bn.active_state())
                mine.encoder.load_state_dict(theirs.encoder.state_dict())
                mine.decoder.load_state_dict(theirs.decoder.state_dict())
                mine.queries.copy_(take(theirs.queries, 0, theirs.active))
                mine.inverse.weight.copy_(theirs.inverse.active_weight())
                mine.inverse_bn.load_state_dict(theirs.inverse_bn.state_dict())


class HRNASNet(nn.Module):
    """The network of ``layout`` whose searching blocks hold the units of architecture ``capacity``.

    Built with the largest architecture it is the elastic supernet: ``set_active(arch)`` selects what the
    next forward computes and ``extract(arch)`` copies those weights into a static ``HRNASNet`` built with
    ``arch``, which computes the same outputs.
    """

    def __init__(self, layout: Layout, capacity: Mapping[str, int], num_classes: int):
        super().__init__()
        self.layout = layout
        a, b = layout.stem
        self.stem = nn.Sequential(nn.Conv2d(3, a, 3, 2, 1, bias=False), nn.BatchNorm2d(a), nn.ReLU(),
                                  nn.Conv2d(a, b, 3, 2, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU())
        self.blocks = nn.ModuleDict({s.name: SearchingBlock(s, capacity, layout) for s in block_specs(layout)})
        self.arch = dict(capacity)
        self.num_classes = num_classes
        self.classifier = nn.Conv2d(layout.last_channel, num_classes, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def set_active(self, arch: Mapping[str, int]) -> None:
        """What the next forward computes (an architecture of the space, at most the capacity)."""
        for block in self.blocks.values():
            block.set_active(arch)
        self.arch = dict(arch)

    def extract(self, arch: Mapping[str, int] | None = None) -> "HRNASNet":
        """A static network of ``arch`` (default: the active one) with this network's weights."""
        if arch is not None:
            self.set_active(arch)
        static = HRNASNet(self.layout, self.arch, self.num_classes).to(self.classifier.weight.device)
        static.stem.load_state_dict(self.stem.state_dict())
        static.classifier.load_state_dict(self.classifier.state_dict())
        for name, block in static.blocks.items():
            block.load_active(self.blocks[name])
        return static.train(self.training)

    def forward(self, x):
        size = x.shape[-2:]
        xs = [self.stem(x)]
        widths = [self.layout.stem[1]]
        for m, (blocks, out) in enumerate(self.layout.modules):
            fused: list = [None] * len(xs)
            for spec, j, i in neighbour_paths(m, widths, out):
                y = self.blocks[spec.name](xs[j])
                if spec.upsample:
                    y = F.interpolate(y, size=xs[i].shape[-2:], mode="bilinear", align_corners=False)
                fused[i] = y if fused[i] is None else fused[i] + y
            fused = [F.relu(t) for t in fused]
            for spec, j, _ in new_branch_paths(m, widths, out):
                fused.append(self.blocks[spec.name](fused[j]))
            xs = fused
            for b in range(len(out)):
                for layer in range(blocks[b]):
                    xs[b] = self.blocks[f"m{m}b{b}l{layer}"](xs[b])
            widths = list(out)
        top = xs[0].shape[-2:]
        features = torch.cat([xs[0]] + [F.interpolate(t, size=top, mode="bilinear", align_corners=False)
                                        for t in xs[1:]], dim=1)
        logits = self.classifier(self.blocks["head"](features))
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def total(parts: Mapping[str, Mapping[str, int]]) -> dict[str, int]:
    return {key: sum(p[key] for p in parts.values()) for key in ("params", "flops")}


__all__ = ["FIELDS", "KERNELS", "BlockSpec", "HRNASNet", "Layout", "SearchingBlock", "block_cost", "block_specs",
           "fixed_cost", "fusion_paths", "input_hw", "neighbour_paths", "new_branch_paths", "total", "transformer_cost", "unit_costs"]
