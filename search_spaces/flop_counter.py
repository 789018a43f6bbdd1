"""Count the parameters and FLOPs of a real model by running it once.

Every convolution, linear layer and matrix product the model's modules call is
intercepted (a ``TorchFunctionMode``), so the count is what actually executes,
including functional calls such as attention's ``q @ k``; it is the independent
check of the analytic cost models.

Conventions:

- ``"macs"`` (default): multiply-accumulates of convolutions, linear layers and
  matrix products; biases, normalisation, activations, pooling and resizing
  count nothing. The unit the analytic cost models report.
- ``"mmcv"``: what mmcv's ``get_model_complexity_info`` (mmsegmentation's
  ``tools/get_flops.py``, used by TopFormer) reports for a network whose matrix
  products, pooling and resizing are functional calls: convolution and linear
  MACs plus one per output element for a bias, two per element for an affine
  BatchNorm, one per element for ReLU / ReLU6 / hard-sigmoid.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from raynas.errors import check_choice
from search_spaces.base import FLOP_CONVENTIONS

_MATMULS = {torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.bmm}  # `a @ b` arrives as Tensor.matmul
_ACTIVATIONS = {F.relu, F.relu6, F.hardsigmoid, torch.relu}


class _Counter(TorchFunctionMode):
    def __init__(self, convention: str):
        super().__init__()
        self.convention = convention
        self.flops = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        mmcv = self.convention == "mmcv"
        if func is F.conv2d:
            weight = args[1] if len(args) > 1 else kwargs["weight"]
            self.flops += out.numel() * weight[0].numel()
            if mmcv and (args[2] if len(args) > 2 else kwargs.get("bias")) is not None:
                self.flops += out.numel()
        elif func is F.linear:
            weight = args[1] if len(args) > 1 else kwargs["weight"]
            self.flops += out.numel() * weight.shape[-1]
            if mmcv and (args[2] if len(args) > 2 else kwargs.get("bias")) is not None:
                self.flops += out.numel()
        elif func in _MATMULS and not mmcv:
            self.flops += out.numel() * args[0].shape[-1]
        elif mmcv and func is F.batch_norm:
            affine = (args[3] if len(args) > 3 else kwargs.get("weight")) is not None
            self.flops += out.numel() * (2 if affine else 1)
        elif mmcv and func in _ACTIVATIONS:
            self.flops += out.numel()
        return out


def count(
    model: nn.Module,
    resolution: int | tuple[int, int] = 512,
    in_channels: int = 3,
    convention: str = "macs",
) -> dict[str, int]:
    """``{"params", "flops"}`` of ``model`` on one ``in_channels``×H×W input, in eval mode.

    ``params`` counts every parameter of ``model`` (for a supernet: its largest
    weights; count an extracted sub-network for the active one).
    """
    check_choice("convention", convention, FLOP_CONVENTIONS)
    h, w = (resolution, resolution) if isinstance(resolution, int) else resolution
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    counter = _Counter(convention)
    try:
        with torch.no_grad(), counter:
            model(torch.zeros(1, in_channels, h, w, device=device))
    finally:
        model.train(was_training)
    return {"params": sum(p.numel() for p in model.parameters()), "flops": counter.flops}
