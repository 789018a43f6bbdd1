"""Coordinate Descent Search (Efficient-TopFormer, seed paper 000, sec. 3.2) as a Ray Tune Searcher.

Start from a random feasible architecture; each round optimises one coordinate
block of the space (cyclically, in ``space.block_names`` order) with the other
blocks fixed at the incumbent, and keeps the best. Two ways to search a block:

- ``sampler="uniform"`` (the paper): a round evaluates up to
  ``candidates_per_round`` architectures whose block is drawn uniformly
  (never-seen, feasible); the best of the round and the incumbent wins.
- ``sampler="neighbourhood"`` (default): a round proposes the new feasible
  architectures that change one dimension of the block (in random order); the
  first result that beats the incumbent becomes the incumbent and the round
  goes on from it (first improvement, at most ``candidates_per_round``
  evaluations per round); when none is left the block is at a local optimum
  and the round ends.

Each start (and restart) evaluates ``start_samples`` random feasible
architectures and takes the best as incumbent. With ``sampler="neighbourhood"``
a round whose block reaches a local optimum also tries ``explore_per_round``
uniform draws of the block. When a whole cycle of blocks brings no
improvement (or every block is exhausted) the search restarts. All
candidates of a round are proposed at once (Tune runs them concurrently);
``suggest`` returns ``None`` while the round waits for its results.
"""

from __future__ import annotations

from ray.tune.search import Searcher

from raynas.errors import check_choice, check_whole
from raynas.searchers.base import ArchSearcher

SAMPLERS = ("neighbourhood", "uniform")


class CoordinateDescentSearch(ArchSearcher):
    """Cyclic block coordinate descent over any search space.

    State saved for ``Tuner.restore``: round, block, incumbent, best, the round's
    queue and pending trials, history and the random generator.
    """

    STATE = ("incumbent", "best", "round", "block_index", "starting", "start_issued", "queue",
             "round_trials", "round_results", "round_evaluated", "round_explored", "round_improved",
             "stale_rounds")

    def __init__(self, *args, sampler: str = "neighbourhood", candidates_per_round: int | None = None,
                 start_samples: int = 10, explore_per_round: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.sampler = check_choice("cds sampler", sampler, SAMPLERS)
        default_quota = 10 if sampler == "uniform" else 1_000_000
        self.candidates_per_round = check_whole("cds candidates_per_round", candidates_per_round or default_quota, 1)
        self.start_samples = check_whole("cds start_samples", start_samples, 1)
        self.explore_per_round = check_whole("cds explore_per_round", explore_per_round, 0)
        self.incumbent: tuple[dict, float] | None = None  # centre of the current round
        self.best: tuple[dict, float] | None = None
        self.round = 0
        self.block_index = 0
        self.starting = True  # evaluating (re)start samples
        self.start_issued = 0
        self.queue: list[dict] = []  # candidates of the round not yet proposed
        self.round_trials: set[str] = set()  # proposed, result pending
        self.round_results: list[tuple[dict, float]] = []
        self.round_evaluated = 0
        self.round_explored = 0
        self.round_improved = False
        self.stale_rounds = 0  # consecutive rounds without improvement

    @property
    def block(self) -> str:
        return self.space.block_names[self.block_index]

    # --- proposals ----------------------------------------------------------
    def _propose(self):
        if self.starting:
            if self.start_issued < self.start_samples:
                arch = self.random_new()
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

    # --- results ------------------------------------------------------------
    def _observe(self, trial_id, arch, score) -> None:
        if self.best is None or score > self.best[1]:
            self.best = (arch, score)
        self.round_trials.discard(trial_id)
        if self.starting:
            self.round_results.append((arch, score))
            if self.start_issued >= self.start_samples and not self.round_trials:
                self._finish_start()
            return
        if self.sampler == "neighbourhood" and score > self.incumbent[1]:
            self.incumbent = (arch, score)  # first improvement: continue from it at once
            self.round_improved = True
            self._fill_queue()
        else:
            self.round_results.append((arch, score))
        if not self.queue and not self.round_trials:
            self._finish_batch()

    def _finish_start(self) -> None:
        self.incumbent = max(self.round_results, key=lambda r: r[1])
        self.starting = False
        self._begin_round()

    def _begin_round(self) -> None:
        self.round_results, self.round_evaluated, self.round_improved, self.round_explored = [], 0, False, 0
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
        else:
            self.queue = self.single_changes(centre, self.block)[:quota]

    def _finish_batch(self) -> None:
        """Every proposed candidate has its result: keep the best, explore, or end the round."""
        top = max(self.round_results, key=lambda r: r[1], default=None)
        self.round_results = []
        if top is not None and top[1] > self.incumbent[1]:
            self.incumbent = top
            self.round_improved = True
        if self.sampler == "neighbourhood" and self.round_explored < self.explore_per_round:
            self.queue = self.block_candidates(self.incumbent[0], self.block,
                                               self.explore_per_round - self.round_explored)
            self.round_explored += len(self.queue)
            if self.queue:
                return
        self._end_round()

    def _end_round(self) -> None:
        self.stale_rounds = 0 if self.round_improved else self.stale_rounds + 1
        self.round += 1
        self.block_index = (self.block_index + 1) % len(self.space.block_names)
        if self.stale_rounds >= len(self.space.block_names):  # a local optimum in every block
            self.stale_rounds = 0
            self.starting, self.start_issued, self.incumbent = True, 0, None
            return
        self._begin_round()
