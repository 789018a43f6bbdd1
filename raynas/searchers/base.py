"""What every raynas searcher shares: architecture bookkeeping and a saved state.

``ArchSearcher`` is a Ray Tune ``Searcher`` over any ``SearchSpace``: it
proposes only feasible, never-seen architectures, remembers pending trials and
the history of results, and saves/restores its whole state (random generator
included) so ``Tuner.restore`` continues exactly where a run stopped. The
budget and the constraint of a sweep are applied to every searcher alike by
``raynas.sweep_search.RunSearch``.
"""

from __future__ import annotations

import itertools
import logging
import math
import pickle
import random
from typing import Optional

from ray.tune.search import Searcher

from raynas.constraints import Constraint, CostFn, is_feasible
from raynas.errors import UserError, check_choice
from search_spaces.base import Arch, SearchSpace

logger = logging.getLogger(__name__)

class ArchSearcher(Searcher):
    """Base of our searchers: feasible, deduplicated proposals and a saved state.

    Subclasses implement ``_propose() -> Arch | None | Searcher.FINISHED`` and
    ``_observe(arch, score)``; scores are "higher is better" (negated for ``mode="min"``),
    ``-inf`` for a failed trial: a float for one metric, a tuple for several
    (``metric`` and ``mode`` lists). ``STATE`` names the attributes saved besides the base ones.
    """

    STATE: tuple[str, ...] = ()
    _BASE_STATE = ("rng_state", "seen", "pending", "history", "infeasible_seen")

    def __init__(
        self,
        space: SearchSpace,
        cost: CostFn,
        constraint: Constraint | None = None,
        metric: str | list[str] | None = None,
        mode: str | list[str] = "max",
        seed: int = 0,
        max_tries: int = 20_000,
    ):
        for each in [mode] if isinstance(mode, str) else mode:
            check_choice("mode", each, ("min", "max"))
        super().__init__(metric=metric, mode=mode)
        self.space = space
        self.cost = cost
        self.constraint = constraint
        self.max_tries = max_tries
        self.rng = random.Random(seed)
        self.seen: set[str] = set()
        self.pending: dict[str, Arch] = {}
        self.history: list[tuple[str, float]] = []  # (arch_id, score) in completion order
        self.infeasible_seen = 0  # infeasible candidates rejected while sampling

    # --- Tune protocol -----------------------------------------------------
    def set_search_properties(self, metric: Optional[str], mode: Optional[str], config: dict, **spec) -> bool:
        """Accept Tune's param space (our space already defines it)."""
        if metric:
            self._metric = metric
        if mode:
            self._mode = mode
        return True

    def suggest(self, trial_id: str):
        arch = self._propose()
        if arch is None or arch == Searcher.FINISHED:
            return arch
        self.seen.add(self.space.arch_id(arch))
        self.pending[trial_id] = arch
        return dict(arch)

    def on_trial_complete(self, trial_id: str, result: Optional[dict] = None, error: bool = False) -> None:
        arch = self.pending.pop(trial_id, None)
        if arch is None:
            return
        score = self.score(None if error else result)
        self.history.append((self.space.arch_id(arch), score))
        self._observe(trial_id, arch, score)

    def score(self, result: Optional[dict]):
        """``result`` as "higher is better": a float, or a tuple for several metrics; ``-inf`` where missing."""
        single = isinstance(self.metric, str)
        values = []
        for metric, mode in zip([self.metric] if single else self.metric, [self.mode] if single else self.mode):
            value = (result or {}).get(metric)
            value = -math.inf if value is None else float(value) if mode == "max" else -float(value)
            values.append(value)
        return values[0] if single else tuple(values)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.get_state(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.set_state(pickle.load(f))

    def get_state(self) -> dict:
        self.rng_state = self.rng.getstate()
        return {name: getattr(self, name) for name in self._BASE_STATE + self.STATE}

    def set_state(self, state: dict) -> None:
        for name, value in state.items():
            setattr(self, name, value)
        self.rng.setstate(self.rng_state)

    # --- for subclasses --------------------------------------------------------
    def _propose(self):
        raise NotImplementedError

    def _observe(self, trial_id: str, arch: Arch, score: float) -> None:
        raise NotImplementedError

    def is_new(self, arch: Arch) -> bool:
        """Never seen and feasible (counts infeasible candidates)."""
        if self.space.arch_id(arch) in self.seen:
            return False
        if not is_feasible(self.constraint, self.cost, arch):
            self.infeasible_seen += 1
            return False
        return True

    def random_new(self, block: str | None = None, base: Arch | None = None) -> Arch | None:
        """A uniform feasible unseen architecture (only ``block`` of ``base`` resampled), or None.

        Raises a clear error when rejection sampling finds no feasible architecture at all.
        """
        found_feasible = False
        for _ in range(self.max_tries):
            arch = self.space.sample(self.rng, block=block, base=base)
            if not is_feasible(self.constraint, self.cost, arch):
                self.infeasible_seen += 1
                continue
            found_feasible = True
            if self.space.arch_id(arch) not in self.seen:
                return arch
        if not found_feasible and block is None:
            raise UserError(
                f"constraint {self.constraint.to_dict() if self.constraint else None} admits none of "
                f"{self.max_tries} random architectures of space {self.space.name!r}; raise the limit"
            )
        return None

    def block_candidates(self, base: Arch, block: str, limit: int) -> list[Arch]:
        """Up to ``limit`` distinct new feasible architectures differing from ``base`` only in ``block``.

        Small blocks are enumerated (so an exhausted block yields nothing); large ones sampled.
        """
        dims = self.space.block(block).dimensions
        if math.prod(len(d.choices) for d in dims) <= 4096:
            pool = [base | dict(zip((d.name for d in dims), values))
                    for values in itertools.product(*(d.choices for d in dims))]
            self.rng.shuffle(pool)
            out = []
            for arch in pool:
                if len(out) >= limit:
                    break
                if self.is_new(arch):
                    out.append(arch)
            return out
        out, ids = [], set()
        for _ in range(limit * 50):
            if len(out) >= limit:
                break
            arch = self.space.sample(self.rng, block=block, base=base)
            if self.space.arch_id(arch) not in ids and self.is_new(arch):
                ids.add(self.space.arch_id(arch))
                out.append(arch)
        return out

    def single_changes(self, base: Arch, block: str | None = None) -> list[Arch]:
        """Every new feasible architecture one dimension (of ``block``) away from ``base``, shuffled."""
        dims = self.space.block(block).dimensions if block else self.space.dimensions
        out = [base | {d.name: c} for d in dims for c in d.choices if c != base[d.name]]
        self.rng.shuffle(out)
        return [arch for arch in out if self.is_new(arch)]
