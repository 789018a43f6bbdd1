"""Uniform random search under the constraint (rejection sampling, no repeats)."""

from __future__ import annotations

from ray.tune.search import Searcher

from raynas.searchers.base import ArchSearcher


class RandomSearch(ArchSearcher):
    """Each proposal is a uniform, feasible, never-seen architecture.

    >>> from search_spaces.nb201 import make_space
    >>> s = RandomSearch(make_space(), cost=lambda a: {}, metric="accuracy", seed=0)
    >>> sorted(s.suggest("t1"))[:2]
    ['edge_1_0', 'edge_2_0']
    """

    def _propose(self):
        arch = self.random_new()
        return Searcher.FINISHED if arch is None else arch

    def _observe(self, trial_id, arch, score) -> None:
        pass
