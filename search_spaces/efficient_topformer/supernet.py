"""The elastic Efficient-TopFormer supernet: one network holding the largest weights.

``TopFormerSupernet`` is the static ``TopFormerNet`` of the space's largest
architecture with every conv and BatchNorm made elastic (``search_spaces.elastic``); the
forward code is the static network's. ``set_active(arch)`` sets, once per
architecture, the active channels, kernels, depths, heads and dims of every
layer (slicing index tensors are built there, not per forward).
``extract(arch)`` builds the static network of the same spec and copies the
active slices of the weights, so both compute the same function.

Channel layout: MBConv widths, hidden widths, MLP widths are prefixes of the
largest layers. The token width is the concatenation of the four pyramid
widths, so its active channels are the active prefix of each of the four
segments; query/key (value) channels are the first ``key_dim`` (``value_dim``)
channels of each of the first ``heads`` head segments.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from search_spaces.efficient_topformer.network import (
    INJECTED,
    Attention,
    ConvBN,
    InvertedResidual,
    MBConvSpec,
    TopFormerNet,
    TopFormerSpec,
    TransformerBlock,
    TransformerSpec,
    scaled,
)
from search_spaces.elastic import (
    Channels,
    ElasticBatchNorm2d,
    ElasticConv2d,
    make_elastic,
    prefix_or_index,
)


def _segments(active: tuple[int, ...], full: tuple[int, ...], device: torch.device) -> Channels:
    """The first ``active[i]`` channels of each segment of widths ``full``."""
    indices, start = [], 0
    for n, width in zip(active, full):
        indices += range(start, start + n)
        start += width
    return prefix_or_index(indices, device)


def _conv_bn(m: ConvBN, out: Channels | None = None, in_: Channels | None = None, kernel: int | None = None) -> None:
    m.conv.set_active(out, in_, kernel)
    if out is not None:
        m.bn.set_active(out)


class TopFormerSupernet(TopFormerNet):
    """Weight-sharing supernet of an ``EfficientTopFormerSpace`` (``spec``: its largest architecture).

    Example::

        net = space.build_supernet(num_classes=11)
        net.set_active(space.min_arch()); logits = net(images)   # (N, 11, H, W)
        static = net.extract(space.min_arch())                     # same outputs in eval mode
    """

    def __init__(self, space, num_classes: int):
        super().__init__(space.spec(space.max_arch(), num_classes))
        make_elastic(self)
        self.space = space
        self.num_classes = num_classes
        self.active_arch: dict[str, Any] = {}
        self.active_spec: TopFormerSpec = self.spec
        self.set_active(space.max_arch())

    def set_active(self, arch: Mapping[str, Any]) -> None:
        """Make ``arch`` (validated; an error names a bad field) the active sub-network."""
        arch = self.space.validate(arch)
        spec = self.space.spec(arch, self.num_classes)
        full = self.spec
        _conv_bn(self.stem, out=spec.stem_channels)
        in_ = spec.stem_channels
        for stage, blocks in zip(self.stages, spec.stages):
            stage.depth = len(blocks)
            for module, block in zip(stage.blocks, blocks):
                self._set_mbconv(module, block, in_)
                in_ = block.out_channels
        self.pyramid_channels = spec.pyramid_channels
        device = self.stem.conv.weight.device
        tokens = _segments(spec.pyramid_channels, full.pyramid_channels, device)
        largest = full.vit[0][0]
        for stage, blocks in zip(self.vit, spec.vit):
            stage.depth = len(blocks)
            for module, block in zip(stage.blocks, blocks):
                self._set_transformer(module, block, largest, tokens, spec.embed_dim, device)
        for injection, i in zip(self.injections, INJECTED):
            for conv in (injection.local_embedding, injection.global_embedding, injection.global_act):
                _conv_bn(conv, in_=spec.pyramid_channels[i])
        self.active_arch, self.active_spec = arch, spec

    @staticmethod
    def _set_mbconv(m: InvertedResidual, b: MBConvSpec, in_: int) -> None:
        if m.expand is not None:
            _conv_bn(m.expand, out=b.hidden, in_=in_)
        _conv_bn(m.dw, out=b.hidden, kernel=b.kernel)
        _conv_bn(m.project, out=b.out_channels, in_=b.hidden)
        m.residual = b.residual

    @staticmethod
    def _set_transformer(
        m: TransformerBlock, b: TransformerSpec, largest: TransformerSpec, tokens: Channels, dim: int, device: torch.device
    ) -> None:
        attn: Attention = m.attn
        qk = _segments((b.key_dim,) * b.heads, (largest.key_dim,) * largest.heads, device)
        v = _segments((b.value_dim,) * b.heads, (largest.value_dim,) * largest.heads, device)
        _conv_bn(attn.to_q, out=qk, in_=tokens)
        _conv_bn(attn.to_k, out=qk, in_=tokens)
        _conv_bn(attn.to_v, out=v, in_=tokens)
        _conv_bn(attn.proj, out=tokens, in_=v)
        attn.heads, attn.key_dim, attn.value_dim = b.heads, b.key_dim, b.value_dim
        hidden = scaled(b.mlp_ratio, dim)
        _conv_bn(m.mlp.fc1, out=hidden, in_=tokens)
        m.mlp.dwconv.set_active(out=hidden)
        _conv_bn(m.mlp.fc2, out=tokens, in_=hidden)

    @torch.no_grad()
    def extract(self, arch: Mapping[str, Any] | None = None) -> TopFormerNet:
        """A static network of ``arch`` (default: the active one) with the active weights copied.

        The supernet's active architecture is left as it was; the copy is in the supernet's mode.
        """
        previous = self.active_arch
        if arch is not None:
            self.set_active(arch)
        try:
            static = TopFormerNet(self.active_spec).to(self.stem.conv.weight.device)
            sources = dict(self.named_modules())
            for name, module in static.named_modules():
                source = sources[name]
                if isinstance(source, ElasticConv2d):
                    module.weight.copy_(source.active_weight())
                    if module.bias is not None:
                        module.bias.copy_(source.active_bias())
                elif isinstance(source, ElasticBatchNorm2d):
                    for key, value in source.active_state().items():
                        getattr(module, key).copy_(value)
            return static.train(self.training)
        finally:
            self.set_active(previous)


class PyramidClassifier(nn.Module):
    """ImageNet pre-training's model: the supernet's token pyramid, global average pooling, dropout and a
    linear classifier over MBConv-5's active width (BigNAS pre-trains the backbone on ImageNet this way).

    ``set_active(arch)`` as the supernet's; ``forward`` gives ``(N, num_classes)`` logits. It trains
    ``supernet``'s parts named in ``TRAINED_PARTS``, which ``init: <pretrain checkpoint>`` carries into a
    segmentation supernet; the transformer, injection and head are not used.
    """

    TRAINED_PARTS = ("stem", "stages")

    def __init__(self, supernet: TopFormerSupernet, num_classes: int, dropout: float = 0.2):
        super().__init__()
        self.supernet = supernet
        self.dropout = dropout
        width = supernet.spec.stages[-1][-1].out_channels
        self.classifier = ElasticConv2d(width, num_classes, 1, bias=True)  # a linear layer on the pooled features
        nn.init.normal_(self.classifier.weight, std=0.01)
        nn.init.zeros_(self.classifier.bias)
        self.set_active(supernet.active_arch)

    def set_active(self, arch: Mapping[str, Any]) -> None:
        self.supernet.set_active(arch)
        self.classifier.set_active(in_=self.supernet.active_spec.stages[-1][-1].out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.supernet.pyramid(x)[-1].mean(dim=(2, 3), keepdim=True)
        return self.classifier(F.dropout(features, self.dropout, self.training)).flatten(1)
