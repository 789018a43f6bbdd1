"""The relaxed joint-dimensional supernet of seed paper 004 (§3.2).

Three levels of architecture parameters, each σ-activated and normalised
over the candidates still alive (``p_i = σ(θ_i) / Σ_alive σ(θ_j)``):

- depth (α): per stage, one logit per depth choice; the stage's output is
  ``Σ_d p_d · l_d``, ``l_d`` the output after its first d layers (Eq. 2);
- dilation-and-spatial (β): per layer, one logit per operator (dilation r,
  pooling s); the layer is ``relu(x + Σ_op p_op · branch_op(x))`` (Eq. 3–4),
  every operator with its own weights;
- channel (γ): per layer, operator and convolution (3×1, 1×3), one logit per
  channel count c_k; the convolution's output is multiplied by
  ``Σ_k p_k M_k``, ``M_k`` the 0/1 mask of its first c_k channels (Eq. 5),
  the masks shared by every operator of the layer.

A removed candidate has probability exactly 0 and is not computed; one
candidate alive has probability exactly 1, so with every group down to one
candidate (``set_active(arch)`` does this for ``arch`` without touching the
search's own state) the supernet computes exactly the discrete network, and
``extract(arch)`` copies its weights into a static ``JointDimNet`` with equal
outputs. Sandwich training (``train-supernet``) uses ``set_active`` per step
like any weight-sharing space.
"""

from __future__ import annotations

import itertools
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from search_spaces.joint_dim.network import (
    CHANNEL_RANGE,
    CHANNEL_STEP,
    DEPTHS,
    DILATIONS,
    POOLS,
    WIDTHS,
    Downsampler,
    Head,
    JointDimNet,
    layer_name,
)

OPS = tuple(itertools.product(DILATIONS, POOLS))  # (dilation, pool), the operators of Table 2
LEVELS = ("depth", "dilation_spatial", "channel")
CONVS = ("c31", "c13")


class OpBranch(nn.Module):
    """One operator (r, s) of a layer at full width: pool, conv 3×1, BN, ReLU, mask, conv 1×3, BN, mask, resize."""

    def __init__(self, width: int, dilation: int, pool: int):
        super().__init__()
        self.dilation, self.pool = dilation, pool
        self.conv31 = nn.Conv2d(width, width, (3, 1), padding=(dilation, 0), dilation=(dilation, 1), bias=False)
        self.bn31 = nn.BatchNorm2d(width)
        self.conv13 = nn.Conv2d(width, width, (1, 3), padding=(0, dilation), dilation=(1, dilation), bias=False)
        self.bn13 = nn.BatchNorm2d(width)

    def forward(self, x, mask31, mask13):
        y = F.avg_pool2d(x, self.pool, self.pool) if self.pool > 1 else x
        y = F.relu(self.bn31(self.conv31(y))) * mask31[None, :, None, None]
        y = self.bn13(self.conv13(y)) * mask13[None, :, None, None]
        if self.pool > 1:
            y = F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return y


class RelaxedJointDimNet(nn.Module):
    """The supernet of a ``JointDimSpace``; see the module docstring."""

    def __init__(self, space, num_classes: int):
        super().__init__()
        self.space, self.num_classes = space, num_classes
        self.db1 = Downsampler(3, 16)
        self.db2 = Downsampler(16, WIDTHS[0])
        self.db3 = Downsampler(WIDTHS[0], WIDTHS[1])
        self.stages = nn.ModuleList(
            nn.ModuleList(nn.ModuleList(OpBranch(width, r, s) for r, s in OPS) for _ in range(max(depths)))
            for width, depths in zip(WIDTHS, DEPTHS))
        self.head = Head(WIDTHS, num_classes, space.aggregation)
        self.channel_choices = tuple(tuple(range(w - CHANNEL_RANGE, w + 1, CHANNEL_STEP)) for w in WIDTHS)
        self.alpha = nn.ParameterList(nn.Parameter(torch.zeros(len(d))) for d in DEPTHS)
        self.beta = nn.ParameterList(nn.Parameter(torch.zeros(len(OPS))) for depths in DEPTHS
                                     for _ in range(max(depths)))
        self.gamma = nn.ParameterList(nn.Parameter(torch.zeros(len(self.channel_choices[stage])))
                                      for stage, depths in enumerate(DEPTHS)
                                      for _ in range(max(depths)) for _ in OPS for _ in CONVS)
        self._index = {id(p): i for i, p in enumerate(self.arch_parameters())}
        for i, p in enumerate(self.arch_parameters()):  # 1 alive, 0 removed: buffers, so checkpoints keep them
            self.register_buffer(f"alive{i}", torch.ones_like(p))
        self.active_arch: dict[str, Any] | None = None

    # --- indexing ----------------------------------------------------------------------
    def alive(self, logits: nn.Parameter) -> torch.Tensor:
        """Which candidates of a group are still alive (1) or removed (0)."""
        return getattr(self, f"alive{self._index[id(logits)]}")

    def probabilities(self, logits: nn.Parameter) -> torch.Tensor:
        """σ-activated, normalised over the alive candidates (removed ones exactly 0)."""
        weights = torch.sigmoid(logits) * self.alive(logits)
        return weights / weights.sum()

    def _beta(self, stage: int, layer: int) -> nn.Parameter:
        return self.beta[(0 if stage == 0 else max(DEPTHS[0])) + layer]

    def _gamma(self, stage: int, layer: int, op: int, conv: int) -> nn.Parameter:
        offset = 0 if stage == 0 else max(DEPTHS[0]) * len(OPS) * len(CONVS)
        return self.gamma[offset + (layer * len(OPS) + op) * len(CONVS) + conv]

    def arch_parameters(self) -> list[nn.Parameter]:
        return [*self.alpha, *self.beta, *self.gamma]

    def weight_parameters(self) -> list[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    # --- the active architecture ---------------------------------------------------------
    def set_active(self, arch: Mapping[str, Any] | None) -> None:
        """Compute exactly ``arch`` (validated) from now on; ``None`` goes back to the relaxed network."""
        self.active_arch = None if arch is None else self.space.validate(arch)

    def _one_hot(self, n: int, index: int, device) -> torch.Tensor:
        p = torch.zeros(n, device=device)
        p[index] = 1.0
        return p

    def _depth_p(self, stage: int, device) -> torch.Tensor:
        if self.active_arch is not None:
            d = self.active_arch[f"s{stage + 1}_depth"]
            return self._one_hot(len(DEPTHS[stage]), DEPTHS[stage].index(d), device)
        return self.probabilities(self.alpha[stage])

    def _op_p(self, stage: int, layer: int, device) -> torch.Tensor:
        if self.active_arch is not None:
            a = self.active_arch
            key = (a[layer_name(stage + 1, layer + 1, "dilation")], a[layer_name(stage + 1, layer + 1, "pool")])
            return self._one_hot(len(OPS), OPS.index(key), device)
        return self.probabilities(self._beta(stage, layer))

    def _mask(self, stage: int, layer: int, op: int, conv: int, device) -> torch.Tensor:
        choices = self.channel_choices[stage]
        if self.active_arch is not None:
            p = self._one_hot(len(choices), choices.index(self.active_arch[layer_name(stage + 1, layer + 1,
                                                                                     CONVS[conv])]), device)
        else:
            p = self.probabilities(self._gamma(stage, layer, op, conv))
        width = WIDTHS[stage]
        masks = (torch.arange(width, device=device)[None, :] < torch.tensor(choices, device=device)[:, None]).float()
        return p @ masks  # Σ_k p_k M_k

    # --- forward ------------------------------------------------------------------------------
    def _stage(self, stage: int, x: torch.Tensor) -> torch.Tensor:
        device = x.device
        depth_p = self._depth_p(stage, device)
        depths = DEPTHS[stage]
        last = max(d for d, p in zip(depths, depth_p) if p > 0)
        out = torch.zeros_like(x) if depth_p[depths.index(last)] < 1 else None
        for layer in range(last):
            op_p = self._op_p(stage, layer, device)
            mixed = 0
            for op, branch in enumerate(self.stages[stage][layer]):
                if op_p[op] > 0:
                    mixed = mixed + op_p[op] * branch(x, self._mask(stage, layer, op, 0, device),
                                                      self._mask(stage, layer, op, 1, device))
            x = F.relu(x + mixed)
            if layer + 1 in depths and out is not None:
                out = out + depth_p[depths.index(layer + 1)] * x
        return x if out is None else out

    def forward(self, x):
        low = self._stage(0, self.db2(self.db1(x)))
        high = self._stage(1, self.db3(low))
        logits = self.head(low, high)
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)

    # --- the discrete network ------------------------------------------------------------
    @torch.no_grad()
    def extract(self, arch: Mapping[str, Any] | None = None) -> JointDimNet:
        """A static ``JointDimNet`` of ``arch`` (default: the active one, else the argmax architecture)."""
        arch = self.space.validate(arch or self.active_arch or self.argmax_arch())
        static = JointDimNet(self.space.spec(arch, self.num_classes)).to(next(self.parameters()).device)
        for name in ("db1", "db2", "db3", "head"):
            getattr(static, name).load_state_dict(getattr(self, name).state_dict())
        for stage, layers in enumerate((static.stage1, static.stage2)):
            for layer, module in enumerate(layers):
                source = self.stages[stage][layer][OPS.index((module.spec.dilation, module.spec.pool))]
                c31, c13 = module.spec.c31, module.spec.c13
                module.conv31.weight.copy_(source.conv31.weight[:c31])
                module.conv13.weight.copy_(source.conv13.weight[:c13, :c31])
                for target, bn, n in ((module.bn31, source.bn31, c31), (module.bn13, source.bn13, c13)):
                    for key in ("weight", "bias", "running_mean", "running_var"):
                        getattr(target, key).copy_(getattr(bn, key)[:n])
                    target.num_batches_tracked.copy_(bn.num_batches_tracked)
        return static.train(self.training)

    # --- the search's view: probabilities, entropy, the argmax, shrinking -------------------
    def groups(self, level: str) -> list[tuple[nn.Parameter, tuple]]:
        """The (logits, choices) groups of ``level`` still considered: layers beyond a stage's deepest
        alive depth, and the channels of removed operators, are not."""
        out = []
        for stage, depths in enumerate(DEPTHS):
            alive_depths = [d for d, a in zip(depths, self.alive(self.alpha[stage])) if a > 0]
            if level == "depth":
                out.append((self.alpha[stage], depths))
                continue
            for layer in range(max(alive_depths)):
                beta = self._beta(stage, layer)
                if level == "dilation_spatial":
                    out.append((beta, OPS))
                    continue
                for op in range(len(OPS)):
                    if self.alive(beta)[op] > 0:
                        out += [(self._gamma(stage, layer, op, conv), self.channel_choices[stage])
                                for conv in range(len(CONVS))]
        return out

    def entropy(self, level: str) -> float:
        """Σ over ``level``'s groups of −Σ p log p (0 when every group has one candidate left)."""
        with torch.no_grad():
            total = 0.0
            for logits, _ in self.groups(level):
                p = self.probabilities(logits)
                p = p[p > 0]
                total += float(-(p * p.log()).sum())
            return total

    def candidates_left(self, level: str) -> int:
        return int(sum(self.alive(g).sum() for g, _ in self.groups(level)))

    def discrete(self, level: str) -> bool:
        return all(self.alive(g).sum() == 1 for g, _ in self.groups(level))

    def argmax_arch(self) -> dict[str, Any]:
        """The most probable architecture (per group, the alive candidate of highest probability)."""
        arch = {}
        with torch.no_grad():
            for stage, depths in enumerate(DEPTHS):
                arch[f"s{stage + 1}_depth"] = depths[int(self.probabilities(self.alpha[stage]).argmax())]
                for layer in range(max(depths)):
                    op = int(self.probabilities(self._beta(stage, layer)).argmax())
                    r, s = OPS[op]
                    arch[layer_name(stage + 1, layer + 1, "dilation")] = r
                    arch[layer_name(stage + 1, layer + 1, "pool")] = s
                    for conv, name in enumerate(CONVS):
                        k = int(self.probabilities(self._gamma(stage, layer, op, conv)).argmax())
                        arch[layer_name(stage + 1, layer + 1, name)] = self.channel_choices[stage][k]
        return self.space.validate(arch)

    @torch.no_grad()
    def select(self, arch: Mapping[str, Any]) -> None:
        """Remove every candidate but ``arch``'s in every group: the architecture parameters become one-hot
        (probability exactly 1), so the relaxed network computes ``arch`` (unlike ``set_active``, this is the
        search's own state, as shrinking leaves it at the end)."""
        a = self.space.validate(arch)

        def keep(logits, index):
            alive = self.alive(logits)
            alive.zero_()
            alive[index] = 1.0

        for stage, depths in enumerate(DEPTHS):
            keep(self.alpha[stage], depths.index(a[f"s{stage + 1}_depth"]))
            for layer in range(max(depths)):
                op = OPS.index((a[layer_name(stage + 1, layer + 1, "dilation")],
                                a[layer_name(stage + 1, layer + 1, "pool")]))
                keep(self._beta(stage, layer), op)
                for conv, name in enumerate(CONVS):
                    choice = self.channel_choices[stage].index(a[layer_name(stage + 1, layer + 1, name)])
                    keep(self._gamma(stage, layer, op, conv), choice)

    def shrink(self, level: str, threshold: float) -> int:
        """Remove the candidates of ``level`` whose ``σ(θ) / max σ(θ)`` (alive ones) is below ``threshold``
        (Eq. 11); returns how many were removed. The best candidate of a group always stays."""
        removed = 0
        with torch.no_grad():
            for logits, _ in self.groups(level):
                alive = self.alive(logits)
                weights = torch.sigmoid(logits) * alive
                drop = (weights / weights.max() < threshold) & (alive > 0)
                alive[drop] = 0.0
                removed += int(drop.sum())
        return removed

    def expected_flops(self, resolution: tuple[int, int]) -> torch.Tensor:
        """The analytic MACs of the searchable stages, expected under the current probabilities
        (differentiable; the fixed downsamplers and head add a constant)."""
        h, w = resolution
        total = 0
        for stage, (width, depths) in enumerate(zip(WIDTHS, DEPTHS)):
            hh, ww = h // (4 * 2 ** stage), w // (4 * 2 ** stage)
            choices = torch.tensor(self.channel_choices[stage], dtype=torch.float32, device=self.alpha[0].device)
            layer_flops = []
            for layer in range(max(depths)):
                op_p = self.probabilities(self._beta(stage, layer))
                expected = 0
                for op, (_, s) in enumerate(OPS):
                    if op_p[op] > 0:
                        c31 = self.probabilities(self._gamma(stage, layer, op, 0)) @ choices
                        c13 = self.probabilities(self._gamma(stage, layer, op, 1)) @ choices
                        expected = expected + op_p[op] * (3 * width * c31 + 3 * c31 * c13) * (hh // s) * (ww // s)
                layer_flops.append(expected)
            cumulative = torch.cumsum(torch.stack([torch.as_tensor(f, dtype=torch.float32, device=choices.device)
                                                   for f in layer_flops]), 0)
            depth_p = self.probabilities(self.alpha[stage])
            total = total + (depth_p * cumulative[[d - 1 for d in depths]]).sum()
        return total


__all__ = ["CONVS", "LEVELS", "OPS", "RelaxedJointDimNet"]
