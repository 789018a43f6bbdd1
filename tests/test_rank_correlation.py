"""Rank agreement between two scores: Kendall's τ and Spearman's ρ against hand counts, bootstrap intervals."""

from __future__ import annotations

import math

import pytest

from analysis.rank_correlation import rank_agreement


def test_tau_and_rho_match_a_hand_count():
    # (1, 3, 2, 4) against (1, 2, 3, 4): 5 concordant pairs, 1 discordant → τ = 4/6;
    # rank differences 0, 1, -1, 0 → ρ = 1 - 6·2 / (4·15) = 0.8
    result = rank_agreement([1, 2, 3, 4], [1, 3, 2, 4], resamples=300)
    assert result["n"] == 4
    assert result["kendall_tau"] == pytest.approx(4 / 6) and result["spearman"] == pytest.approx(0.8)
    assert result["ci_low"] <= result["kendall_tau"] <= result["ci_high"]


def test_a_perfect_and_a_reversed_order():
    same = rank_agreement([0.1, 0.4, 0.2, 0.3, 0.5], [1, 4, 2, 3, 5], resamples=300)
    assert same["kendall_tau"] == pytest.approx(1) and same["ci_low"] == pytest.approx(1) == same["ci_high"]
    reversed_ = rank_agreement([0.1, 0.2, 0.3, 0.4], [4, 3, 2, 1], resamples=300)
    assert reversed_["kendall_tau"] == pytest.approx(-1) and reversed_["spearman"] == pytest.approx(-1)


def test_unrelated_scores_have_an_interval_around_zero():
    x = list(range(20))
    y = [(9 * i) % 20 for i in x]  # a fixed scramble of the order: τ = -2/190
    result = rank_agreement(x, y, resamples=1000)
    assert result["kendall_tau"] == pytest.approx(-2 / 190)
    assert result["ci_low"] < -0.2 and result["ci_high"] > 0.2


def test_too_few_or_constant_scores_have_no_coefficient():
    assert math.isnan(rank_agreement([1, 2], [2, 1])["kendall_tau"])
    constant = rank_agreement([1, 2, 3], [5, 5, 5])
    assert math.isnan(constant["kendall_tau"]) and math.isnan(constant["ci_low"])
    with pytest.raises(ValueError, match="differ in length"):
        rank_agreement([1, 2, 3], [1, 2])
