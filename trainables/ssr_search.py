"""Joint-dimensional differentiable search with Solution Space Regularization (seed paper 004) as a search that trains.

One run: the relaxed ``joint_dim`` supernet (``search_spaces.joint_dim.supernet``)
trained with bilevel alternating updates (§3.2, Algorithm 1): per step an
architecture step on a held-out batch (Adam, ``arch_lr``, weight decay 1e-3:
cross-entropy plus the regulariser), then a weight step on a training batch
(Adam, ``weight_lr``, weight decay 1e-4, poly decay 0.9) — the training split
halved between the two, as DARTS does. After every epoch the current level
of the hierarchy (depth, then dilation-and-spatial, then channel) is shrunk:
candidates with ``σ(θ) / max σ(θ) < threshold`` are removed (Eq. 11). The
run ends when every group of every level has one candidate left (total
entropy 0) or at ``epochs``.

Regularisers (``regularizer``), each weighted per level by ``rho_depth``,
``rho_ops``, ``rho_channel`` and summed over the level's groups:

- ``ssr`` (Eq. 9): ``Σ_i log p_i``, bounded numerically by clamping ``p_i`` at
  ``1e-4`` inside the log (``log p → −∞`` as ``p → 0``; with shrinking at
  ``threshold`` a candidate is removed long before its probability gets
  that small, so the clamp only guards the gradient from exploding);
- ``none``: plain DARTS relaxation;
- ``entropy``: the information entropy ``−Σ_i p_i log p_i`` (Tables 13–14);
- ``l1``: ``Σ_i σ(θ_i)``, sparsity of the activations before normalisation;
- ``l2``: ``−Σ_i p_i²``, which a one-hot distribution minimises.

``flops_target`` (MACs at ``resolution``) adds ``flops_weight × max(0,
E[FLOPs] / target − 1)`` to the architecture loss, ``E[FLOPs]`` the analytic
cost of the expected architecture of the searchable stages plus the fixed
parts.

The hyperparameters (the sweep's ``space``) are the ρ per level, the
threshold, both learning rates and the regulariser; the paper's are the
architecture ``paper`` of that space (ρ = 0.15 / 0.3 / 0.3, h = 0.1, learning
rates 0.002 and 0.0003, SSR). The paper searches for 200 epochs on
Cityscapes; a run of a few hundred steps on a CPU moves Adam's logits by
about ``arch_lr`` per step, so the space also offers architecture learning
rates up to 0.1 (and weight learning rates up to 0.01) for short searches.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

import torch
import torch.nn.functional as F
from pydantic import Field, StrictBool

from raynas.devices import to_device
from raynas.settings import Positive, Section, Whole
from raynas.training_config import DataSection, EvaluationSection
from search_spaces.base import Block, Dimension, SearchSpace
from trainables.searching import SearchThatTrains, forever

REGULARIZERS = ("ssr", "none", "entropy", "l1", "l2")
LOG_FLOOR = 1e-4


class SSRSpace(SearchSpace):
    """The hyperparameters of one SSR run, as data (what a sweep's searchers propose)."""

    ARCH_NAMES = SearchSpace.ARCH_NAMES + ("paper",)

    def __init__(self):
        super().__init__("ssr_hyperparameters", [
            Block("regularizer", (Dimension("regularizer", REGULARIZERS),
                                  Dimension("rho_depth", (0.05, 0.1, 0.15, 0.3, 0.5)),
                                  Dimension("rho_ops", (0.1, 0.2, 0.3, 0.5, 0.8)),
                                  Dimension("rho_channel", (0.1, 0.2, 0.3, 0.5, 0.8)))),
            Block("shrinking", (Dimension("threshold", (0.05, 0.1, 0.2, 0.3)),)),
            Block("optimizer", (Dimension("arch_lr", (2e-3, 1e-2, 3e-2, 1e-1)),
                                Dimension("weight_lr", (3e-4, 1e-3, 3e-3, 1e-2)))),
        ])

    def paper(self) -> dict[str, Any]:
        """§5.2 and Fig. 7: ρ 0.15 / 0.3 / 0.3, h = 0.1, Adam 0.002 (architecture) and 0.0003 (weights)."""
        return {"regularizer": "ssr", "rho_depth": 0.15, "rho_ops": 0.3, "rho_channel": 0.3, "threshold": 0.1,
                "arch_lr": 2e-3, "weight_lr": 3e-4}

    def arch_from_name(self, name: str, seed: int | None = None) -> dict[str, Any]:
        return self.paper() if name == "paper" else super().arch_from_name(name, seed)


class SSRSettings(Section):
    """The ``sweep`` fields of the ``ssr`` objective (what every run shares)."""

    SECTION = "sweep"

    data: DataSection = Field(default_factory=lambda: DataSection(dataset="camvid", base_size=72, cache=True,
                                                                  crop_size=[64, 64], scale_range=(0.75, 1.25)))
    epochs: Whole(1) = 20
    steps_per_epoch: Whole(1) = 20
    batch_size: Whole(1) = 6  # the paper's
    warmup_epochs: Whole(0) = 0  # weight steps only, before the architecture moves
    evaluation: EvaluationSection = Field(default_factory=lambda: EvaluationSection(calibration_images=32,
                                                                                    val_images=None))
    resolution: tuple[Whole(8), Whole(8)] = (360, 480)  # where FLOPs and params are counted (CamVid, Table 10)
    aggregation: StrictBool = False
    flops_target: Positive | None = None
    flops_weight: Positive = 1.0
    seed: Whole(0) = 0


@dataclass
class SSRRun:
    """One run's state."""

    hyperparameters: dict[str, Any]
    net: Any
    arch_optimizer: Any
    weight_optimizer: Any
    scheduler: Any
    epoch: int = 0
    history: list[dict] = field(default_factory=list)
    device: str = "cpu"


class SSRObjective(SearchThatTrains):
    """A sweep objective whose trial is one SSR search run (see the module docstring)."""

    name: ClassVar[str] = "ssr"
    Settings: ClassVar[type[Section]] = SSRSettings
    metric: ClassVar[str] = "miou"
    mode: ClassVar[str] = "max"
    default_resources: ClassVar[dict[str, float]] = {"CPU": 1}

    def __init__(self, settings: SSRSettings):
        from search_spaces import get_space

        super().__init__(settings, SSRSpace(), get_space("joint_dim", aggregation=settings.aggregation))

    # --- data ------------------------------------------------------------------------------
    def datasets(self):
        """``(weights loader, architecture loader, calibration batches, validation batches, classes, ignore)``."""
        if self._data is None:
            from trainables.recalibration import evaluation_batches
            from trainables.training import batch_loader

            settings = self.settings
            train, calibration, val = settings.data.build()
            indices = list(range(len(train)))
            random.Random(settings.seed).shuffle(indices)
            half = len(indices) // 2
            weights, archs = (batch_loader(torch.utils.data.Subset(train, part), settings.batch_size,
                                           settings.data.loader_workers, shuffle=True)
                              for part in (indices[:half], indices[half:]))
            self._data = (weights, archs,
                          *evaluation_batches(calibration, val, settings.evaluation), train.num_classes,
                          train.ignore_index)
        return self._data

    # --- a run -------------------------------------------------------------------------------
    def start(self, hyperparameters: Mapping[str, Any], device: str) -> SSRRun:
        hp = self._space.from_config(hyperparameters)
        torch.manual_seed(self.settings.seed + int(hyperparameters.get("seed", 0)))
        classes = self.datasets()[4]
        net = self._arch_space.build_supernet(classes).to(device)
        arch_optimizer = torch.optim.Adam(net.arch_parameters(), lr=hp["arch_lr"], betas=(0.5, 0.999),
                                          weight_decay=1e-3)
        weight_optimizer = torch.optim.Adam(net.weight_parameters(), lr=hp["weight_lr"], weight_decay=1e-4)
        total = self.settings.epochs * self.settings.steps_per_epoch
        scheduler = torch.optim.lr_scheduler.LambdaLR(weight_optimizer, lambda s: (1 - min(s, total) / total) ** 0.9)
        return SSRRun(hp, net, arch_optimizer, weight_optimizer, scheduler, device=device)

    def regularizer(self, run: SSRRun) -> torch.Tensor:
        """The regulariser over every level's groups, weighted by its ρ."""
        from search_spaces.joint_dim.supernet import LEVELS

        kind, net, total = run.hyperparameters["regularizer"], run.net, 0.0
        if kind == "none":
            return torch.zeros((), device=run.device)
        for level, rho in zip(LEVELS, ("rho_depth", "rho_ops", "rho_channel")):
            for logits, _ in net.groups(level):
                alive = net.alive(logits) > 0
                if alive.sum() < 2:
                    continue
                p = net.probabilities(logits)[alive]
                if kind == "ssr":
                    term = p.clamp(min=LOG_FLOOR).log().sum()
                elif kind == "entropy":
                    term = -(p * p.clamp(min=LOG_FLOOR).log()).sum()
                elif kind == "l1":
                    term = torch.sigmoid(logits)[alive].sum()
                else:
                    term = -(p ** 2).sum()
                total = total + run.hyperparameters[rho] * term
        return total

    def _fixed_flops(self) -> float:
        """FLOPs of the parts no architecture parameter changes (downsamplers and head) at ``resolution``."""
        parts = self._arch_space.cost_breakdown(self._arch_space.min_arch(), tuple(self.settings.resolution),
                                                self.datasets()[4])
        return float(sum(v["flops"] for k, v in parts.items() if not k.startswith("stage")))

    def epoch(self, run: SSRRun) -> dict[str, Any]:
        from search_spaces.joint_dim.supernet import LEVELS

        settings, net = self.settings, run.net
        weights, archs, _, _, _, ignore = self.datasets()
        net.set_active(None)
        net.train()
        weight_batches, arch_batches = forever(weights), forever(archs)
        sums = {"loss": 0.0, "arch_loss": 0.0, "regularizer": 0.0}
        searching = run.epoch >= settings.warmup_epochs
        for _ in range(settings.steps_per_epoch):
            if searching:
                image, label = to_device(next(arch_batches), run.device)
                run.arch_optimizer.zero_grad(set_to_none=True)
                task = F.cross_entropy(net(image), label, ignore_index=ignore)
                reg = self.regularizer(run)
                loss = task + reg
                if settings.flops_target is not None:
                    expected = net.expected_flops(tuple(settings.resolution)) + self._fixed_flops()
                    loss = loss + settings.flops_weight * F.relu(expected / settings.flops_target - 1)
                loss.backward()
                run.arch_optimizer.step()
                sums["arch_loss"] += float(task.detach())
                sums["regularizer"] += float(reg.detach()) if torch.is_tensor(reg) else float(reg)
            image, label = to_device(next(weight_batches), run.device)
            run.weight_optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(net(image), label, ignore_index=ignore)
            loss.backward()
            run.weight_optimizer.step()
            run.scheduler.step()
            sums["loss"] += float(loss.detach())
        run.epoch += 1
        level = next((lv for lv in LEVELS if not net.discrete(lv)), None)
        removed = net.shrink(level, run.hyperparameters["threshold"]) if level and searching else 0
        entropy = {lv: net.entropy(lv) for lv in LEVELS}
        metrics = {"epoch": run.epoch, **{k: v / settings.steps_per_epoch for k, v in sums.items()},
                   "entropy": sum(entropy.values()), **{f"entropy_{lv}": entropy[lv] for lv in LEVELS},
                   **{f"candidates_{lv}": net.candidates_left(lv) for lv in LEVELS},
                   "shrinking_level": level or "done", "removed": removed,
                   "discrete": all(net.discrete(lv) for lv in LEVELS),
                   "relaxed_miou": self._relaxed_miou(run)}
        run.history.append(metrics)
        return metrics

    def _relaxed_miou(self, run: SSRRun) -> float:
        from trainables.recalibration import evaluate_model

        *_, val, classes, ignore = self.datasets()
        run.net.set_active(None)
        return evaluate_model(run.net, val, classes, ignore, run.device,
                              self.settings.evaluation.precision).compute()["miou"]

    def done(self, run: SSRRun) -> bool:
        return run.epoch >= self.settings.epochs or bool(run.history and run.history[-1]["discrete"])

    def found(self, run: SSRRun) -> dict[str, Any]:
        return run.net.argmax_arch()

    def score(self, run: SSRRun, arch: Mapping[str, Any]) -> dict[str, Any]:
        """``miou`` of ``arch`` with the run's weights (BN recalibrated), the discretization gap, FLOPs, params."""
        from trainables.recalibration import evaluate_arch

        _, _, calibration, val, classes, ignore = self.datasets()
        metric, _, _ = evaluate_arch(run.net, arch, calibration, val, classes, ignore, run.device,
                                     self.settings.evaluation.precision)
        run.net.set_active(None)
        miou = metric.compute()["miou"]
        cost = self._arch_space.cost(arch, tuple(self.settings.resolution), classes)
        relaxed = run.history[-1]["relaxed_miou"] if run.history else float("nan")
        return {"miou": miou, "discretization_gap": relaxed - miou, **cost}

    def state(self, run: SSRRun) -> dict[str, Any]:
        return {"net": run.net.state_dict(), "arch_optimizer": run.arch_optimizer.state_dict(),
                "weight_optimizer": run.weight_optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
                "epoch": run.epoch, "history": run.history}

    def restore(self, hyperparameters: Mapping[str, Any], state: Mapping[str, Any], device: str) -> SSRRun:
        run = self.start(hyperparameters, device)
        run.net.load_state_dict(state["net"])
        run.arch_optimizer.load_state_dict(state["arch_optimizer"])
        run.weight_optimizer.load_state_dict(state["weight_optimizer"])
        run.scheduler.load_state_dict(state["scheduler"])
        run.epoch, run.history = state["epoch"], list(state["history"])
        return run

    def weights(self, run: SSRRun) -> tuple[dict, dict[str, Any]]:
        _, _, _, _, classes, ignore = self.datasets()
        return run.net.state_dict(), {
            "space": self._arch_space.name, "space_options": {"aggregation": self.settings.aggregation},
            "num_classes": classes, "ignore_index": ignore, "epoch": run.epoch, "history": run.history,
            "config": {"data": self.settings.data.dump()}}

    def record(self) -> dict[str, Any]:
        return {**super().record(), "method": "ssr", "arch_space": self._arch_space.name, **self.settings.dump()}


__all__ = ["REGULARIZERS", "SSRObjective", "SSRSettings", "SSRSpace"]
