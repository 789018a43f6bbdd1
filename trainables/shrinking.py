"""HR-NAS's resource-aware progressive shrinking (seed paper 001, §3.3) as a search that trains.

One run trains the ``hr_nas`` supernet (``search_spaces.hr_nas``) on the
task loss while pushing the importance factors α of its search units to zero:

- the units: every channel of every kernel group of every searching block
  (α: the scale of the BN after its depthwise convolution) and every token
  (α: the scale of the BN of the projector P), as the paper's §4.1;
- Eq. 7's penalty ``λ Σ_i Δ_i |α_i|``, Δ_i the MACs one unit costs at
  ``resolution`` (``network.unit_costs``; a token's at the tokens kept now),
  divided by the mean Δ of the full supernet's units so that λ does not
  depend on the resolution or the size of the network. The task loss is
  minimised by AdamW; the L1 term by its proximal step after each update
  (soft thresholding, ``|α| ← max(|α| − lr·λ·Δ_i/mean Δ, 0)``), which
  reaches exact zeros, as a short CPU run needs;
- every ``interval`` epochs, units with ``|α| < threshold`` (ε) are removed:
  a block's units are ordered by ``|α|`` (weights, BN statistics and the
  optimizer's moments permuted with them, so the network computes the same
  function) and the kept count is rounded up to the space's grid — the kept
  units are the first ones, so the run's architecture is an architecture of
  the space and its weights are the supernet's. BN statistics are
  recalibrated wherever a sub-network is scored (``evaluate_arch``).

``flops_target`` (MACs at ``resolution``) with ``target_mode``: ``stop`` ends
the run once the architecture is within it; ``adapt`` scales λ at every
removal by the ratio of the architecture's MACs to the target (within ×0.5
… ×2) and never stops early.

The hyperparameters (the sweep's ``space``): λ (``penalty``), ε
(``threshold``), the removal ``interval`` and the learning rate. Each epoch a
trial reports the task loss, the penalty, λ, the units left and the FLOPs
and params of what remains, and, scored with the run's weights, the
architecture it holds (``SearchThatTrains``), with a checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

import torch
import torch.nn.functional as F
from pydantic import Field

from raynas.devices import to_device
from raynas.settings import Choice, NonNegative, Positive, Section, Whole
from raynas.training_config import DataSection, EvaluationSection
from search_spaces.base import Block, Dimension, SearchSpace
from trainables.searching import SearchThatTrains, forever

TARGET_MODES = ("stop", "adapt")
LAMBDA_RANGE = (0.5, 2.0)  # ``adapt``: λ changes by at most this factor per removal


class ShrinkingSpace(SearchSpace):
    """The hyperparameters of one shrinking run, as data (what a sweep's searchers propose)."""

    ARCH_NAMES = SearchSpace.ARCH_NAMES + ("paper",)

    def __init__(self):
        super().__init__("shrinking_hyperparameters", [
            Block("penalty", (Dimension("penalty", (1.0, 2.0, 5.0, 10.0, 20.0, 50.0)),
                              Dimension("threshold", (1e-3, 1e-2, 5e-2)))),
            Block("schedule", (Dimension("interval", (1, 2, 5)),)),
            Block("optimizer", (Dimension("lr", (1e-3, 2e-3, 4e-3, 8e-3)),)),
        ])

    def paper(self) -> dict[str, Any]:
        """§4.1: ε = 0.001, removal every five epochs; λ (not given in these units) and lr: middle values."""
        return {"penalty": 5.0, "threshold": 1e-3, "interval": 5, "lr": 4e-3}

    def arch_from_name(self, name: str, seed: int | None = None) -> dict[str, Any]:
        return self.paper() if name == "paper" else super().arch_from_name(name, seed)


class ShrinkingSettings(Section):
    """The ``sweep`` fields of the ``shrinking`` objective (what every run shares)."""

    SECTION = "sweep"

    space_options: dict[str, Any] = Field(default_factory=dict)  # the hr_nas layout (default: the paper's)
    data: DataSection = Field(default_factory=lambda: DataSection(dataset="camvid", base_size=96, cache=True,
                                                                  crop_size=[64, 96], scale_range=(0.75, 1.25)))
    epochs: Whole(1) = 10
    steps_per_epoch: Whole(1) = 20
    batch_size: Whole(1) = 8
    weight_decay: NonNegative = 1e-4
    evaluation: EvaluationSection = Field(default_factory=lambda: EvaluationSection(calibration_images=32,
                                                                                    val_images=None))
    resolution: tuple[Whole(32), Whole(32)] = (512, 1024)  # where FLOPs, params and Δ are counted (Table 2)
    flops_target: Positive | None = None
    target_mode: Choice(*TARGET_MODES) = "stop"
    seed: Whole(0) = 0

    def check(self, section: str) -> None:
        from search_spaces import get_space
        from search_spaces.hr_nas.network import input_hw

        get_space("hr_nas", **self.space_options)  # a bad layout fails here, naming its field
        input_hw(tuple(self.resolution))


@dataclass
class ShrinkingRun:
    """One run's state."""

    hyperparameters: dict[str, Any]
    net: Any
    optimizer: Any
    scheduler: Any
    arch: dict[str, int]
    lam: float  # λ now (``adapt`` changes it)
    epoch: int = 0
    history: list[dict] = field(default_factory=list)
    device: str = "cpu"


class ShrinkingObjective(SearchThatTrains):
    """A sweep objective whose trial is one progressive-shrinking run (see the module docstring)."""

    name: ClassVar[str] = "shrinking"
    Settings: ClassVar[type[Section]] = ShrinkingSettings
    metric: ClassVar[str] = "miou"
    mode: ClassVar[str] = "max"
    default_resources: ClassVar[dict[str, float]] = {"CPU": 1}

    def __init__(self, settings: ShrinkingSettings):
        from search_spaces import get_space

        super().__init__(settings, ShrinkingSpace(), get_space("hr_nas", **settings.space_options))
        resolution = tuple(settings.resolution)
        deltas = self._arch_space.unit_costs(self._arch_space.max_arch(), resolution)
        units = [(d, spec.counts(self._arch_space.max_arch())[f]) for spec in self._arch_space.specs
                 for f, d in deltas[spec.name].items()]
        self._mean_delta = sum(d * n for d, n in units) / sum(n for _, n in units)

    def datasets(self):
        """``(training loader, calibration batches, validation batches, classes, ignore index)``."""
        if self._data is None:
            from trainables.recalibration import evaluation_batches
            from trainables.training import batch_loader

            train, calibration, val = self.settings.data.build()
            loader = batch_loader(train, self.settings.batch_size, self.settings.data.loader_workers, shuffle=True)
            self._data = (loader, *evaluation_batches(calibration, val, self.settings.evaluation),
                          train.num_classes, train.ignore_index)
        return self._data

    # --- a run ---------------------------------------------------------------------------------
    def start(self, hyperparameters: Mapping[str, Any], device: str) -> ShrinkingRun:
        from trainables.training import warmup_poly

        hp = self._space.from_config(hyperparameters)
        torch.manual_seed(self.settings.seed + int(hyperparameters.get("seed", 0)))
        net = self._arch_space.build_supernet(self.datasets()[3]).to(device)
        decay = [p for p in net.parameters() if p.ndim > 1]
        no_decay = [p for p in net.parameters() if p.ndim <= 1]
        optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": self.settings.weight_decay},
                                       {"params": no_decay, "weight_decay": 0.0}], lr=hp["lr"])
        total = self.settings.epochs * self.settings.steps_per_epoch
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_poly(s, total, 0, 1.0, 0.9))
        arch = self._arch_space.max_arch()
        net.set_active(arch)
        return ShrinkingRun(hp, net, optimizer, scheduler, arch, float(hp["penalty"]), device=device)

    def importances(self, run: ShrinkingRun):
        """``(block, field, α of the kept units (a view), Δ of one unit / mean Δ)`` for every kind of unit."""
        deltas = self._arch_space.unit_costs(run.arch, tuple(self.settings.resolution))
        for name, block in run.net.blocks.items():
            for field_, group in block.groups.items():
                n = run.arch[f"{name}_{field_}"]
                if n:
                    yield name, field_, group.bn.weight[:n], deltas[name][field_] / self._mean_delta
            n = run.arch[f"{name}_tokens"]
            if n:
                yield name, "tokens", block.transformer.project_bn.weight[:n], deltas[name]["tokens"] / self._mean_delta

    def l1_penalty(self, run: ShrinkingRun) -> float:
        """λ Σ Δ_i |α_i| / mean Δ over the kept units (Eq. 7's second term)."""
        return run.lam * sum(float(alpha.detach().abs().sum()) * delta for _, _, alpha, delta in self.importances(run))

    def epoch(self, run: ShrinkingRun) -> dict[str, Any]:
        settings, net = self.settings, run.net
        loader, _, _, _, ignore = self.datasets()
        net.set_active(run.arch)
        net.train()
        batches = forever(loader)
        units = list(self.importances(run))  # Δ per kind is fixed between removals
        task = 0.0
        for _ in range(settings.steps_per_epoch):
            image, label = to_device(next(batches), run.device)
            run.optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(net(image), label, ignore_index=ignore)
            loss.backward()
            run.optimizer.step()
            shrink = run.optimizer.param_groups[0]["lr"] * run.lam
            with torch.no_grad():  # the proximal step of the L1 term
                for _, _, alpha, delta in units:
                    alpha.copy_(alpha.sign() * (alpha.abs() - shrink * delta).clamp(min=0))
            run.scheduler.step()
            task += float(loss.detach())
        run.epoch += 1
        removed = 0
        if run.epoch % run.hyperparameters["interval"] == 0:
            removed = self.remove(run)
            if settings.flops_target is not None and settings.target_mode == "adapt":
                ratio = self._flops(run.arch) / settings.flops_target
                run.lam *= min(max(ratio, LAMBDA_RANGE[0]), LAMBDA_RANGE[1])
        metrics = {"epoch": run.epoch, "task_loss": task / settings.steps_per_epoch, "l1_penalty": self.l1_penalty(run),
                   "lambda": run.lam, "removed": removed, "units_left": self.units_left(run)}
        run.history.append(metrics)
        return metrics

    def remove(self, run: ShrinkingRun) -> int:
        """Remove the units with ``|α| < threshold`` (rounded up to the space's grid); returns how many went."""
        threshold, removed = run.hyperparameters["threshold"], 0
        for name, field_, alpha, _ in list(self.importances(run)):
            block = run.net.blocks[name]
            order = alpha.detach().abs().argsort(descending=True)
            alive = int((alpha.detach().abs() >= threshold).sum())
            dimension = self._arch_space.dimension(f"{name}_{field_}")
            kept = min(c for c in dimension.choices if c >= alive)
            if field_ == "tokens":
                _reorder_tokens(block.transformer, order, run.optimizer)
            else:
                _reorder_group(block.groups[field_], order, run.optimizer)
            removed += run.arch[f"{name}_{field_}"] - kept
            run.arch[f"{name}_{field_}"] = kept
        run.net.set_active(run.arch)
        return removed

    def units_left(self, run: ShrinkingRun) -> int:
        return sum(run.arch.values())

    def _flops(self, arch: Mapping[str, Any]) -> float:
        return float(self._arch_space.cost(arch, tuple(self.settings.resolution), self.datasets()[3])["flops"])

    def done(self, run: ShrinkingRun) -> bool:
        settings = self.settings
        reached = (settings.flops_target is not None and settings.target_mode == "stop"
                   and self._flops(run.arch) <= settings.flops_target)
        return run.epoch >= settings.epochs or reached

    def found(self, run: ShrinkingRun) -> dict[str, Any]:
        return dict(run.arch)

    def score(self, run: ShrinkingRun, arch: Mapping[str, Any]) -> dict[str, Any]:
        """``miou`` of ``arch`` with the run's weights (BN recalibrated), its FLOPs and params at ``resolution``."""
        from trainables.recalibration import evaluate_arch

        _, calibration, val, classes, ignore = self.datasets()
        metric, _, _ = evaluate_arch(run.net, arch, calibration, val, classes, ignore, run.device,
                                     self.settings.evaluation.precision)
        run.net.set_active(run.arch)
        return {"miou": metric.compute()["miou"],
                **self._arch_space.cost(arch, tuple(self.settings.resolution), classes)}

    def state(self, run: ShrinkingRun) -> dict[str, Any]:
        return {"net": run.net.state_dict(), "optimizer": run.optimizer.state_dict(),
                "scheduler": run.scheduler.state_dict(), "arch": run.arch, "lam": run.lam,
                "epoch": run.epoch, "history": run.history}

    def restore(self, hyperparameters: Mapping[str, Any], state: Mapping[str, Any], device: str) -> ShrinkingRun:
        run = self.start(hyperparameters, device)
        run.net.load_state_dict(state["net"])
        run.optimizer.load_state_dict(state["optimizer"])
        run.scheduler.load_state_dict(state["scheduler"])
        run.arch, run.lam = dict(state["arch"]), float(state["lam"])
        run.epoch, run.history = state["epoch"], list(state["history"])
        run.net.set_active(run.arch)
        return run

    def weights(self, run: ShrinkingRun) -> tuple[dict, dict[str, Any]]:
        _, _, _, classes, ignore = self.datasets()
        return run.net.state_dict(), {
            "space": self._arch_space.name, "space_options": self._arch_space.options(),
            "num_classes": classes, "ignore_index": ignore, "epoch": run.epoch, "history": run.history,
            "config": {"data": self.settings.data.dump()}}

    def record(self) -> dict[str, Any]:
        return {**super().record(), "method": "progressive_shrinking", "arch_space": self._arch_space.name,
                **self.settings.dump()}


# --- reordering units (the function the network computes is unchanged) ----------------------------


def _permute(tensor: torch.Tensor, order: torch.Tensor, dim: int, optimizer=None) -> None:
    """Put the first ``len(order)`` entries of ``tensor`` along ``dim`` in ``order``; a parameter's optimizer
    moments follow."""
    tensors = [tensor]
    if optimizer is not None and tensor in optimizer.state:
        tensors += [v for v in optimizer.state[tensor].values() if torch.is_tensor(v) and v.shape == tensor.shape]
    with torch.no_grad():
        for t in tensors:
            head = t.narrow(dim, 0, len(order))
            head.copy_(head.index_select(dim, order.to(t.device)))


def _reorder_bn(bn, order, optimizer) -> None:
    for t in (bn.weight, bn.bias):
        _permute(t, order, 0, optimizer)
    for t in (bn.running_mean, bn.running_var):
        _permute(t, order, 0)


def _reorder_group(group, order, optimizer) -> None:
    _permute(group.expand.weight, order, 0, optimizer)
    _reorder_bn(group.expand_bn, order, optimizer)
    _permute(group.depthwise.weight, order, 0, optimizer)
    _reorder_bn(group.bn, order, optimizer)
    _permute(group.project.weight, order, 1, optimizer)


def _reorder_tokens(transformer, order, optimizer) -> None:
    _permute(transformer.project.weight, order, 0, optimizer)
    _reorder_bn(transformer.project_bn, order, optimizer)
    _permute(transformer.queries, order, 0, optimizer)
    _permute(transformer.inverse.weight, order, 1, optimizer)


__all__ = ["ShrinkingObjective", "ShrinkingSettings", "ShrinkingSpace", "TARGET_MODES"]
