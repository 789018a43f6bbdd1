"""Pareto fronts, hypervolume, best-so-far curves and ranking against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.curves import best_so_far, final_best, proposal_counts, ranking_table, summarise_curves
from analysis.pareto import (
    hypervolume_2d,
    hypervolume_table,
    ideal_scale,
    non_dominated,
    pareto_front,
    reference_point,
)
from raynas.errors import UserError


def trials(rows):
    """A tidy sweep table from (searcher, seed, accuracy, flops, feasible) tuples, in completion order."""
    df = pd.DataFrame(rows, columns=["searcher", "seed", "accuracy", "flops", "feasible"])
    df["order"] = df.groupby(["searcher", "seed"]).cumcount() + 1
    df["arch_id"] = [f"a{i:02d}" for i in range(len(df))]
    return df


# ---------------------------------------------------------------- Pareto front


def test_non_dominated_2d_mixed_directions():
    # maximise accuracy, minimise flops
    values = [(70, 10), (75, 20), (72, 25), (80, 40), (60, 5), (80, 50)]
    mask = non_dominated(values, ("max", "min"))
    # (72, 25) is beaten by (75, 20); (80, 50) by (80, 40) (tie in accuracy, worse flops)
    assert mask.tolist() == [True, True, False, True, True, False]


def test_non_dominated_keeps_duplicates_and_drops_nan():
    values = [(1.0, 1.0), (1.0, 1.0), (2.0, 2.0), (np.nan, 0.0), (0.5, 3.0)]
    mask = non_dominated(values, ("min", "min"))
    assert mask.tolist() == [True, True, False, False, True]
    assert non_dominated(np.empty((0, 2)), ("min", "min")).tolist() == []


@pytest.mark.parametrize("modes", [("max", "min"), ("min", "max", "min"), ("max", "min", "min", "max")])
def test_non_dominated_against_brute_force(modes):
    rng = np.random.default_rng(len(modes))
    values = rng.integers(0, 6, size=(300, len(modes))).astype(float)  # many ties and duplicates
    values[::37, 0] = np.nan
    signed = values * np.array([-1 if m == "max" else 1 for m in modes])
    expected = [
        bool(np.isfinite(p).all()) and not any(np.all(o <= p) and np.any(o < p) for o in signed)
        for p in signed
    ]
    assert non_dominated(values, modes).tolist() == expected


def test_non_dominated_rejects_bad_mode_and_shape():
    with pytest.raises(UserError, match="mode.*'maximise'.*allowed values"):
        non_dominated([(1, 2)], ("maximise", "min"))
    with pytest.raises(ValueError, match="shape"):
        non_dominated([1, 2, 3], ("max", "min"))


def test_pareto_front_uses_feasible_rows_only():
    df = trials(
        [
            ("cds", 0, 70.0, 10.0, True),
            ("cds", 0, 90.0, 5.0, False),  # would dominate everything, but infeasible
            ("cds", 0, 75.0, 20.0, True),
            ("cds", 0, 72.0, 25.0, True),
            ("random", 0, 60.0, 5.0, True),
        ]
    )
    front = pareto_front(df, [("flops", "min"), ("accuracy", "max")])
    assert front["arch_id"].tolist() == ["a04", "a00", "a02"]
    with pytest.raises(UserError, match="latency_ms"):
        pareto_front(df, [("latency_ms", "min"), ("accuracy", "max")])


# ---------------------------------------------------------------- hypervolume


def test_hypervolume_three_points_known_area():
    # minimise both, reference (4, 4): staircase areas 1·1 + 1·2 + 1·3 = 6
    points = [(1, 3), (2, 2), (3, 1)]
    assert hypervolume_2d(points, ("min", "min"), (4, 4)) == pytest.approx(6.0)
    # a dominated point, a duplicate and a point beyond the reference change nothing
    more = points + [(3, 3), (2, 2), (5, 0.5)]
    assert hypervolume_2d(more, ("min", "min"), (4, 4)) == pytest.approx(6.0)


def test_hypervolume_maximise_and_minimise():
    # accuracy (max) vs flops (min), reference accuracy 50, flops 100
    points = [(70, 20), (80, 60)]
    # (70,20): 20 × 80 = 1600; (80,60) adds 10 × 40 = 400
    assert hypervolume_2d(points, ("max", "min"), (50, 100)) == pytest.approx(2000.0)
    assert hypervolume_2d([], ("max", "min"), (50, 100)) == 0.0
    with pytest.raises(UserError, match="2 objectives"):
        hypervolume_2d([(1, 2, 3)], ("min", "min", "min"), (4, 4, 4))


def test_hypervolume_table_from_a_readable_reference_point():
    df = trials(
        [
            ("cds", 0, 80.0, 30.0, True),  # best accuracy on the front
            ("cds", 1, 60.0, 10.0, True),  # fewest flops on the front
            ("random", 0, 70.0, 20.0, True),  # middle of the front
            ("random", 1, 90.0, 1.0, False),  # nothing feasible in this run
            ("evolution", 0, 50.0, 40.0, True),  # dominated: the worst trial, so on the reference point
        ]
    )
    objectives = [("accuracy", "max"), ("flops", "min")]
    reference, source = reference_point(df, objectives)
    assert reference == [50.0, 40.0] and "the worst of the sweep's feasible trials" in source
    scale = ideal_scale(df, objectives, reference)
    assert scale == (80.0 - 50.0) * (40.0 - 10.0)  # between the reference and the best values reached
    hv = hypervolume_table(df, objectives, reference, scale).set_index(["searcher", "seed"])["hypervolume"]
    assert hv[("cds", 0)] == pytest.approx(30 * 10 / 900)
    assert hv[("cds", 1)] == pytest.approx(10 * 30 / 900)
    assert hv[("random", 0)] == pytest.approx(20 * 20 / 900)
    assert hv[("random", 1)] == 0.0 and hv[("evolution", 0)] == 0.0
    # a reference point the sweep gives (the constraint's limit, the worst possible accuracy): every run counts
    reference, source = reference_point(df, objectives, {"accuracy": 0.0, "flops": 50.0})
    assert reference == [0.0, 50.0] and "the sweep's reference" in source
    hv = hypervolume_table(df, objectives, reference).set_index(["searcher", "seed"])["hypervolume"]
    assert hv[("evolution", 0)] == pytest.approx(50.0 * 10.0) and hv[("random", 0)] == pytest.approx(70 * 30)



# ---------------------------------------------------------------- curves and ranking


@pytest.fixture
def sweep():
    return trials(
        [
            ("cds", 0, 60.0, 1.0, True),
            ("cds", 0, 50.0, 1.0, False),
            ("cds", 0, 70.0, 1.0, True),
            ("cds", 0, 65.0, 1.0, True),
            ("cds", 1, 72.0, 1.0, True),
            ("cds", 1, 71.0, 1.0, True),
            ("cds", 1, 73.0, 1.0, True),
            ("random", 0, 55.0, 1.0, True),
            ("random", 0, 66.0, 1.0, True),
            ("random", 0, 90.0, 1.0, False),
            ("random", 0, 64.0, 1.0, True),
            ("random", 1, 74.0, 1.0, True),
            ("random", 1, 60.0, 1.0, True),
            ("random", 1, 61.0, 1.0, True),
        ]
    )


def test_best_so_far_counts_feasible_evaluations(sweep):
    curves = best_so_far(sweep.sample(frac=1.0, random_state=1), "accuracy", "max", optimum=80.0)
    cds0 = curves[(curves.searcher == "cds") & (curves.seed == 0)]
    assert cds0["evaluations"].tolist() == [1, 2, 3]
    assert cds0["best"].tolist() == [60.0, 70.0, 70.0]
    assert cds0["regret"].tolist() == [20.0, 10.0, 10.0]
    rnd0 = curves[(curves.searcher == "random") & (curves.seed == 0)]
    assert rnd0["best"].tolist() == [55.0, 66.0, 66.0]  # the infeasible 90 is not counted
    low = best_so_far(sweep, "accuracy", "min")
    assert low[(low.searcher == "cds") & (low.seed == 1)]["best"].tolist() == [72.0, 71.0, 71.0]


def test_summarise_curves_spread_over_seeds(sweep):
    summary = summarise_curves(best_so_far(sweep, "accuracy", "max"))
    row = summary[(summary.searcher == "cds") & (summary.evaluations == 3)].iloc[0]
    # seed 0: 70, seed 1: 73
    assert (row["seeds"], row["mean"], row["min"], row["max"]) == (2, 71.5, 70.0, 73.0)
    assert row["q25"] == pytest.approx(70.75) and row["q75"] == pytest.approx(72.25)


def test_ranking_table(sweep):
    finals = final_best(sweep, "accuracy", "max").set_index(["searcher", "seed"])["best"]
    assert finals.to_dict() == {("cds", 0): 70.0, ("cds", 1): 73.0, ("random", 0): 66.0, ("random", 1): 74.0}
    hv = pd.DataFrame(
        {"searcher": ["cds", "cds", "random", "random"], "seed": [0, 1, 0, 1], "hypervolume": [1, 3, 2, 2]}
    )
    table = ranking_table(sweep, "accuracy", "max", hypervolumes=hv, optimum=80.0).set_index("searcher")
    # seed 0: cds 1st, random 2nd; seed 1: random 1st, cds 2nd → tie on rank, cds wins on mean best
    assert table.index.tolist() == ["cds", "random"]
    assert table.loc["cds", "mean_rank"] == 1.5 and table.loc["random", "mean_rank"] == 1.5
    assert table.loc["cds", "final_best_mean"] == 71.5
    assert table.loc["cds", "final_regret_mean"] == 8.5
    assert table.loc["cds", "hypervolume_mean"] == 2.0 and table.loc["random", "hypervolume_std"] == 0.0
    assert table.loc["cds", "infeasible"] == 1 and table.loc["random", "proposals"] == 7


def test_ranking_puts_runs_without_feasible_trials_last():
    df = trials(
        [("a", 0, 10.0, 1.0, False), ("b", 0, 1.0, 1.0, True), ("a", 1, 5.0, 1.0, True), ("b", 1, 4.0, 1.0, True)]
    )
    table = ranking_table(df, "accuracy", "max").set_index("searcher")
    assert table.loc["a", "mean_rank"] == 1.5 and table.loc["b", "mean_rank"] == 1.5
    assert np.isnan(final_best(df, "accuracy", "max").set_index(["searcher", "seed"]).loc[("a", 0), "best"])
    counts = proposal_counts(df).set_index("searcher")
    assert counts.loc["a"].tolist() == [2, 2, 1, 1, 0]  # seeds, proposals, evaluated, infeasible, repeats


def test_missing_columns_are_named():
    with pytest.raises(UserError, match=r"lack columns \['order'\]"):
        best_so_far(pd.DataFrame({"searcher": ["a"], "seed": [0], "accuracy": [1.0]}), "accuracy", "max")
