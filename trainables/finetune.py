"""From a sweep to a model you can ship: fine-tune the winners on Ray Train, export and measure them.

``finetune(sweep_dir, settings)`` takes the best ``top_k`` feasible
sub-networks of a supernet sweep (or up to ``top_k`` points of its Pareto
front), extracts each from the supernet with its inherited weights (or
builds it fresh, ``from_scratch``) and trains it with a ``TorchTrainer``:
several workers (DDP), cross-entropy plus, with ``distill``, the pixel-wise
KL divergence to the supernet's largest sub-network (frozen, its BN
recalibrated as when the sweep scores a sub-network; a sandwich-rule
supernet's only: the weights of a search that trains hold no trained
largest sub-network, so its models train without), AdamW with
warm-up and poly decay, a checkpoint and a validation (mIoU on the whole
validation split) every epoch, resumed from its latest checkpoint when run
again. With a ``search`` section Ray Tune searches the recipe (learning
rate, weight decay, epochs, distillation) with ASHA, each Tune trial one
Ray Train run, and the best trial's model is kept.

Each model gets a folder ``<out>/<arch_id>/`` with ``model.onnx`` (one
file, any batch, height and width, its ``Preprocessing`` in its metadata),
``model.pt`` (the static module's weights) and ``metrics.json``: val mIoU
and per-class IoU measured by ONNX Runtime on the shipped file (PyTorch's
beside them), the preprocessing, the inherited-weight mIoU it started from,
FLOPs and params at the deployment resolution, latency measured by the
latency service at the deployment and at the trained size, the architecture
(with the space's options and the class count) and the recipe;
``load_model(folder)`` rebuilds the module from them. Validation chose the
architecture and the recipe, so where the data set has a labelled test split
(CamVid) the final model is also scored once on all of it: ``test_miou``,
the number to quote.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, StrictBool

from raynas.cluster import DRIVER_TRIAL_RESOURCES, QUIET_TUNE, tune_environment
from raynas.devices import Precision, autocast, synchronize, to_device
from raynas.errors import UserError
from raynas.latency.onnx_timing import LatencySettings
from raynas.progress import Progress, ProgressBoard, WorkerProgress, follow, render_training
from raynas.settings import Choice, Fraction, NonNegative, Positive, Section, Whole
from raynas.sweep_folder import SweepFolder
from raynas.training_config import DataSection, EvaluationSection, ScalingSection

STATE_FILE = "finetune.pt"
MODEL_WEIGHTS = "model.pt"
MODEL_ONNX = "model.onnx"
MODEL_EXAMPLES = "examples.png"  # test images: image, ground truth, prediction
METRICS = "metrics.json"


class Recipe(Section):
    """How one sub-network is fine-tuned (the values Tune searches when asked to)."""

    SECTION = "finetune.recipe"

    epochs: Whole(1) = 10
    steps_per_epoch: Whole(1) | None = None  # None: one pass over the training images per epoch
    batch_size: Whole(1) = 8  # images per worker per step
    lr: Positive = 1e-3
    weight_decay: NonNegative = 0.01
    betas: tuple[Fraction, Fraction] = (0.9, 0.999)
    head_lr_mult: Positive = 1.0
    warmup_steps: Whole(0) = 0
    warmup_ratio: Fraction = 1e-6
    poly_power: Positive = 1.0
    distill: StrictBool = True  # + KL to the supernet's largest sub-network (frozen)
    distill_weight: NonNegative = 1.0
    precision: Precision = "auto"  # of the forward passes: bf16 autocast on GPU workers, fp32 on CPU ones
    # of the cross-entropy (see supernet training's); None: as the supernet was trained
    class_weights: Choice(None, "none", "median_frequency") = None
    seed: Whole(0) = 0


class RecipeSearch(Section):
    """Ray Tune over the recipe: ``num_samples`` recipes (learning rate and weight decay log-uniform in
    their ranges, epochs and distillation from their lists), stopped early by ASHA on val mIoU."""

    SECTION = "finetune.search"

    num_samples: Whole(1) = 8
    lr: tuple[Positive, Positive] = (1e-4, 1e-2)
    weight_decay: tuple[Positive, Positive] = (1e-4, 1e-1)
    epochs: list[Whole(1)] = Field(default_factory=lambda: [10])
    distill: list[StrictBool] = Field(default_factory=lambda: [True, False])
    grace_period: Whole(1) = 1  # epochs every trial gets
    reduction_factor: Whole(2) = 3
    seed: Whole(0) = 0  # of the recipes drawn: the same search again draws the same recipes
    max_concurrent: Whole(1) | None = None  # trials at once; None: as many runs as the cluster holds


class FinetuneSettings(Section):
    """The ``finetune`` section (``python -m raynas finetune SWEEP_DIR``)."""

    SECTION = "finetune"

    select: Choice("best", "pareto") = "best"
    top_k: Whole(1) = 1  # models: the best k, or at most k points of the front
    pareto_cost: str = "flops"  # the cost of the front for select: pareto
    from_scratch: StrictBool = False
    recipe: Recipe = Field(default_factory=Recipe)
    search: RecipeSearch | None = None
    data: dict[str, Any] = Field(default_factory=dict)  # changes to the supernet's data section
    evaluation: EvaluationSection = Field(default_factory=lambda: EvaluationSection(calibration_images=32))
    scaling: ScalingSection = Field(default_factory=ScalingSection)
    latency: LatencySettings | None = None  # default: the sweep's latency settings, else at the deployment size
    out: str | None = None  # default: SWEEP_DIR/finetune


# --- the training loop -----------------------------------------------------------------


def _models(job: Mapping[str, Any], device):
    """``(student, teacher or None, meta)``: the sub-network (inherited or fresh) and the frozen teacher."""
    from search_spaces import get_space
    from trainables.checkpoints import load_supernet

    supernet, meta = load_supernet(job["checkpoint"])
    space = get_space(meta["space"], **meta["space_options"])
    arch = space.validate(job["arch"])
    student = space.build_model(arch, meta["num_classes"]) if job["from_scratch"] else supernet.extract(arch)
    teacher = None
    if job["recipe"]["distill"]:
        teacher = supernet.extract(space.max_arch()).to(device).eval()
        teacher.requires_grad_(False)
    return student.to(device), teacher, meta


def finetune_loop(config: dict) -> None:
    """Ray Train worker loop: ``config`` is a job (``_job``) plus ``progress`` (a board) and ``resume_from``."""
    import ray.train
    import ray.train.torch
    from torch.utils.data import DistributedSampler

    from trainables.checkpoints import resumed_checkpoint, trained_class_weights, write_checkpoint
    from trainables.recalibration import evaluate_model, evaluation_batches, preserved_bn_statistics, recalibrate_bn, \
        shard_batches
    from trainables.training import batch_loader, cycle, distillation_loss, training_state

    recipe = Recipe.load(config["recipe"])
    data = DataSection.load(config["data"])
    evaluation = EvaluationSection.load(config["evaluation"])
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.manual_seed(recipe.seed + rank)
    device = ray.train.torch.get_device()
    student, teacher, meta = _models(config, device)
    num_classes, ignore_index = meta["num_classes"], meta["ignore_index"]

    train_set, calibration_set, val_set = data.build()
    test_set = data.test_set() if config["test"] else None
    sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True, seed=recipe.seed,
                                 drop_last=True)
    loader = batch_loader(train_set, recipe.batch_size, data.loader_workers, sampler=sampler)
    if len(loader) == 0:
        raise UserError(f"finetune.recipe.batch_size: {recipe.batch_size} images per worker × {world} workers "
                        f"is more than the {len(train_set)} training images")
    weighting = recipe.class_weights or trained_class_weights(meta)
    class_weights = train_set.class_weights().to(device) if weighting == "median_frequency" else None
    steps = recipe.steps_per_epoch or len(loader)
    total = recipe.epochs * steps
    calibration, val_batches = evaluation_batches(calibration_set, val_set, evaluation, rank, world)
    precision = evaluation.precision
    if teacher is not None:  # its BN statistics, like any scored sub-network's, from the calibration images
        recalibrate_bn(teacher, calibration, device, precision)

    start_epoch, step, history, inherited = 0, 0, [], None
    with resumed_checkpoint(config) as checkpoint:
        optimizer, scheduler, saved = training_state(student, device, recipe, total, checkpoint, STATE_FILE)
    if saved is not None:
        start_epoch, step, history, inherited = saved["epoch"], saved["step"], saved["history"], saved["inherited"]
    elif not config["from_scratch"]:  # what the sweep measured: inherited weights, BN recalibrated
        with preserved_bn_statistics(student):
            recalibrate_bn(student, calibration, device, precision)
            metric = evaluate_model(student, val_batches, num_classes, ignore_index, device, precision)
            metric.all_reduce()
            inherited = metric.compute()["miou"]

    model = ray.train.torch.prepare_model(student)
    net = model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
    progress = WorkerProgress(config.get("progress"), rank, recipe.epochs, steps)
    for epoch in range(start_epoch, recipe.epochs):
        model.train()
        sums = torch.zeros(2, dtype=torch.float64, device=device)  # loss, distillation loss
        started, images = time.perf_counter(), 0
        batches = cycle(loader, sampler, epoch)
        progress.start_epoch()
        for done in range(1, steps + 1):
            image, label = to_device(next(batches), device)
            optimizer.zero_grad(set_to_none=True)
            with autocast(device, recipe.precision):
                logits = model(image).float()
            loss = F.cross_entropy(logits, label, weight=class_weights, ignore_index=ignore_index)
            sums[0] += loss.detach()
            if teacher is not None:
                with torch.no_grad(), autocast(device, recipe.precision):
                    teacher_probs = F.softmax(teacher(image).float(), dim=1)
                kl = distillation_loss(logits, teacher_probs)
                sums[1] += kl.detach()
                loss = loss + recipe.distill_weight * kl
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            images += image.shape[0] * world
            progress.step(epoch + 1, done, image.shape[0] * world)
        synchronize(device)
        train_seconds = time.perf_counter() - started
        if world > 1:
            torch.distributed.all_reduce(sums)
            sums /= world
        metric = evaluate_model(net, val_batches, num_classes, ignore_index, device, precision)
        metric.all_reduce()
        scores = metric.compute()
        metrics = {"epoch": epoch + 1, "step": step, "loss": float(sums[0]) / steps,
                   "loss_distill": float(sums[1]) / steps, "val_miou": scores["miou"],
                   "images_per_s": images / train_seconds, "inherited_miou": inherited}
        test_scores = None
        if epoch + 1 == recipe.epochs and test_set is not None:  # once, at the end: the number to quote
            test = evaluate_model(net, shard_batches(test_set, evaluation.batch_size, rank, world), num_classes,
                                  ignore_index, device, precision)
            test.all_reduce()
            test_scores = test.compute()
            metrics["test_miou"] = test_scores["miou"]
        history.append(metrics)
        record = {"epoch": epoch + 1, "step": step, "history": history, "inherited": inherited,
                  "per_class_iou": _per_class(scores),
                  "test_per_class_iou": None if test_scores is None else _per_class(test_scores),
                  "arch": config["arch"], "recipe": recipe.dump(), "supernet": config["checkpoint"],
                  "from_scratch": config["from_scratch"], "space": meta["space"],
                  "space_options": meta["space_options"], "num_classes": num_classes,
                  "class_names": list(val_set.class_names), "ignore_index": ignore_index, "data": data.dump()}
        with tempfile.TemporaryDirectory() as directory:
            saved = None
            if rank == 0:
                write_checkpoint(directory, {"model": net.state_dict(), "optimizer": optimizer.state_dict(),
                                             "scheduler": scheduler.state_dict()}, record, STATE_FILE)
                saved = ray.train.Checkpoint.from_directory(directory)
            progress.epoch(metrics)
            ray.train.report(metrics, checkpoint=saved, checkpoint_dir_name=f"checkpoint_epoch_{epoch + 1:04d}")


def _per_class(scores: Mapping[str, Any]) -> list[float | None]:
    return [None if math.isnan(v) else v for v in scores["per_class_iou"]]


# --- driver side ---------------------------------------------------------------------------


def make_job(arch: Mapping[str, Any], checkpoint: str, data: DataSection, recipe: Recipe,
             evaluation: EvaluationSection, from_scratch: bool = False, test: bool = True) -> dict:
    """What ``finetune_loop`` trains: ``arch`` from ``checkpoint``'s supernet with ``recipe`` on ``data``,
    scored on the validation images ``evaluation`` names (and once on the test split, ``test``)."""
    return {"arch": dict(arch), "checkpoint": checkpoint, "from_scratch": from_scratch, "recipe": recipe.dump(),
            "data": data.dump(), "evaluation": evaluation.dump(), "test": test}


def trainer(job: dict, scaling: ScalingSection, storage: Path, name: str, callbacks=()):
    """The ``TorchTrainer`` of one fine-tuning job (``make_job``), its run stored at ``storage/name``."""
    import ray.train
    from ray.train.torch import TorchTrainer

    torch_config, scaling_config = scaling.trainer_configs()
    return TorchTrainer(
        finetune_loop, train_loop_config=job, torch_config=torch_config, scaling_config=scaling_config,
        run_config=ray.train.RunConfig(storage_path=str(storage), name=name, callbacks=list(callbacks)))


def recipe_trial(config: dict, job: dict, scaling: dict, storage: str) -> None:
    """One Tune trial of the recipe search: one Ray Train run whose epochs Tune (ASHA) sees."""
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    recipe = Recipe.load(job["recipe"]).updated({k: config[k] for k in ("lr", "weight_decay", "epochs", "distill")})
    run = trainer({**job, "recipe": recipe.dump()}, ScalingSection.load(scaling), Path(storage),
                  f"trial_{tune.get_context().get_trial_id()}", callbacks=[TuneReportCallback()])
    run.fit()


def train_one(job: dict, settings: FinetuneSettings, folder: Path, progress: Progress) -> str:
    """Fine-tune with the recipe (resuming an interrupted run); the last checkpoint's folder."""
    from trainables.checkpoints import latest_checkpoint

    board = ProgressBoard.start()
    run = trainer({**job, "progress": board}, settings.scaling, folder, "train")
    with follow(board, progress, render_training):
        result = run.fit()
    if result.error is not None:
        raise RuntimeError(f"fine-tuning failed: {result.error}")
    return str(latest_checkpoint(folder / "train", STATE_FILE))


def search_recipe(job: dict, settings: FinetuneSettings, folder: Path, progress: Progress) -> tuple[str, dict]:
    """Ray Tune over the recipe with ASHA; the best trial's last checkpoint and its recipe values."""
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    search = settings.search
    space = {"lr": tune.loguniform(*search.lr), "weight_decay": tune.loguniform(*search.weight_decay),
             "epochs": tune.choice(search.epochs),
             "distill": tune.choice(search.distill if job["teacher"] else [False])}
    trainable = tune.with_resources(tune.with_parameters(recipe_trial, job=job, scaling=settings.scaling.dump(),
                                                         storage=str(folder / "recipes")), DRIVER_TRIAL_RESOURCES)
    experiment = folder / "search"
    if tune.Tuner.can_restore(str(experiment)):
        tuner = tune.Tuner.restore(str(experiment), trainable=trainable, resume_unfinished=True)
    else:
        tuner = tune.Tuner(trainable, param_space=space, tune_config=tune.TuneConfig(
            metric="val_miou", mode="max", num_samples=search.num_samples,
            search_alg=BasicVariantGenerator(random_state=search.seed,
                                             max_concurrent=settings.scaling.runs_at_once(search.max_concurrent)),
            scheduler=ASHAScheduler(max_t=max(search.epochs), grace_period=search.grace_period,
                                    reduction_factor=search.reduction_factor)),
            # QUIET_TUNE turns Tune's automatic loggers off; the JSON one is what get_dataframe() reads
            run_config=tune.RunConfig(storage_path=str(folder), name="search", verbose=0,
                                      callbacks=[JsonLoggerCallback()]))
    progress.line(f"searching the recipe: {search.num_samples} Tune trials with ASHA, each a Ray Train run")
    with tune_environment(**QUIET_TUNE):
        grid = tuner.fit()
    best = grid.get_best_result(metric="val_miou", mode="max", scope="last")
    frame = grid.get_dataframe()
    progress.line(f"recipe search: {len(frame)} trials, epochs trained {sorted(frame['training_iteration'])}; "
                  f"best val mIoU {best.metrics['val_miou']:.4f}")
    return best.metrics["checkpoint_path"], {k: best.config[k] for k in ("lr", "weight_decay", "epochs", "distill")}


def export(checkpoint: str, folder: Path, resolution: int, latency: LatencySettings) -> dict:
    """``model.pt``, ``model.onnx`` and ``metrics.json`` of a fine-tuned checkpoint; returns the metrics.

    The ONNX file takes any batch, height and width and carries its ``Preprocessing`` (trained size,
    normalisation, class names) in its metadata; its outputs are checked against PyTorch's at the trained
    size and at one other before it is written. ``val_miou``/``test_miou`` are ONNX Runtime's on the file
    itself (every image of the split, at the trained size), PyTorch's beside them (``*_torch``); latency at
    ``latency.resolution`` (``latency``) and at the trained size (``latency_trained_size``).
    """
    from PIL import Image

    from raynas.data import EvalTransform
    from raynas.data.preprocessing import Preprocessing
    from raynas.latency.onnx_timing import export_onnx
    from raynas.latency.service import LatencyRequest, LatencyService, trial_metrics
    from raynas.shipped_model import ShippedModel, example_strip, score
    from search_spaces import get_space
    from trainables.checkpoints import read_meta

    meta = read_meta(checkpoint, STATE_FILE)
    space = get_space(meta["space"], **meta["space_options"])
    arch = space.validate(meta["arch"])
    model = space.build_model(arch, meta["num_classes"])
    state = torch.load(Path(checkpoint) / STATE_FILE, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    model.eval()
    data = DataSection.load(meta["data"])
    val_set, test_set = data.make("val", EvalTransform(data.eval_size)), data.test_set()
    trained_size = tuple(val_set[0][0].shape[-2:])  # what the model was scored at
    record = Preprocessing(input_size=trained_size, class_names=tuple(meta["class_names"]),
                           ignore_index=meta["ignore_index"])
    onnx_bytes = export_onnx(model, trained_size, dynamic=True, metadata=record.metadata())
    _check_onnx(model, onnx_bytes, trained_size)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), folder / MODEL_WEIGHTS)
    (folder / MODEL_ONNX).write_bytes(onnx_bytes)

    shipped = ShippedModel(folder / MODEL_ONNX)
    val = score(shipped, val_set).compute()
    test = score(shipped, test_set).compute() if test_set is not None else None
    shown = test_set if test_set is not None else val_set
    Image.fromarray(example_strip(shipped, shown)).save(folder / MODEL_EXAMPLES)
    arch_id = space.arch_id(arch)
    deployed, at_trained_size = LatencyService.from_settings(latency).measure(
        [LatencyRequest(arch_id, size, lambda: model) for size in (latency.resolution, trained_size)])
    cost = space.cost(arch, resolution=resolution, num_classes=meta["num_classes"])
    last = meta["history"][-1]
    names = meta["class_names"]
    metrics = {
        "arch_id": arch_id, "arch": arch, "space": meta["space"],
        "space_options": meta["space_options"], "num_classes": meta["num_classes"],
        "preprocessing": record.to_dict(),
        "val_miou": val["miou"], "val_miou_torch": last["val_miou"], "inherited_miou": meta["inherited"],
        "per_class_iou": dict(zip(names, _per_class(val))),
        # None: no labelled test split
        "test_miou": None if test is None else test["miou"], "test_miou_torch": last.get("test_miou"),
        "test_per_class_iou": None if test is None else dict(zip(names, _per_class(test))),
        "scored_by": f"ONNX Runtime on {MODEL_ONNX}, every image of the split at {trained_size[0]}×{trained_size[1]}",
        "resolution": resolution, "flops": cost["flops"], "params": cost["params"],
        "latency": trial_metrics(deployed) | {"resolution": list(latency.resolution), "label": "deployment size"},
        "latency_trained_size": trial_metrics(at_trained_size) | {"resolution": list(trained_size),
                                                                  "label": "trained size"},
        "recipe": meta["recipe"], "from_scratch": meta["from_scratch"], "epochs": last["epoch"],
        "history": meta["history"], "supernet": meta["supernet"], "checkpoint": checkpoint,
        "files": {"onnx": str(folder / MODEL_ONNX), "weights": str(folder / MODEL_WEIGHTS),
                  "examples": str(folder / MODEL_EXAMPLES)},
    }
    (folder / METRICS).write_text(json.dumps(metrics, indent=1))
    return metrics


def _check_onnx(model: torch.nn.Module, onnx_bytes: bytes, trained_size: tuple[int, int]) -> None:
    """The ONNX graph's logits against PyTorch's, at the trained size and at 1.5 times it (batch 2); a
    ``RuntimeError`` naming the size where they differ."""
    import onnxruntime

    session = onnxruntime.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(0)
    for height, width in (trained_size, (trained_size[0] * 3 // 2, trained_size[1] * 3 // 2)):
        image = torch.randn(2, 3, height, width, generator=generator)
        with torch.no_grad():
            expected = model(image).numpy()
        got = session.run(["logits"], {"image": image.numpy()})[0]
        error = float(np.abs(got - expected).max()) if got.shape == expected.shape else float("inf")
        if not error <= 1e-3 * max(1.0, float(np.abs(expected).max())):
            raise RuntimeError(f"the ONNX export differs from the PyTorch model at {height}×{width}: logits "
                               f"{got.shape} against {expected.shape}, largest difference {error:g}")


def scores_line(metrics: Mapping[str, Any]) -> str:
    """``test mIoU …, val mIoU … (inherited …)`` of a model's metrics."""
    test, inherited = metrics.get("test_miou"), metrics["inherited_miou"]
    return ((f"test mIoU {test:.4f}, " if test is not None else "no labelled test split, ")
            + f"val mIoU {metrics['val_miou']:.4f} (inherited {'-' if inherited is None else f'{inherited:.4f}'})")


def load_model(folder: str | Path) -> torch.nn.Module:
    """The fine-tuned static module of a model folder (``metrics.json`` and ``model.pt``), in eval mode."""
    from search_spaces import get_space

    metrics = json.loads((Path(folder) / METRICS).read_text())
    space = get_space(metrics["space"], **metrics["space_options"])
    model = space.build_model(metrics["arch"], metrics["num_classes"])
    model.load_state_dict(torch.load(Path(folder) / MODEL_WEIGHTS, map_location="cpu", weights_only=True))
    return model.eval()


# --- the command's whole job ------------------------------------------------------------------


def select_rows(trials, sweep: Mapping[str, Any], settings: FinetuneSettings):
    """The rows to fine-tune: the best ``top_k`` feasible ones, or up to ``top_k`` points of the front."""
    from analysis.curves import evaluations_of
    from analysis.pareto import pareto_front

    metric, mode = sweep["metric"], sweep["mode"]
    rows = evaluations_of(trials, metric)
    rows = rows.drop_duplicates("found_arch_id" if "found_arch_id" in rows else "arch_id")
    if rows.empty:
        raise UserError("finetune: the sweep has no feasible evaluated sub-network to fine-tune")
    if settings.select == "best":
        return rows.sort_values(metric, ascending=(mode == "min"), kind="stable").head(settings.top_k)
    if settings.pareto_cost not in rows:
        raise UserError(f"finetune.pareto_cost: {settings.pareto_cost!r} is not a column of the sweep; "
                        f"allowed values: {[c for c in ('flops', 'params', 'latency_ms') if c in rows]}")
    front = pareto_front(rows, [(metric, mode), (settings.pareto_cost, "min")])
    picks = sorted({round(i * (len(front) - 1) / max(settings.top_k - 1, 1)) for i in range(settings.top_k)})
    return front.iloc[picks[: settings.top_k]]


class FinetunePlan:
    """A validated fine-tuning job, before anything runs: what to train, from which weights, on which data.

    From a sweep over a trained supernet, the winners' configs and the sweep's supernet; from a sweep of
    a search that trains (e.g. ``ssr``), the architectures its runs found and each run's own supernet.
    """

    def __init__(self, sweep_dir: str | Path, settings: FinetuneSettings):
        from analysis.results import load_results
        from trainables.checkpoints import checkpoint_dir, latest_checkpoint, read_meta

        trials, sweep = load_results(sweep_dir)
        self.settings = settings
        folder = SweepFolder(sweep_dir)
        if sweep.get("benchmark") == "supernet":
            checkpoint = str(checkpoint_dir(sweep["checkpoint"]))  # a clear error when it is gone
            self.jobs = [({d: row[f"config/{d}"] for d in sweep["dimensions"]}, checkpoint)
                         for _, row in select_rows(trials, sweep, settings).iterrows()]
        elif "arch_space" in sweep:  # a search that trains: each run's found architecture and supernet
            self.jobs = []
            for _, row in select_rows(trials, sweep, settings).iterrows():
                run_dir = folder.experiment / SweepFolder.trial_dir_name(row["searcher"], int(row["seed"]),
                                                                         row["trial_id"])
                found = latest_checkpoint(run_dir, prefix="checkpoint_")
                if found is None:
                    raise UserError(f"finetune: no checkpoint of the run that found {row['found_arch_id']} "
                                    f"under {run_dir}")
                self.jobs.append((json.loads(row["found_arch"]), str(found)))
        else:
            raise UserError(f"finetune: {sweep_dir} is a {sweep.get('benchmark')!r} sweep; fine-tuning needs "
                            f"sub-networks with weights: a sweep over a trained supernet or of a search that trains")
        meta = read_meta(self.jobs[0][1])
        self.data = DataSection.load(meta["config"]["data"]).updated(settings.data, "finetune.data")
        resolution = sweep["resolution"]
        self.resolution = resolution if isinstance(resolution, int) else tuple(resolution)
        sweep_latency = sweep.get("latency")
        self.latency = settings.latency or (LatencySettings.load(sweep_latency) if sweep_latency
                                            else LatencySettings(resolution=self.resolution))
        if self.latency.resolution is None:
            self.latency = self.latency.updated({"resolution": self.resolution}, "finetune.latency")
        self.out = Path(settings.out or folder.finetune).expanduser().resolve()

    def run(self, progress: Progress) -> list[dict]:
        """Fine-tune, export and measure each model (a finished one is kept); their metrics."""
        from search_spaces import get_space
        from trainables.checkpoints import read_meta

        results = []
        for i, (arch, checkpoint) in enumerate(self.jobs, 1):
            meta = read_meta(checkpoint)
            space = get_space(meta["space"], **meta["space_options"])
            folder = self.out / space.arch_id(arch)
            if (folder / METRICS).is_file():
                progress.line(f"model {i}/{len(self.jobs)} {folder.name}: already fine-tuned ({folder / METRICS})")
                results.append(json.loads((folder / METRICS).read_text()))
                continue
            progress.line(f"model {i}/{len(self.jobs)} {folder.name}: "
                          f"{'from scratch' if self.settings.from_scratch else 'inherited weights'}, "
                          f"{space.cost(arch, self.resolution, meta['num_classes'])['flops'] / 1e9:.3f} GMACs "
                          f"at {self.resolution}")
            recipe = self.settings.recipe
            teacher = meta.get("teacher", True)
            searched = self.settings.search is not None and True in self.settings.search.distill
            if not teacher and (recipe.distill or searched):
                progress.line(f"model {i}/{len(self.jobs)} {folder.name}: without distillation: its weights come "
                              f"from a search that trains, whose largest sub-network was never trained as a network")
                recipe = recipe.updated({"distill": False})
            job = make_job(arch, checkpoint, self.data, recipe, self.settings.evaluation,
                           self.settings.from_scratch) | {"teacher": teacher}
            found = None
            if self.settings.search is not None:
                trained, found = search_recipe(job, self.settings, folder, progress)
            else:
                trained = train_one(job, self.settings, folder, progress)
            metrics = export(trained, folder, self.resolution, self.latency)
            if found is not None:
                metrics["searched_recipe"] = found
                (folder / METRICS).write_text(json.dumps(metrics, indent=1))
            progress.line(f"model {i}/{len(self.jobs)} {folder.name}: {scores_line(metrics)}, "
                          f"latency {metrics['latency']['latency_ms']:.2f} ms -> {folder}")
            results.append(metrics)
        return results


def finetuned_models(folder: str | Path) -> list[dict]:
    """The ``metrics.json`` of every model fine-tuned into ``folder`` (a sweep's ``finetune/``)."""
    return [json.loads(p.read_text()) for p in sorted(Path(folder).glob(f"*/{METRICS}"))]
