"""Training with the sandwich rule on Ray Train: the loop of supernet training and of ImageNet pre-training.

Each step (BigNAS, Yu et al. 2020; the core paper §2.1) trains, on one
batch, the max sub-network on the labels, then ``N`` random sub-networks and
the min sub-network on the KL divergence to the max sub-network's detached
soft predictions (plus ``distill_ce_weight`` × the label loss, 0 by default
as in BigNAS), adding up the gradients of the whole sandwich before one
AdamW step. The learning rate follows a linear warm-up then poly decay, per
step (mmseg's ``poly``/``linear`` policy that TopFormer trains with).

Sub-networks are drawn from a generator seeded by (seed, step), so every
worker picks the same ones without talking. The model is wrapped in DDP
(``ray.train.torch.prepare_model``, ``find_unused_parameters`` because a
shallow sub-network leaves whole blocks unused); each backward of the
sandwich adds its gradients locally (``no_sync``) and the last one
all-reduces the sum, once per step. With ``training.sync_bn`` (by default:
on GPU workers, more than one) BatchNorm takes its batch statistics over every
worker's images, as TopFormer's SyncBN, over the active channels of the
current sub-network only (``ElasticBatchNorm2d``; for a few images per GPU;
over gloo on CPUs it costs more than it gives). Forward passes run under
bf16 autocast on GPUs by default (``training.precision``). The model is on
its device before its optimizer is built and a checkpoint loaded
(``trainables.training.training_state``).
The students' losses are averaged by default (``training.student_weight``):
summed, as BigNAS, they outweigh the max sub-network's, and with the batch
statistics of 4 images per worker that cost the max sub-network a quarter of
its mIoU (``benchmarks/sandwich_recipe.py``, BENCHMARKS.md).

What is trained is a ``SandwichTask``: the supernet on segmentation
(``trainables.supernet_training``) or its token pyramid with a classifier on
ImageNet (``trainables.pretraining``). The weights start from the config's
``init`` (``trainables.initial_weights``). Every epoch rank 0 writes a
checkpoint ``checkpoint_epoch_NNNN/`` of the run directory: the task's state
file (model, optimizer, scheduler) and ``meta.json`` (epoch, step,
per-epoch metrics, the space and class count that rebuild the model, the
config, where the weights started, the input normalisation). All workers
report the epoch's losses and the validation score of the max and min
sub-networks (BN recalibrated; the validation images sharded across workers).
"""

from __future__ import annotations

import contextlib
import random
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

from raynas.devices import autocast, synchronize, to_device
from raynas.progress import Progress, ProgressBoard, WorkerProgress, follow, render_training
from search_spaces.elastic import sync_batch_norms
from trainables.checkpoints import CHECKPOINT_PREFIX, resumed_checkpoint, write_checkpoint
from trainables.initial_weights import apply_init, describe
from trainables.training import batch_loader, cycle, distillation_loss, training_state


def sandwich(space, step: int, seed: int, random_subnets: int) -> list[dict]:
    """The architectures of one step: max, ``random_subnets`` uniform samples, min.

    Seeded by ``(seed, step)`` so that every worker draws the same ones.
    """
    rng = random.Random(seed * 1_000_003 + step)
    return [space.max_arch(), *(space.sample(rng) for _ in range(random_subnets)), space.min_arch()]


def sandwich_step(model: torch.nn.Module, net, archs: list[dict], image: torch.Tensor, label: torch.Tensor,
                  label_loss: Callable, training) -> tuple[torch.Tensor, torch.Tensor]:
    """The forward and backward passes of one step (no optimizer step); ``model`` is ``net`` or its DDP wrapper.

    ``archs[0]`` learns from the labels; each other one (a student) from ``archs[0]``'s detached
    predictions (``training.distill``; else from the labels) plus ``training.distill_ce_weight`` × the label
    loss, its loss scaled by ``training.student_weight`` (None: 1 / the number of students, their mean).
    Forward passes run at ``training.precision`` (``raynas.devices.autocast``), losses in fp32. Returns
    ``(label loss of archs[0], mean student loss)`` as detached tensors: no host sync within a step."""
    teacher_probs, loss_max = None, None
    loss_students = torch.zeros((), device=image.device)
    weight = training.student_weight if training.student_weight is not None else 1 / max(len(archs) - 1, 1)
    for i, arch in enumerate(archs):
        net.set_active(arch)
        # Gradients add up locally; DDP all-reduces them once, at the last backward.
        with model.no_sync() if i < len(archs) - 1 and model is not net else contextlib.nullcontext():
            with autocast(image.device, training.precision):
                logits = model(image)
            logits = logits.float()
            if i == 0:
                loss = label_loss(logits, label)
                teacher_probs = torch.softmax(logits.detach(), dim=1)
                loss_max = loss.detach()
            else:
                loss = distillation_loss(logits, teacher_probs) if training.distill else label_loss(logits, label)
                loss_students += loss.detach() / (len(archs) - 1)
                if training.distill_ce_weight:
                    loss = loss + training.distill_ce_weight * label_loss(logits, label)
                loss = loss * weight
            loss.backward()
    return loss_max, loss_students


def uses_sync_bn(training, scaling, world: int) -> bool:
    """Whether BatchNorm syncs its batch statistics over the workers: ``training.sync_bn``, or (None) when
    there are several workers on GPUs (a few images each; NCCL makes it cheap, gloo on CPUs does not)."""
    wanted = scaling.use_gpu if training.sync_bn is None else training.sync_bn
    return wanted and world > 1


class SandwichTask:
    """What a sandwich-rule run trains, built in each worker as ``Task(cfg, train_set)``.

    A subclass sets ``CONFIG`` (a ``raynas.training_config.SandwichRunConfig``: ``space``,
    ``space_options``, ``init``, ``data`` with ``build()`` → (train, calibration, val), ``training``,
    ``evaluation``, ``scaling``, ``run``),
    ``STATE_FILE`` (the checkpoint's state file) and ``SCORE`` (the per-epoch validation score of the max
    and min sub-networks is reported as ``val_<SCORE>_max``/``_min``), and provides the methods below.
    """

    CONFIG: type
    STATE_FILE: str
    SCORE: str

    def __init__(self, cfg, train_set):
        self.cfg, self.train_set = cfg, train_set

    def build(self, space) -> tuple[torch.nn.Module, torch.nn.Module]:
        """``(model with set_active, the supernet inside it that init fills)``."""
        raise NotImplementedError

    def label_loss(self, logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def score(self, net, arch: dict, calibration: list, val: list, device) -> float:
        """The validation score of ``arch`` with inherited weights, BN recalibrated, summed over workers."""
        raise NotImplementedError

    def meta(self) -> dict[str, Any]:
        """What the checkpoint's ``meta.json`` holds beyond the common fields."""
        return {}

    @staticmethod
    def data_lines(train_set, val_set) -> list[str]:
        """What the driver says about the data before training starts."""
        return [f"{train_set.describe()}; {val_set.describe()}"]

    @staticmethod
    def finished(run_dir: Path) -> None:
        """Called on the driver after a run ended without error (e.g. to write a summary)."""


def sandwich_loop(config: dict, task_class: type[SandwichTask]) -> None:
    """Ray Train worker loop; ``config``: the task's ``CONFIG.dump()``, ``resume_from``, ``progress`` (a board)."""
    import ray.train
    import ray.train.torch
    from torch.utils.data import DistributedSampler

    from raynas.data.transforms import INPUT_MEAN, INPUT_STD
    from raynas.errors import UserError
    from search_spaces import get_space
    from trainables.recalibration import evaluation_batches

    cfg = task_class.CONFIG.load({k: v for k, v in config.items() if k not in ("resume_from", "progress")})
    training = cfg.training
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.manual_seed(training.seed + rank)
    device = ray.train.torch.get_device()

    train_set, calibration_set, val_set = cfg.data.build()
    task = task_class(cfg, train_set)
    sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True,
                                 seed=training.seed, drop_last=True)
    loader = batch_loader(train_set, training.batch_size, cfg.data.loader_workers, sampler=sampler)
    if len(loader) == 0:
        raise UserError(f"training.batch_size: {training.batch_size} images per worker × {world} workers "
                        f"is more than the {len(train_set)} training images")
    steps_per_epoch = training.steps_per_epoch or len(loader)
    total_steps = training.epochs * steps_per_epoch

    space = get_space(cfg.space, **cfg.space_options)
    model, supernet = task.build(space)
    init = apply_init(supernet, cfg.init, space)
    with resumed_checkpoint(config) as checkpoint:
        optimizer, scheduler, saved_meta = training_state(model, device, training, total_steps, checkpoint,
                                                          task.STATE_FILE)
    start_epoch, step, history = 0, 0, []
    if saved_meta is not None:  # checkpoints older than the init setting started from random weights
        start_epoch, step, history = saved_meta["epoch"], saved_meta["step"], saved_meta["history"]
        init = saved_meta.get("init") or apply_init(supernet, "random", space)

    ddp = ray.train.torch.prepare_model(model, parallel_strategy_kwargs={"find_unused_parameters": True})
    net = ddp.module if isinstance(ddp, torch.nn.parallel.DistributedDataParallel) else ddp
    if uses_sync_bn(training, cfg.scaling, world):  # a few images per worker make noisy batch statistics
        sync_batch_norms(net)

    progress = WorkerProgress(config.get("progress"), rank, training.epochs, steps_per_epoch)
    calibration_batches, val_batches = evaluation_batches(calibration_set, val_set, cfg.evaluation, rank, world)

    for epoch in range(start_epoch, training.epochs):
        ddp.train()
        sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss_max, loss_distill, CPU seconds
        started, cpu_started, images = time.perf_counter(), time.process_time(), 0
        batches = cycle(loader, sampler, epoch)
        progress.start_epoch()
        for done in range(1, steps_per_epoch + 1):
            image, label = to_device(next(batches), device)
            optimizer.zero_grad(set_to_none=True)
            archs = sandwich(space, step, training.seed, training.random_subnets)
            loss_max, loss_distill = sandwich_step(ddp, net, archs, image, label, task.label_loss, training)
            sums[0] += loss_max
            sums[1] += loss_distill
            lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            scheduler.step()
            step += 1
            images += image.shape[0] * world
            progress.step(epoch + 1, done, image.shape[0] * world)
        synchronize(device)
        train_seconds = time.perf_counter() - started
        sums[2] = time.process_time() - cpu_started
        if world > 1:
            torch.distributed.all_reduce(sums)
            sums[:2] /= world

        scores = {f"val_{task.SCORE}_{which}": task.score(net, arch, calibration_batches, val_batches, device)
                  for which, arch in (("max", space.max_arch()), ("min", space.min_arch()))}
        metrics = {
            "epoch": epoch + 1,
            "step": step,
            "loss_max": float(sums[0]) / steps_per_epoch,
            "loss_distill": float(sums[1]) / steps_per_epoch,
            "lr": lr,
            "images_per_s": images / train_seconds,
            "train_seconds": train_seconds,
            "cpu_seconds": float(sums[2]),  # CPU time of the training loop, all workers together
            **scores,
        }
        history.append(metrics)
        meta = {"space": cfg.space, "space_options": dict(cfg.space_options), "epoch": epoch + 1, "step": step,
                "history": history, "config": cfg.dump(), "init": init,
                "normalization": {"mean": list(INPUT_MEAN), "std": list(INPUT_STD)}, **task.meta()}
        with tempfile.TemporaryDirectory() as directory:
            saved = None
            if rank == 0:
                write_checkpoint(directory, {"model": net.state_dict(), "optimizer": optimizer.state_dict(),
                                             "scheduler": scheduler.state_dict()}, meta, task.STATE_FILE)
                saved = ray.train.Checkpoint.from_directory(directory)
            progress.epoch(metrics)
            ray.train.report(metrics, checkpoint=saved, checkpoint_dir_name=f"{CHECKPOINT_PREFIX}{epoch + 1:04d}")


class SandwichRun:
    """A validated sandwich-rule run before anything starts: its config loaded, its data listed and its
    ``init`` checked (each a clear error naming the setting), then ``run(progress)`` on a ``TorchTrainer``.

    ``train_loop``: the module-level worker function that calls ``sandwich_loop`` with ``task_class``;
    ``resume``: a checkpoint (folder or run directory) to start from. A run whose ``run.storage_path``/
    ``run.name`` already holds checkpoints resumes from its latest one (Ray Train restores the run).
    """

    def __init__(self, task_class: type[SandwichTask], train_loop: Callable[[dict], None],
                 config: Any, resume: str | Path | None = None):
        from search_spaces import get_space
        from trainables.checkpoints import checkpoint_dir
        from trainables.initial_weights import check_init

        self.task_class, self.train_loop = task_class, train_loop
        self.cfg = task_class.CONFIG.load(config)
        train_set, _, val_set = self.cfg.data.build()  # a missing or malformed folder fails here
        self.init = check_init(self.cfg.init, get_space(self.cfg.space, **self.cfg.space_options))
        self.loop_config = self.cfg.dump()
        if resume is not None:
            self.loop_config["resume_from"] = str(checkpoint_dir(resume, task_class.STATE_FILE))
        self.run_dir = Path(self.cfg.run.storage_path) / self.cfg.run.name
        self.lines = task_class.data_lines(train_set, val_set) + [f"weights start from {describe(self.init)}"]

    def run(self, progress: Progress):
        """Train, with the data and init lines first, a line per epoch and a live bar within it; the
        ``ray.train.Result``."""
        import ray.train
        from ray.train.torch import TorchTrainer

        for line in self.lines:
            progress.line(line)
        board = ProgressBoard.start()
        run = self.cfg.run
        torch_config, scaling_config = self.cfg.scaling.trainer_configs()
        trainer = TorchTrainer(
            self.train_loop,
            train_loop_config=self.loop_config | {"progress": board},
            torch_config=torch_config,
            scaling_config=scaling_config,
            run_config=ray.train.RunConfig(storage_path=run.storage_path, name=run.name),
        )
        with follow(board, progress, render_training):
            result = trainer.fit()
        if result.error is None:
            self.task_class.finished(self.run_dir)
        return result

    def run_command(self, command: str, address: str | None, verbose: bool, done: str) -> None:
        """What ``raynas COMMAND`` does with the run: join the cluster (``--address``), keep Ray's own logs in
        the run directory's ``raynas.log`` (unless ``--verbose``), train with progress lines prefixed by
        ``command``, then say ``done`` (``{checkpoint}``: the last checkpoint); a failed run raises."""
        from raynas.cluster import connect
        from raynas.progress import quiet_ray_logs

        connect(address, verbose)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        quiet_ray_logs(str(self.run_dir / "raynas.log"), verbose)
        progress = Progress(prefix=f"{command}: ")
        result = self.run(progress)
        if result.error is not None:
            raise RuntimeError(f"{command} failed: {result.error}")
        progress.line(done.format(checkpoint=result.checkpoint.path))
