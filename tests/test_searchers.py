"""Each searcher's contract, driven directly through Tune's Searcher protocol on the real NB201 table."""

from __future__ import annotations

import pytest
from ray.tune.search import Searcher

from raynas.constraints import Constraint
from raynas.errors import UserError
from raynas.searchers import SEARCHER_NAMES, make_searcher
from search_spaces.nb201 import TabularBenchmark

OURS = ("cds", "cds_uniform", "evolution", "random")
LIMIT = Constraint("latency_ms", 20.0)


@pytest.fixture(scope="module")
def bench(nb201_table):
    return TabularBenchmark(nb201_table, "cifar10_test_acc", "lat_raspi4_ms")


def searcher(bench, name, budget=60, constraint=LIMIT, seed=3, **options):
    s = make_searcher(name, bench.space, constraint, "accuracy", "max", seed, budget, bench.cost, **options)
    s.set_search_properties(None, None, bench.space.to_tune())  # what Tune does with the param space
    return s


class Driver:
    """Tune's side of the protocol: up to ``concurrency`` live trials, completed oldest first."""

    def __init__(self, bench, s, concurrency=3):
        self.bench, self.s, self.concurrency = bench, s, concurrency
        self.live, self.proposed, self.count, self.finished, self.waits = [], [], 0, False, 0

    def fill(self):
        while not self.finished and len(self.live) < self.concurrency:
            self.count += 1
            config = self.s.suggest(f"t{self.count}")
            if config == Searcher.FINISHED:
                self.finished = True
            elif config is None:
                self.waits += 1
                break
            else:
                self.live.append((f"t{self.count}", config))
                self.proposed.append(config)

    def complete_one(self):
        trial_id, config = self.live.pop(0)
        row = self.bench.lookup(self.bench.space.from_config(config))
        self.s.on_trial_complete(trial_id, {"accuracy": row["accuracy"] if config["feasible"] else 0.0})

    def run(self, steps=None):
        done = 0
        while True:
            self.fill()
            if not self.live or (steps is not None and done >= steps):
                return self
            self.complete_one()
            done += 1


@pytest.mark.parametrize("name", OURS)
def test_our_searchers_propose_budget_feasible_distinct_architectures(bench, name):
    d = Driver(bench, searcher(bench, name, budget=60)).run()
    assert d.finished and len(d.proposed) == 60
    ids = [bench.space.arch_id(bench.space.from_config(c)) for c in d.proposed]
    assert len(set(ids)) == 60  # never re-evaluates
    assert all(c["feasible"] for c in d.proposed)
    assert all(bench.cost(bench.space.from_config(c))["latency_ms"] <= 20.0 for c in d.proposed)


@pytest.mark.parametrize("name", ["cds", "cds_uniform", "evolution", "random", "optuna", "nevergrad"])
def test_save_and_restore_continue_exactly(bench, name, tmp_path):
    """A searcher restored mid-run (with trials in flight) proposes what the original would have."""
    original = searcher(bench, name, budget=20)
    d = Driver(bench, original).run(steps=8)
    assert d.live  # trials pending at save time
    before = len(d.proposed)
    path = tmp_path / "state.pkl"
    original.searcher.save(str(path))
    wrapper_state = original.get_state()

    clone = searcher(bench, name, budget=20, seed=99)  # a different seed: everything must come from the state
    clone.searcher.restore(str(path))
    clone.set_state(wrapper_state)
    twin = Driver(bench, clone)
    twin.live, twin.count = list(d.live), d.count
    d.run()
    twin.run()
    assert twin.proposed == d.proposed[before:]
    feasible = [c["feasible"] for c in d.proposed]
    assert sum(feasible[before:]) == 20 - sum(feasible[:before]) > 0


def test_cds_rounds_change_one_block_and_cycle_through_all_blocks(bench):
    s = searcher(bench, "cds", budget=120, constraint=None, start_samples=4)
    d = Driver(bench, s, concurrency=4).run()
    inner = s.searcher
    assert inner.round >= 3
    evaluated, blocks_moved = [], set()
    for config in d.proposed:
        arch = bench.space.from_config(config)
        if evaluated:
            nearest = min((frozenset(k for k in arch if arch[k] != e[k]) for e in evaluated), key=len)
            if len(nearest) == 1:
                blocks_moved.add(bench.space.block_of(next(iter(nearest))))
        evaluated.append(arch)
    assert blocks_moved == set(bench.space.block_names)
    # the search keeps the best: its best equals the best it evaluated
    best = max(bench.lookup(a)["accuracy"] for a in evaluated)
    assert inner.best[1] == best


def test_cds_waits_for_a_round_instead_of_guessing(bench):
    s = searcher(bench, "cds", budget=100, constraint=None, start_samples=3)
    d = Driver(bench, s, concurrency=8)
    d.fill()
    assert len(d.live) == 3 and d.waits == 1  # three start samples, then None until they finish
    for _ in range(3):
        d.complete_one()
    assert s.searcher.incumbent is not None and not s.searcher.starting
    d.fill()
    block = s.searcher.block
    inc = s.searcher.incumbent[0]
    for _, config in d.live:
        changed = {k for k, v in bench.space.from_config(config).items() if v != inc[k]}
        assert len(changed) == 1 and bench.space.block_of(changed.pop()) == block


def test_cds_uniform_samples_whole_block_draws(bench):
    s = searcher(bench, "cds_uniform", budget=40, constraint=None, candidates_per_round=5)
    d = Driver(bench, s, concurrency=2).run()
    assert s.searcher.round >= 3 and len(d.proposed) == 40


def test_evolution_population_ages(bench):
    s = searcher(bench, "evolution", budget=80, population_size=10, sample_size=3)
    Driver(bench, s).run()
    assert len(s.searcher.population) == 10
    assert len(s.searcher.history) == 80


@pytest.mark.parametrize("name", ["optuna", "nevergrad"])
def test_external_searchers_count_only_feasible_towards_the_budget(bench, name):
    d = Driver(bench, searcher(bench, name, budget=30, constraint=Constraint("latency_ms", 12.0))).run()
    feasible = [c for c in d.proposed if c["feasible"]]
    infeasible = [c for c in d.proposed if not c["feasible"]]
    assert len(feasible) == 30 and infeasible  # ~60% of the space is slower than 12 ms
    assert all(bench.cost(bench.space.from_config(c))["latency_ms"] > 12.0 for c in infeasible)
    assert d.s.get_state() == {"feasible_issued": 30, "infeasible_issued": len(infeasible)}


def test_random_reports_a_constraint_that_admits_nothing(bench):
    s = searcher(bench, "random", constraint=Constraint("latency_ms", 0.001))
    with pytest.raises(UserError, match="admits none of"):
        s.suggest("t1")


def test_bad_names_and_budgets_are_clear_errors(bench):
    with pytest.raises(UserError, match=r"searcher: 'hyperband' is not allowed; allowed values: \['cds'"):
        searcher(bench, "hyperband")
    for budget in (0, -5, 2.5):
        with pytest.raises(UserError, match="budget"):
            searcher(bench, "cds", budget=budget)
    with pytest.raises(UserError, match="cds sampler"):
        searcher(bench, "cds", sampler="grid")
    with pytest.raises(UserError, match="evolution"):
        searcher(bench, "evolution", colour="blue")
    assert set(OURS) < set(SEARCHER_NAMES)


def test_cds_matches_evolution_on_average_in_a_plain_loop(bench):
    """A quick sanity check of search quality (the full comparison is in BENCHMARKS.md)."""
    optimum = max(r["accuracy"] for _, r in bench.rows())

    def regret(name, seed):
        d = Driver(bench, searcher(bench, name, budget=100, constraint=None, seed=seed), concurrency=2).run()
        return optimum - max(bench.lookup(bench.space.from_config(c))["accuracy"] for c in d.proposed)

    seeds = range(12)
    cds = sum(regret("cds", k) for k in seeds) / len(seeds)
    rnd = sum(regret("random", k) for k in seeds) / len(seeds)
    assert cds < rnd
