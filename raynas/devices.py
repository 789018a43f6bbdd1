"""Where a process computes and at which precision: the one home of device and autocast choices.

A Ray task or Tune trial sees a GPU only when it asked for one (Ray then sets
``CUDA_VISIBLE_DEVICES`` and ``ray.get_gpu_ids()`` names it), so ``auto``
means "the GPU this process was given, else the CPU". ``precision`` ``auto``
is bf16 autocast on a GPU (no loss scaling needed) and fp32 on a CPU, where
bf16 is slower on most CPUs; ``bf16`` forces it on either.

>>> torch_device("cpu"), autocast_dtype("cpu", "auto"), autocast_dtype("cuda", "auto")
('cpu', None, torch.bfloat16)
"""

from __future__ import annotations

import contextlib

import torch

from raynas.errors import UserError
from raynas.settings import Choice

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")
Device = Choice(*DEVICES)
Precision = Choice(*PRECISIONS)


def ray_gpu_ids() -> list:
    """The GPUs Ray gave this process (none outside Ray)."""
    import ray

    return ray.get_gpu_ids() if ray.is_initialized() else []


def torch_device(requested: str = "auto", field: str = "device") -> str:
    """``cuda`` or ``cpu`` for a setting ``field`` of value ``requested`` (one of ``DEVICES``).

    ``auto``: ``cuda`` when CUDA works here and Ray gave this process a GPU, else ``cpu``. ``cuda`` where
    this process sees no GPU is a ``UserError`` saying why (no CUDA build, no device, no GPU asked of Ray)."""
    if requested not in DEVICES:
        raise UserError(f"{field}: {requested!r} is not allowed; allowed values: {list(DEVICES)}")
    if requested == "cpu":
        return "cpu"
    usable = torch.cuda.is_available()
    if requested == "auto":
        return "cuda" if usable and ray_gpu_ids() else "cpu"
    if not usable:
        why = (f"this torch ({torch.__version__}) is a CPU build" if torch.version.cuda is None
               else "no GPU is visible to this process (a trial sees one only when its resources ask for GPU)")
        raise UserError(f"{field}: 'cuda' but {why}; use 'auto' (the GPU a trial was given, else the CPU) or 'cpu'")
    return "cuda"


def require_cuda() -> None:
    """Exit with a message naming what is missing unless torch can compute on a GPU here (a GPU node's setup
    runs this last: a CPU build of torch or a missing driver stops the setup, not the first training step)."""
    import sys

    if torch.version.cuda is None:
        sys.exit(f"raynas: torch {torch.__version__} here is a CPU build; install the CUDA build "
                 f"(pip install torch=={torch.__version__.split('+')[0]} --index-url https://pypi.org/simple)")
    if not torch.cuda.is_available():
        sys.exit(f"raynas: torch {torch.__version__} (CUDA {torch.version.cuda}) finds no usable GPU: "
                 f"check the NVIDIA driver (nvidia-smi) and that it supports CUDA {torch.version.cuda}")
    torch.ones(1, device="cuda").add_(1)  # a kernel runs
    print(f"raynas: CUDA {torch.version.cuda} with {torch.cuda.device_count()} GPU(s): {torch.cuda.get_device_name(0)}")


def autocast_dtype(device: torch.device | str, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype of ``precision`` on ``device`` (None: fp32, no autocast)."""
    if precision not in PRECISIONS:
        raise UserError(f"precision: {precision!r} is not allowed; allowed values: {list(PRECISIONS)}")
    kind = torch.device(device).type
    if precision == "bf16" or (precision == "auto" and kind == "cuda"):
        return torch.bfloat16
    return None


def autocast(device: torch.device | str, precision: str = "auto"):
    """A context in which forward passes run at ``precision`` on ``device`` (``torch.autocast`` or nothing)."""
    dtype = autocast_dtype(device, precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def synchronize(device: torch.device | str) -> None:
    """Wait for the work queued on ``device`` (a GPU runs ahead of the host; timings must not)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def to_device(tensors, device: torch.device | str) -> tuple:
    """Each of ``tensors`` on ``device``; from pinned memory the copies overlap compute (``non_blocking``)."""
    return tuple(t.to(device, non_blocking=True) for t in tensors)
