"""Elastic layers, shared by the weight-sharing spaces: the largest weights, sliced at forward time.

Active channels are either a prefix length (``int``: the first n channels, a view)
or an index tensor (``torch.Tensor``: gathered channels, e.g. the active prefix of
each segment of a concatenation). ``set_active`` stores them once per architecture,
so a forward pass does no Python bookkeeping beyond the slicing itself.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

Channels = int | torch.Tensor


def take(t: torch.Tensor, dim: int, channels: Channels) -> torch.Tensor:
    """The active channels of ``t`` along ``dim`` (a view for a prefix)."""
    if isinstance(channels, int):
        return t if channels == t.shape[dim] else t.narrow(dim, 0, channels)
    if channels.device != t.device:  # the model moved after set_active
        channels = channels.to(t.device)
    return t.index_select(dim, channels)


def channel_count(channels: Channels) -> int:
    return channels if isinstance(channels, int) else int(channels.numel())


def prefix_or_index(indices: list[int], device: torch.device | None = None) -> Channels:
    """A prefix length when ``indices`` is 0..n-1, else an index tensor on ``device``."""
    if indices == list(range(len(indices))):
        return len(indices)
    return torch.tensor(indices, dtype=torch.long, device=device)


class ElasticConv2d(nn.Conv2d):
    """A conv holding its largest weight; depthwise convs follow their active channels.

    The active kernel is the centred crop of the largest kernel; padding keeps 'same' size.
    """

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> "ElasticConv2d":
        elastic = cls(
            conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
            conv.dilation, conv.groups, conv.bias is not None,
        )
        elastic.load_state_dict(conv.state_dict())
        return elastic

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.kernel_size[0] != self.kernel_size[1] or self.dilation != (1, 1):
            raise ValueError("elastic convolutions need square, undilated kernels")
        self.depthwise = self.groups > 1 and self.groups == self.in_channels == self.out_channels
        if self.groups > 1 and not self.depthwise:
            raise ValueError("elastic convolutions are dense or depthwise")
        self.active_out: Channels = self.out_channels
        self.active_in: Channels = self.in_channels
        self.active_kernel: int = self.kernel_size[0]

    def set_active(self, out: Channels | None = None, in_: Channels | None = None, kernel: int | None = None) -> None:
        """Set what is given; depthwise convs take only ``out`` (their channels)."""
        if out is not None:
            self.active_out = out
            if self.depthwise:
                self.active_in = out
        if in_ is not None and not self.depthwise:
            self.active_in = in_
        if kernel is not None:
            if kernel > self.kernel_size[0] or kernel % 2 == 0:
                raise ValueError(f"kernel {kernel} must be odd and at most {self.kernel_size[0]}")
            self.active_kernel = kernel

    def active_weight(self) -> torch.Tensor:
        w = take(self.weight, 0, self.active_out)
        if not self.depthwise:
            w = take(w, 1, self.active_in)
        full, k = self.kernel_size[0], self.active_kernel
        if k != full:
            start = (full - k) // 2
            w = w[:, :, start : start + k, start : start + k]
        return w

    def active_bias(self) -> torch.Tensor | None:
        return None if self.bias is None else take(self.bias, 0, self.active_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        groups = channel_count(self.active_out) if self.depthwise else 1
        return F.conv2d(x, self.active_weight(), self.active_bias(), self.stride, self.active_kernel // 2, 1, groups)


class ElasticBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over the active channels; in training it updates only their running statistics.

    Prefix channels use views of the running buffers (updated in place); gathered
    channels are normalised with gathered copies that are written back afterwards.
    Resetting the running stats and forwarding batches in train mode (BN
    recalibration, momentum ``None`` for a cumulative average) works as in
    ``nn.BatchNorm2d``.

    With ``sync`` set (``sync_batch_norms``), a training forward that builds a graph in a
    ``torch.distributed`` run of several processes normalises with the batch statistics of all of them
    (an elastic SyncBatchNorm: only the active channels' sums are all-reduced, differentiably); BN
    recalibration (no gradients) and single-process runs stay local.
    """

    sync = False

    @classmethod
    def from_bn(cls, bn: nn.BatchNorm2d) -> "ElasticBatchNorm2d":
        if not (bn.affine and bn.track_running_stats):
            raise ValueError("elastic BatchNorm needs affine parameters and running statistics")
        elastic = cls(bn.num_features, bn.eps, bn.momentum)
        elastic.load_state_dict(bn.state_dict())
        return elastic

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.active: Channels = self.num_features

    def set_active(self, channels: Channels) -> None:
        self.active = channels

    def active_state(self) -> dict[str, torch.Tensor]:
        """The active slices of weight, bias and running statistics (for extraction)."""
        c = self.active
        return {
            "weight": take(self.weight, 0, c),
            "bias": take(self.bias, 0, c),
            "running_mean": take(self.running_mean, 0, c),
            "running_var": take(self.running_var, 0, c),
            "num_batches_tracked": self.num_batches_tracked,
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        factor = 0.0
        if self.training:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
            if self.sync and torch.is_grad_enabled() and _world_size() > 1:
                return self._synced(x, factor)
        c = self.active
        mean, var = take(self.running_mean, 0, c), take(self.running_var, 0, c)
        y = F.batch_norm(x, mean, var, take(self.weight, 0, c), take(self.bias, 0, c), self.training, factor, self.eps)
        if self.training and isinstance(c, torch.Tensor):
            with torch.no_grad():
                c = c.to(mean.device)
                self.running_mean.index_copy_(0, c, mean)
                self.running_var.index_copy_(0, c, var)
        return y

    def _synced(self, x: torch.Tensor, factor: float) -> torch.Tensor:
        """Normalise with the mean and variance over every process's batch; update the running statistics.

        The sums are taken in fp32 whatever the input's dtype (a bf16 activation under autocast would lose
        the variance to cancellation); the output has the input's dtype."""
        import torch.distributed.nn.functional as distributed

        dtype, x = x.dtype, x.float()
        channels = x.shape[1]
        local = torch.cat([x.sum(dim=(0, 2, 3)), (x * x).sum(dim=(0, 2, 3)), x.new_full((1,), x.numel() / channels)])
        total = distributed.all_reduce(local)  # its backward all-reduces the gradients of the sums
        count = total[-1]
        mean = total[:channels] / count
        var = (total[channels:-1] / count - mean * mean).clamp_min(0)
        c = self.active
        scale = take(self.weight, 0, c) * torch.rsqrt(var + self.eps)
        shift = take(self.bias, 0, c) - mean * scale
        with torch.no_grad():
            unbiased = var * (count / (count - 1).clamp_min(1))
            for buffer, value in ((self.running_mean, mean), (self.running_var, unbiased)):
                if isinstance(c, int):
                    buffer[:c].lerp_(value, factor)
                else:
                    c = c.to(buffer.device)
                    buffer.index_copy_(0, c, buffer.index_select(0, c).lerp_(value, factor))
        return (x * scale[None, :, None, None] + shift[None, :, None, None]).to(dtype)


def _world_size() -> int:
    return torch.distributed.get_world_size() if torch.distributed.is_available() and \
        torch.distributed.is_initialized() else 1


def sync_batch_norms(module: nn.Module) -> int:
    """Make every ``ElasticBatchNorm2d`` in ``module`` synchronise its batch statistics; how many."""
    norms = [m for m in module.modules() if isinstance(m, ElasticBatchNorm2d)]
    for norm in norms:
        norm.sync = True
    return len(norms)


def make_elastic(module: nn.Module) -> nn.Module:
    """Replace every ``Conv2d`` / ``BatchNorm2d`` inside ``module`` by its elastic twin (weights kept)."""
    for name, child in module.named_children():
        if isinstance(child, nn.Conv2d) and not isinstance(child, ElasticConv2d):
            setattr(module, name, ElasticConv2d.from_conv(child))
        elif isinstance(child, nn.BatchNorm2d) and not isinstance(child, ElasticBatchNorm2d):
            setattr(module, name, ElasticBatchNorm2d.from_bn(child))
        else:
            make_elastic(child)
    return module
