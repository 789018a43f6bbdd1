"""Supernet training on Ray Train: the sandwich rule with inplace distillation.

Each step (BigNAS, Yu et al. 2020; the core paper §2.1) trains, on one
batch, the max sub-network on the labels (cross-entropy, ignore index), then
``N`` random sub-networks and the min sub-network on the pixel-wise KL
divergence to the max sub-network's detached soft predictions (plus
``distill_ce_weight`` × cross-entropy, 0 by default as in BigNAS), adding
up the gradients of the whole sandwich before one AdamW step. The learning
rate follows a linear warm-up then poly decay, per step (mmseg's
``poly``/``linear`` policy that TopFormer trains with).

Sub-networks are drawn from a generator seeded by (seed, step), so every
worker picks the same ones without talking. The model is wrapped in DDP
(``ray.train.torch.prepare_model``, ``find_unused_parameters`` because a
shallow sub-network leaves whole blocks unused); each backward of the
sandwich adds its gradients locally (``no_sync``) and the last one
all-reduces the sum, once per step.

Every epoch rank 0 writes a checkpoint into ``checkpoint_epoch_NNNN`` of
the run directory: ``supernet.pt`` (model, optimizer, scheduler) and
``meta.json`` (epoch, step, per-epoch metrics, the space and class count
that rebuild the supernet, the training config). All workers report the
epoch's losses and the validation mIoU of the max and min sub-networks (BN
recalibrated; the validation images are sharded across workers).

>>> from raynas.training_config import SupernetTrainingConfig
>>> result = train_supernet(SupernetTrainingConfig.from_yaml("configs/quickstart_cpu.yaml"))  # doctest: +SKIP
>>> supernet, meta = load_supernet(result.checkpoint.path)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import random
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F

from raynas.errors import UserError
from raynas.progress import Progress, ProgressBoard, WorkerProgress, follow, render_training
from raynas.training_config import SupernetTrainingConfig
from trainables.checkpoints import CHECKPOINT_PREFIX, checkpoint_dir, resume_training, write_checkpoint
from trainables.recalibration import evaluate_arch, evaluation_batches

# --- pieces of a step ---------------------------------------------------------------


def sandwich(space, step: int, seed: int, random_subnets: int) -> list[dict]:
    """The architectures of one step: max, ``random_subnets`` uniform samples, min.

    Seeded by ``(seed, step)`` so that every worker draws the same ones.
    """
    rng = random.Random(seed * 1_000_003 + step)
    return [space.max_arch(), *(space.sample(rng) for _ in range(random_subnets)), space.min_arch()]


def distillation_loss(student_logits: torch.Tensor, teacher_probs: torch.Tensor) -> torch.Tensor:
    """Pixel-wise KL(teacher ‖ student), summed over classes, averaged over all pixels."""
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


# --- the loop ----------------------------------------------------------------------


def train_loop_per_worker(config: dict) -> None:
    """Ray Train worker loop; ``config``: ``SupernetTrainingConfig.dump()``, ``resume_from``, ``progress`` (a board)."""
    import ray.train
    import ray.train.torch
    from torch.utils.data import DataLoader, DistributedSampler

    from search_spaces import get_space

    cfg = SupernetTrainingConfig.load({k: v for k, v in config.items() if k not in ("resume_from", "progress")})
    training = cfg.training
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.manual_seed(training.seed + rank)
    device = ray.train.torch.get_device()

    train_set, calibration_set, val_set = cfg.data.build()
    num_classes, ignore_index = train_set.num_classes, train_set.ignore_index
    sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True,
                                 seed=training.seed, drop_last=True)
    loader = DataLoader(train_set, batch_size=training.batch_size, sampler=sampler, drop_last=True,
                        num_workers=cfg.data.loader_workers, persistent_workers=cfg.data.loader_workers > 0)
    if len(loader) == 0:
        raise UserError(f"training.batch_size: {training.batch_size} images per worker × {world} workers "
                        f"is more than the {len(train_set)} training images")
    steps_per_epoch = training.steps_per_epoch or len(loader)
    total_steps = training.epochs * steps_per_epoch

    space = get_space(cfg.space, **cfg.space_options)
    supernet = space.build_supernet(num_classes)
    optimizer, scheduler = optimizer_and_schedule(supernet, training, total_steps)
    start_epoch, step, history = 0, 0, []
    saved_meta = resume_training(config, supernet, optimizer, scheduler)
    if saved_meta is not None:
        start_epoch, step, history = saved_meta["epoch"], saved_meta["step"], saved_meta["history"]

    model = ray.train.torch.prepare_model(supernet, parallel_strategy_kwargs={"find_unused_parameters": True})
    net = model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model

    progress = WorkerProgress(config.get("progress"), rank, training.epochs, steps_per_epoch)
    evaluation = cfg.evaluation
    calibration_batches, val_batches = evaluation_batches(calibration_set, val_set, evaluation, rank, world)

    for epoch in range(start_epoch, training.epochs):
        model.train()
        sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss_max, loss_distill, CPU seconds
        started, cpu_started, images = time.perf_counter(), time.process_time(), 0
        batches = cycle(loader, sampler, epoch)
        progress.start_epoch()
        for done in range(1, steps_per_epoch + 1):
            image, label = next(batches)
            image, label = image.to(device), label.to(device)
            optimizer.zero_grad(set_to_none=True)
            archs = sandwich(space, step, training.seed, training.random_subnets)
            teacher_probs = None
            for i, arch in enumerate(archs):
                net.set_active(arch)
                # Gradients add up locally; DDP all-reduces them once, at the last backward.
                with model.no_sync() if i < len(archs) - 1 and model is not net else contextlib.nullcontext():
                    logits = model(image)
                    if i == 0:
                        loss = F.cross_entropy(logits, label, ignore_index=ignore_index)
                        teacher_probs = F.softmax(logits.detach(), dim=1)
                        sums[0] += loss.item()
                    else:
                        loss = distillation_loss(logits, teacher_probs)
                        sums[1] += loss.item() / (len(archs) - 1)
                        if training.distill_ce_weight:
                            loss = loss + training.distill_ce_weight * F.cross_entropy(
                                logits, label, ignore_index=ignore_index)
                    loss.backward()
            lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            scheduler.step()
            step += 1
            images += image.shape[0] * world
            progress.step(epoch + 1, done, image.shape[0] * world)
        train_seconds = time.perf_counter() - started
        sums[2] = time.process_time() - cpu_started
        if world > 1:
            torch.distributed.all_reduce(sums)
            sums[:2] /= world

        val = {}
        for which, arch in (("max", space.max_arch()), ("min", space.min_arch())):
            metric, _, _ = evaluate_arch(net, arch, calibration_batches, val_batches, num_classes, ignore_index,
                                         device)
            metric.all_reduce()
            val[f"val_miou_{which}"] = metric.compute()["miou"]
        metrics = {
            "epoch": epoch + 1,
            "step": step,
            "loss_max": float(sums[0]) / steps_per_epoch,
            "loss_distill": float(sums[1]) / steps_per_epoch,
            "lr": lr,
            "images_per_s": images / train_seconds,
            "train_seconds": train_seconds,
            "cpu_seconds": float(sums[2]),  # CPU time of the training loop, all workers together
            **val,
        }
        history.append(metrics)
        meta = {"space": cfg.space, "space_options": dict(cfg.space_options), "num_classes": num_classes,
                "ignore_index": ignore_index, "epoch": epoch + 1, "step": step, "history": history,
                "config": cfg.dump(), "teacher": True}  # the sandwich rule trains the max sub-network itself
        with tempfile.TemporaryDirectory() as directory:
            saved = None
            if rank == 0:
                write_checkpoint(directory, {"model": net.state_dict(), "optimizer": optimizer.state_dict(),
                                             "scheduler": scheduler.state_dict()}, meta)
                saved = ray.train.Checkpoint.from_directory(directory)
            progress.epoch(metrics)
            ray.train.report(metrics, checkpoint=saved, checkpoint_dir_name=f"{CHECKPOINT_PREFIX}{epoch + 1:04d}")


def cycle(loader, sampler, epoch: int):
    """Batches of ``loader`` without end; each new pass reshuffles (``sampler`` epoch advances)."""
    passes = 0
    while True:
        sampler.set_epoch(epoch * 1000 + passes)
        yield from loader
        passes += 1


# --- driver-side API -------------------------------------------------------------------


def train_supernet(config: SupernetTrainingConfig | Mapping[str, Any], resume: str | Path | None = None,
                   progress: Progress | None = None):
    """Train the supernet with a ``TorchTrainer``; returns the ``ray.train.Result``.

    A run whose ``run.storage_path``/``run.name`` already holds checkpoints
    resumes from its latest one (Ray Train restores the run); ``resume``
    names another checkpoint folder (or run directory) to start from.
    ``progress`` shows a line per epoch and a live bar within it.
    """
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    cfg = SupernetTrainingConfig.load(config)
    train_set, _, val_set = cfg.data.build()  # a missing or malformed data folder fails here, as one clear error
    progress = progress or Progress(prefix="train-supernet: ")
    if train_set.is_synthetic:
        progress.line("WARNING: NO DATA SET GIVEN, training on generated shapes, not real images")
    progress.line(f"{train_set.describe()}; {val_set.describe()}")
    board = ProgressBoard.start()
    loop_config = cfg.dump() | {"progress": board}
    if resume is not None:
        loop_config["resume_from"] = str(checkpoint_dir(resume))
    scaling = cfg.scaling
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_config,
        torch_config=TorchConfig(backend="nccl" if scaling.use_gpu else "gloo"),
        scaling_config=ray.train.ScalingConfig(num_workers=scaling.num_workers, use_gpu=scaling.use_gpu,
                                               resources_per_worker=scaling.resources_per_worker),
        run_config=ray.train.RunConfig(storage_path=cfg.run.storage_path, name=cfg.run.name),
    )
    with follow(board, progress, render_training):
        return trainer.fit()


__all__ = ["train_loop_per_worker", "train_supernet", "sandwich", "distillation_loss", "warmup_poly",
           "optimizer_and_schedule", "make_optimizer", "cycle"]
