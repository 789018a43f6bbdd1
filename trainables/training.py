"""Pieces every training loop here shares: AdamW with its parameter groups, the warm-up + poly schedule, the
order in which a worker places, builds and resumes them, distillation, loaders and batches without end."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F


def distillation_loss(student_logits: torch.Tensor, teacher_probs: torch.Tensor) -> torch.Tensor:
    """KL(teacher ‖ student) over the classes (dim 1), averaged over every pixel (or image)."""
    log_student = F.log_softmax(student_logits, dim=1)
    kl = F.kl_div(log_student, teacher_probs, reduction="none").sum(dim=1)
    return kl.mean()


def warmup_poly(step: int, total_steps: int, warmup_steps: int, warmup_ratio: float, power: float) -> float:
    """Learning-rate factor: poly decay ``(1 - step/total)^power`` times a linear warm-up.

    During warm-up the factor rises linearly from ``warmup_ratio`` to 1
    (mmseg's ``warmup='linear'``, which TopFormer uses with ratio 1e-6).
    """
    factor = (1 - min(step, total_steps) / total_steps) ** power
    if step < warmup_steps:
        factor *= 1 - (1 - step / warmup_steps) * (1 - warmup_ratio)
    return factor


def optimizer_and_schedule(model: torch.nn.Module, training, total_steps: int):
    """``(optimizer, scheduler)``: ``make_optimizer`` with the ``warmup_poly`` schedule over ``total_steps``
    (``training``: a section with the optimiser and schedule fields, such as the supernet's or a recipe)."""
    optimizer = make_optimizer(model, training)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_poly(
        s, total_steps, training.warmup_steps, training.warmup_ratio, training.poly_power))
    return optimizer, scheduler


def training_state(model: torch.nn.Module, place, training, total_steps: int, checkpoint: Path | None,
                   state_file: str):
    """``(optimizer, scheduler, the checkpoint's meta or None)``, in the one order that resumes on a GPU.

    ``model`` is moved to ``place`` (a device; a dtype in tests) first, then AdamW and its schedule are
    built over its parameters, then ``checkpoint`` (a folder holding ``state_file``, or None to start fresh)
    is loaded into all three: the optimizer's saved moments land where the parameters are. (Built or
    loaded before the move, they would stay on the CPU and the first step on the GPU would fail.)"""
    from trainables.checkpoints import load_training_state

    model.to(place)
    optimizer, scheduler = optimizer_and_schedule(model, training, total_steps)
    meta = None if checkpoint is None else load_training_state(checkpoint, model, optimizer, scheduler, state_file)
    return optimizer, scheduler, meta


def make_optimizer(model: torch.nn.Module, training) -> torch.optim.AdamW:
    """AdamW; norm weights and biases without weight decay, the head at ``head_lr_mult`` × lr."""
    groups: dict[tuple[bool, bool], list] = {}
    for name, param in model.named_parameters():
        no_decay = param.ndim <= 1
        in_head = name.startswith("head.")
        groups.setdefault((no_decay, in_head), []).append(param)
    param_groups = [
        {"params": params, "weight_decay": 0.0 if no_decay else training.weight_decay,
         "lr": training.lr * (training.head_lr_mult if in_head else 1.0)}
        for (no_decay, in_head), params in sorted(groups.items())
    ]
    return torch.optim.AdamW(param_groups, lr=training.lr, betas=tuple(training.betas))


def cycle(loader, sampler, epoch: int):
    """Batches of ``loader`` without end; each new pass reshuffles (``sampler`` epoch advances)."""
    passes = 0
    while True:
        sampler.set_epoch(epoch * 1000 + passes)
        yield from loader
        passes += 1


def batch_loader(dataset, batch_size: int, workers: int, sampler=None, shuffle: bool = False):
    """A ``DataLoader`` of whole batches with ``workers`` processes kept from pass to pass; batches in pinned
    memory where CUDA is used, so their copies to the GPU overlap compute (``raynas.devices.to_device``)."""
    from torch.utils.data import DataLoader

    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=shuffle, drop_last=True,
                      num_workers=workers, persistent_workers=workers > 0, pin_memory=torch.cuda.is_available())
