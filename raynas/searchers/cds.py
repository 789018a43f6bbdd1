"""Coordinate Descent Search (Efficient-TopFormer, seed paper 000, sec. 3.2) as a Ray Tune Searcher.

The paper's structure: start from a feasible architecture, then cyclic
rounds over the coordinate blocks of the space (``space.block_names``), each
optimising one block with the other blocks fixed at the incumbent. How a
round searches its block (``sampler``):

- ``"ranked"`` (default): every setting of the block (all of them for blocks
  of up to 4096 settings, else every one-dimension change plus random
  settings up to that many) is ranked by a surrogate fitted on the run's own
  results (``surrogate.OneHotRidge``: ridge regression on one-hot dimension
  values, plus ``beta`` predictive standard deviations); the best-ranked
  feasible, unseen ones are evaluated in turn, so moves may change several
  dimensions of the block at once. A result that beats the incumbent becomes
  the incumbent and the block is ranked again around it (first
  improvement). After ``patience`` evaluations without one, only the
  incumbent's unseen one-dimension changes stay queued (still best-ranked
  first), and the round ends when they are used up: the surrogate orders the
  search and proposes jumps, but a block is left only at a local optimum of
  its one-change neighbourhood, as with ``"neighbourhood"`` (a surrogate
  that cannot see an interaction never hides the move that needs it).
- ``"neighbourhood"`` (the previous default): one-dimension moves of the
  block in random order, first improvement, until none is left.
- ``"uniform"`` (the paper, ``cds_uniform``): ``candidates_per_round`` uniform
  draws of the block; the best of the round and the incumbent wins.

Each start evaluates ``start_samples`` architectures and takes the best as
incumbent. The first start draws them uniformly; when a whole cycle of
rounds brings no improvement the search restarts, from perturbations of the
best architectures seen (``restart="elite"``, default: one of the
``elite`` best, one to ``perturb`` dimensions changed) or uniformly
(``restart="random"``, the previous default). All candidates of a round
are proposed as Tune asks (concurrently); ``suggest`` returns ``None`` while
the round waits for its results. Never proposes an infeasible or
already-seen architecture; saves and restores its whole state.
"""

from __future__ import annotations

import itertools
import math

from ray.tune.search import Searcher

from raynas.errors import check_choice, check_number, check_whole
from raynas.searchers.base import ArchSearcher
from raynas.searchers.surrogate import OneHotRidge
from search_spaces.base import Arch

SAMPLERS = ("ranked", "neighbourhood", "uniform")
RESTARTS = ("elite", "random")
POOL = 4096  # block settings ranked at most per round


class CoordinateDescentSearch(ArchSearcher):
    """Cyclic block coordinate descent over any search space (see the module docstring for the options).

    State saved for ``Tuner.restore``: round, block, incumbent, best, the round's
    queue and pending trials, the results the surrogate learns from, history and
    the random generator.
    """

    STATE = ("incumbent", "best", "round", "block_index", "starting", "start_issued", "restarts", "queue",
             "round_trials", "round_results", "round_evaluated", "round_improved", "since_improvement",
             "stale_rounds", "observed")

    def __init__(self, *args, sampler: str = "ranked", candidates_per_round: int | None = None,
                 start_samples: int = 10, restart: str = "elite", patience: int = 3, elite: int = 5,
                 perturb: int = 2, beta: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.sampler = check_choice("cds sampler", sampler, SAMPLERS)
        self.restart = check_choice("cds restart", restart, RESTARTS)
        default_quota = 10 if sampler == "uniform" else 1_000_000
        self.candidates_per_round = check_whole("cds candidates_per_round", candidates_per_round or default_quota, 1)
        self.start_samples = check_whole("cds start_samples", start_samples, 1)
        self.patience = check_whole("cds patience", patience, 1)
        self.elite = check_whole("cds elite", elite, 1)
        self.perturb = check_whole("cds perturb", perturb, 1)
        self.beta = float(check_number("cds beta", beta, 0))
        self.surrogate = OneHotRidge(self.space)
        self.incumbent: tuple[dict, float] | None = None  # centre of the current round
        self.best: tuple[dict, float] | None = None
        self.round = 0
        self.block_index = 0
        self.starting = True  # evaluating (re)start samples
        self.start_issued = 0
        self.restarts = 0
        self.queue: list[dict] = []  # candidates of the round not yet proposed (best-ranked last)
        self.round_trials: set[str] = set()  # proposed, result pending
        self.round_results: list[tuple[dict, float]] = []
        self.round_evaluated = 0
        self.round_improved = False
        self.since_improvement = 0
        self.stale_rounds = 0  # consecutive rounds without improvement
        self.observed: list[tuple[dict, float]] = []  # what the surrogate learns from

    def __getstate__(self) -> dict:  # the surrogate is refitted from ``observed``
        return {k: v for k, v in self.__dict__.items() if k != "surrogate"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.surrogate = OneHotRidge(self.space)

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        self._refit()

    @property
    def block(self) -> str:
        return self.space.block_names[self.block_index]

    # --- proposals ----------------------------------------------------------
    def _propose(self):
        if self.starting:
            if self.start_issued < self.start_samples:
                arch = self._start_candidate()
                if arch is not None:
                    self.start_issued += 1
                    return arch
                self.start_issued = self.start_samples  # space exhausted
            if self.round_trials:
                return None
            if not self.round_results:
                return Searcher.FINISHED
            self._finish_start()
            return self._propose()
        while self.queue:
            arch = self.queue.pop()
            if self.is_new(arch):  # may have been seen since it was queued
                self.round_evaluated += 1
                return arch
        if self.round_trials:
            return None  # the round waits for its results
        self._finish_batch()
        return self._propose()

    def suggest(self, trial_id: str):
        config = super().suggest(trial_id)
        if isinstance(config, dict):
            self.round_trials.add(trial_id)
        return config

    def _start_candidate(self) -> Arch | None:
        """A uniform draw; on a restart with ``restart="elite"``, a perturbation of one of the best seen."""
        if self.restarts and self.restart == "elite" and self.observed:
            elite = self._elites()
            for _ in range(200):
                arch = dict(self.rng.choice(elite))
                for _ in range(self.rng.randint(1, self.perturb)):
                    arch = self.space.mutate(arch, self.rng)
                if self.is_new(arch):
                    return arch
        return self.random_new()

    def _elites(self) -> list[Arch]:
        """What a restart perturbs: the ``elite`` best architectures seen."""
        return [a for a, _ in sorted(self.observed, key=lambda r: self.utility(r[1]), reverse=True)[: self.elite]]

    def _one_change_queue(self) -> list[Arch]:
        """The queued one-dimension changes of the incumbent (what a ranked round checks after ``patience``)."""
        centre = self.incumbent[0]
        return [a for a in self.queue if sum(a[k] != centre[k] for k in centre) == 1]

    # --- results ------------------------------------------------------------
    def utility(self, score) -> float:
        """How good a score is for the current round (higher is better); one metric: the score itself."""
        return score

    def _observe(self, trial_id, arch, score) -> None:
        if self.best is None or self.utility(score) > self.utility(self.best[1]):
            self.best = (arch, score)
        self.round_trials.discard(trial_id)
        if all(map(math.isfinite, score if isinstance(score, tuple) else (score,))):
            self.observed.append((arch, score))
            if self.sampler == "ranked":
                self._refit()
        if self.starting:
            self.round_results.append((arch, score))
            if self.start_issued >= self.start_samples and not self.round_trials:
                self._finish_start()
            return
        if self.sampler != "uniform" and self._improves(arch, score):
            self.incumbent = (arch, score)  # first improvement: continue from it at once
            self.round_improved = True
            self.since_improvement = 0
            self._fill_queue()
        else:
            self.since_improvement += 1
            self.round_results.append((arch, score))
            if self.sampler == "ranked":
                self.queue = self._ranked(self.queue)
                if self.since_improvement >= self.patience:
                    self.queue = self._one_change_queue()
        if not self.queue and not self.round_trials:
            self._finish_batch()

    def _improves(self, arch, score) -> bool:
        return self.utility(score) > self.utility(self.incumbent[1])

    def _refit(self) -> None:
        if self.observed:
            self.surrogate.fit([a for a, _ in self.observed], [s for _, s in self.observed])

    def _predicted(self, candidates: list[Arch]):
        """What the surrogate expects of ``candidates`` (optimistically), as utilities."""
        return self.surrogate.ucb(candidates, self.beta)

    def _finish_start(self) -> None:
        self.incumbent = max(self.round_results, key=lambda r: self.utility(r[1]))
        self.starting = False
        self._begin_round()

    def _begin_round(self) -> None:
        self.round_results, self.round_evaluated, self.round_improved = [], 0, False
        self.since_improvement = 0
        self._fill_queue()
        if not self.queue:
            self._finish_batch()

    def _fill_queue(self) -> None:
        quota = self.candidates_per_round - self.round_evaluated
        centre = self.incumbent[0]
        if quota <= 0:
            self.queue = []
        elif self.sampler == "uniform":
            self.queue = self.block_candidates(centre, self.block, quota)
        elif self.sampler == "neighbourhood":
            self.queue = self.single_changes(centre, self.block)[:quota]
        else:
            self.queue = self._ranked(self._block_pool(centre, self.block))

    def _block_pool(self, centre: Arch, block: str) -> list[Arch]:
        """Unseen settings of ``block`` around ``centre``: all of them, or every one-dimension change plus
        random settings up to ``POOL`` (feasibility is checked when one is proposed)."""
        dims = self.space.block(block).dimensions
        if math.prod(len(d.choices) for d in dims) <= POOL:
            pool = [centre | dict(zip((d.name for d in dims), values))
                    for values in itertools.product(*(d.choices for d in dims))]
        else:
            pool = [centre | {d.name: c} for d in dims for c in d.choices if c != centre[d.name]]
            pool += [self.space.sample(self.rng, block=block, base=centre) for _ in range(POOL - len(pool))]
        unique = {self.space.arch_id(a): a for a in pool}
        return [a for key, a in unique.items() if key not in self.seen]

    def _ranked(self, candidates: list[Arch]) -> list[Arch]:
        """``candidates`` by surrogate score, best last (``pop`` takes the best); ties broken at random."""
        if not candidates:
            return []
        self.rng.shuffle(candidates)
        scores = self._predicted(candidates)
        return [candidates[i] for i in sorted(range(len(candidates)), key=lambda i: scores[i])]

    def _finish_batch(self) -> None:
        """Every proposed candidate has its result: keep the best (uniform sampler) and end the round."""
        top = max(self.round_results, key=lambda r: self.utility(r[1]), default=None)
        self.round_results = []
        if top is not None and self._improves(*top):
            self.incumbent = top
            self.round_improved = True
        self._end_round()

    def _end_round(self) -> None:
        self.stale_rounds = 0 if self.round_improved else self.stale_rounds + 1
        self.round += 1
        self.block_index = (self.block_index + 1) % len(self.space.block_names)
        if self.stale_rounds >= len(self.space.block_names):  # a local optimum in every block
            self.stale_rounds = 0
            self.starting, self.start_issued, self.incumbent = True, 0, None
            self.restarts += 1
            return
        self._begin_round()

