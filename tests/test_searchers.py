"""Each searcher's contract inside a sweep's run (``RunSearch``), driven through Tune's protocol on the NB201 table."""

from __future__ import annotations

import pickle
import random

import pytest

from raynas.constraints import Constraint
from raynas.errors import UserError
from raynas.searchers import SEARCHER_NAMES, make_searcher
from raynas.sweep_search import DONE, WAIT, RunSearch
from search_spaces.nb201 import TabularBenchmark

OURS = ("cds", "cds_uniform", "evolution", "random")
LIMIT = Constraint("latency_ms", 20.0)


@pytest.fixture(scope="module")
def bench(nb201_table):
    return TabularBenchmark(nb201_table, "cifar10_test_acc", "lat_raspi4_ms")


def searcher(bench, name, budget=60, constraint=LIMIT, seed=3, **options) -> RunSearch:
    """One run of a sweep: the searcher ``name`` with the sweep's budget and constraint around it."""
    inner = make_searcher(name, bench.space, constraint, "accuracy", "max", seed, budget, bench.cost, **options)
    inner.set_search_properties("accuracy", "max", bench.space.to_tune())  # what the sweep does for each run
    return RunSearch(name, seed, inner, bench.space, bench.cost, constraint, budget, "accuracy", "max", 0.0)


class Driver:
    """Tune's side of the protocol: up to ``concurrency`` live trials, completed oldest first."""

    def __init__(self, bench, s: RunSearch, concurrency=3):
        self.bench, self.s, self.concurrency = bench, s, concurrency
        self.live, self.proposed, self.count, self.finished, self.waits = [], [], 0, False, 0

    def fill(self):
        while not self.finished and len(self.live) < self.concurrency:
            self.count += 1
            config = self.s.propose(f"t{self.count}")
            if config == DONE:
                self.finished = True
            elif config == WAIT:
                self.waits += 1
                break
            else:
                self.live.append((f"t{self.count}", config))
                self.proposed.append(config)

    def complete_one(self):
        trial_id, config = self.live.pop(0)
        row = self.bench.lookup(self.bench.space.from_config(config))
        self.s.complete_trial(trial_id, {**row, "arch_id": self.bench.space.arch_id(self.bench.space.from_config(config))},
                              error=False)

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
    assert d.s.record.infeasible == d.s.record.repeats == 0  # ours never propose what the sweep must answer
    assert all(bench.cost(bench.space.from_config(c))["latency_ms"] <= 20.0 for c in d.proposed)


@pytest.mark.parametrize("name", ["cds", "cds_uniform", "evolution", "random", "optuna", "nevergrad"])
def test_save_and_restore_continue_exactly(bench, name, tmp_path):
    """A searcher restored mid-run (with trials in flight) proposes what the original would have."""
    original = searcher(bench, name, budget=20)
    d = Driver(bench, original).run(steps=8)
    assert d.live  # trials pending at save time
    before = len(d.proposed)
    state = pickle.loads(pickle.dumps(original.get_state()))  # as Tune saves it

    clone = searcher(bench, name, budget=20, seed=99)  # a different seed: everything must come from the state
    clone.set_state(state)
    twin = Driver(bench, clone)
    twin.live, twin.count = list(d.live), d.count
    d.run()
    twin.run()
    assert twin.proposed == d.proposed[before:]
    assert len(d.proposed) == 20 and 0 < len(d.proposed) - before
    def answered(run):
        return [{k: v for k, v in row.items() if k != "finished_at"} for row in run.record.answered]

    assert answered(twin.s) == answered(d.s)  # infeasible proposals and repeats too


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


def test_cds_uniform_draws_whole_blocks_around_the_incumbent(bench):
    s = searcher(bench, "cds_uniform", budget=60, constraint=None, candidates_per_round=5)
    inner, rounds = s.searcher, []
    propose = s.propose

    def watched(trial_id):  # each proposal with the incumbent and block of the round it was drawn in
        config = propose(trial_id)
        if isinstance(config, dict) and not inner.starting:
            rounds.append((inner.round, bench.space.from_config(config), dict(inner.incumbent[0]), inner.block))
        return config

    s.propose = watched
    Driver(bench, s, concurrency=2).run()
    assert len({r for r, *_ in rounds}) >= 5
    changes = []
    for _, arch, incumbent, block in rounds:
        changed = {k for k in arch if arch[k] != incumbent[k]}
        assert changed and {bench.space.block_of(k) for k in changed} == {block}  # one block, around the incumbent
        changes.append((len(changed), len(bench.space.block(block).dimensions)))
    # a whole draw of the block, not one coordinate at a time: several of its dimensions change at once
    assert any(n > 1 for n, _ in changes)
    assert any(n == size == 3 for n, size in changes)


def test_evolution_keeps_the_most_recent_results_not_the_best(bench):
    s = searcher(bench, "evolution", budget=80, population_size=10, sample_size=3)
    Driver(bench, s).run()
    inner = s.searcher
    assert len(inner.history) == 80
    # aging (regularized) evolution: the population is the last ten results, in order, whatever their scores
    assert [bench.space.arch_id(arch) for arch, _ in inner.population] == [a for a, _ in inner.history[-10:]]
    assert max(score for _, score in inner.history) > max(score for _, score in inner.population)  # the best aged out


@pytest.mark.parametrize("name", ["optuna", "nevergrad"])
def test_infeasible_proposals_and_repeats_are_answered_without_a_trial_and_not_counted(bench, name):
    d = Driver(bench, searcher(bench, name, budget=30, constraint=Constraint("latency_ms", 12.0))).run()
    record = d.s.record
    assert len(d.proposed) == 30 and record.issued == 30 and len(record.evaluated) == 30  # only feasible, new ones
    infeasible = [row for row in record.answered if not row["feasible"]]
    repeats = [row for row in record.answered if row["repeat"]]
    assert len(infeasible) == record.infeasible > 0  # ~60% of the space is slower than 12 ms
    assert all(row["latency_ms"] > 12.0 and row["accuracy"] == 0.0 for row in infeasible)  # the penalty
    assert len(repeats) == record.repeats
    for row in repeats:  # answered with the run's earlier result of that architecture
        assert row["accuracy"] == record.evaluated[row["arch_id"]]["accuracy"]
    ids = [bench.space.arch_id(bench.space.from_config(c)) for c in d.proposed]
    assert len(set(ids)) == 30


def test_a_repeat_of_an_architecture_in_flight_waits_for_its_result(bench):
    class Twice:
        """Proposes every architecture twice in a row (what TPE sometimes does)."""

        def __init__(self):
            self.proposals, self.told = 0, {}

        def suggest(self, trial_id):
            self.proposals += 1
            return bench.space.sample(random.Random((self.proposals + 1) // 2))

        def on_trial_complete(self, trial_id, result=None, error=False):
            self.told[trial_id] = result

    searcher = Twice()
    run = RunSearch("twice", 0, searcher, bench.space, bench.cost, None, 3, "accuracy", "max", 0.0)
    first = run.propose("t1")
    second = run.propose("t2")  # Twice repeats t1's architecture (waits), then proposes a new one
    assert bench.space.arch_id(bench.space.from_config(second)) != bench.space.arch_id(bench.space.from_config(first))
    assert run.record.repeats == 1 and list(run.record.waiting.values()) == [["t2"]] and not run.record.answered
    row = bench.lookup(bench.space.from_config(first))
    run.complete_trial("t1", {**row, "arch_id": "x"}, error=False)
    (answer,) = run.record.answered
    assert answer["repeat"] and answer["feasible"] and answer["accuracy"] == row["accuracy"]
    assert searcher.told["t2"]["accuracy"] == row["accuracy"]  # the searcher heard its repeat's result
    assert run.record.issued == 2  # the repeat did not count


def test_random_reports_a_constraint_that_admits_nothing(bench):
    s = searcher(bench, "random", constraint=Constraint("latency_ms", 0.001))
    with pytest.raises(UserError, match="admits none of"):
        s.propose("t1")


def test_bad_names_and_budgets_are_clear_errors(bench):
    with pytest.raises(UserError, match=r"searcher: 'hyperband' is not allowed; allowed values: \['cds'"):
        searcher(bench, "hyperband")
    for budget in (0, -5, 2.5):
        with pytest.raises(UserError, match="budget: must be a whole number >= 1"):
            searcher(bench, "cds", budget=budget)
    with pytest.raises(UserError, match="cds sampler"):
        searcher(bench, "cds", sampler="grid")
    with pytest.raises(UserError, match="evolution"):
        searcher(bench, "evolution", colour="blue")
    with pytest.raises(UserError, match="evolution population_size: must be a whole number >= 1; got 2.5"):
        searcher(bench, "evolution", population_size=2.5)
    with pytest.raises(UserError, match="cds restart: 'never' is not allowed; allowed values: \\['elite', 'random'\\]"):
        searcher(bench, "cds", restart="never")
    assert set(OURS) < set(SEARCHER_NAMES)


def test_cds_beats_random_on_average_in_a_plain_loop(bench):
    """A quick sanity check of search quality (the comparison with every searcher is in BENCHMARKS.md)."""
    optimum = max(r["accuracy"] for _, r in bench.rows())

    def regret(name, seed):
        d = Driver(bench, searcher(bench, name, budget=100, constraint=None, seed=seed), concurrency=2).run()
        return optimum - max(bench.lookup(bench.space.from_config(c))["accuracy"] for c in d.proposed)

    seeds = range(12)
    cds = sum(regret("cds", k) for k in seeds) / len(seeds)
    rnd = sum(regret("random", k) for k in seeds) / len(seeds)
    assert cds < rnd


def pareto_run(bench, name, seed, budget=60):
    metrics, modes = ["accuracy", "latency_ms"], ["max", "min"]
    inner = make_searcher(name, bench.space, None, metrics, modes, seed, budget, bench.cost)
    inner.set_search_properties(metrics, modes, bench.space.to_tune())
    return RunSearch(name, seed, inner, bench.space, bench.cost, None, budget, "accuracy", "max", 0.0)


def test_pareto_cds_keeps_a_front_and_beats_random_on_hypervolume(bench):
    from analysis.pareto import hypervolume_2d

    def hypervolume(run):
        points = [(m["accuracy"], m["latency_ms"]) for m in run.record.evaluated.values()]
        return hypervolume_2d(points, ["max", "min"], (0.0, 100.0))

    pareto, uniform = [], []  # 200 evaluations: below ~100 the two are not distinguishable (BENCHMARKS.md)
    for seed in range(6):
        d = Driver(bench, pareto_run(bench, "cds_pareto", seed, budget=200), concurrency=2).run()
        assert len(d.proposed) == 200 and d.s.record.repeats == 0
        front = d.s.searcher.front()
        assert front and all(not any(b[1][0] >= a[1][0] and b[1][1] <= a[1][1] and b[1] != a[1] for b in front)
                             for a in front)  # nothing on the front is dominated by another front point
        pareto.append(hypervolume(d.s))
        uniform.append(hypervolume(Driver(bench, pareto_run(bench, "random", seed, budget=200), concurrency=2).run().s))
    assert sum(pareto) / 6 > sum(uniform) / 6


def test_multi_objective_names_the_searchers_that_take_several_metrics(bench):
    with pytest.raises(UserError, match=r"searcher 'cds' optimises one metric.*\['cds_pareto', 'optuna', 'random'\]"):
        pareto_run(bench, "cds", 0)
    with pytest.raises(UserError, match="cds_pareto' optimises several metrics"):
        searcher(bench, "cds_pareto")
