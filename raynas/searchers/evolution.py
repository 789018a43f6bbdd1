"""Regularized evolution (Real et al., AAAI 2019), constraint-aware and without repeats.

A population of the ``population_size`` most recent results; each child is a
mutation of the best of ``sample_size`` members drawn at random (tournament);
the oldest member dies when a child joins (ageing). The first
``population_size`` proposals are random. Children are feasible and never seen:
a mutation is retried, then a random architecture is used.
"""

from __future__ import annotations

from ray.tune.search import Searcher

from raynas.errors import check_whole
from raynas.searchers.base import ArchSearcher


class RegularizedEvolution(ArchSearcher):
    """Ageing evolution over any search space (``space.mutate`` changes one dimension)."""

    STATE = ("population", "random_issued")

    def __init__(self, *args, population_size: int = 20, sample_size: int = 5, mutation_tries: int = 50, **kwargs):
        super().__init__(*args, **kwargs)
        self.population_size = check_whole("evolution population_size", population_size, 1)
        self.sample_size = check_whole("evolution sample_size", sample_size, 1)
        self.mutation_tries = check_whole("evolution mutation_tries", mutation_tries, 1)
        self.population: list[tuple[dict, float]] = []  # (arch, score), oldest first
        self.random_issued = 0

    def _propose(self):
        if self.random_issued < self.population_size:
            self.random_issued += 1
            return self.random_new() or Searcher.FINISHED
        if not self.population:
            return None  # wait for the first results
        contenders = self.rng.sample(self.population, min(self.sample_size, len(self.population)))
        parent = max(contenders, key=lambda member: member[1])[0]
        for _ in range(self.mutation_tries):
            child = self.space.mutate(parent, self.rng)
            if self.is_new(child):
                return child
        return self.random_new() or Searcher.FINISHED

    def _observe(self, trial_id, arch, score) -> None:
        self.population.append((arch, score))
        if len(self.population) > self.population_size:
            self.population.pop(0)
