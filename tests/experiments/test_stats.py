"""ruagent.experiments.stats against closed forms, hand cases and a simulated coverage check."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats

from ruagent.experiments.stats import (
    iqm,
    iqm_interval,
    probability_of_improvement,
    probability_of_improvement_interval,
    rate_interval,
    stratified_bootstrap,
    wilson_interval,
)

Z = scipy_stats.norm.ppf(0.975)


# ---------------------------------------------------------------------------- IQM
@pytest.mark.parametrize(("scores", "expected"), [
    ([1, 2, 3, 4], 2.5),                  # n = 4: trims one each end -> mean(2, 3)
    ([1, 2, 3, 4, 5], 3.0),               # n = 5: floor(5/4) = 1 each end -> mean(2, 3, 4)
    ([1, 2, 3, 4, 5, 6, 7, 100], 4.5),    # n = 8: two each end -> mean(3, 4, 5, 6); the outlier is gone
    ([5, 1, 100, -50, 3, 2, 4, 6], 3.5),  # order does not matter: sorted -50, 1, 2, 3, 4, 5, 6, 100
    ([7.0], 7.0),
    ([2, 2, 2], 2.0),
])
def test_iqm_of_known_arrays(scores: list[float], expected: float) -> None:
    assert iqm(scores) == pytest.approx(expected)


def test_iqm_reduces_the_last_axis_and_refuses_nothing() -> None:
    values = np.array([[1, 2, 3, 4], [10, 20, 30, 40]], dtype=float)
    np.testing.assert_allclose(iqm(values), [2.5, 25.0])
    with pytest.raises(ValueError, match="no scores"):
        iqm([])


def test_iqm_interval_is_degenerate_for_equal_seeds_and_contains_the_estimate() -> None:
    interval = iqm_interval([3.0, 3.0, 3.0])
    assert (interval.estimate, interval.low, interval.high, interval.n, interval.unit) == (3.0, 3.0, 3.0, 3, "seed")
    interval = iqm_interval(np.random.default_rng(0).normal(size=12))
    assert interval.low <= interval.estimate <= interval.high
    assert interval.low < interval.high


def test_percentile_interval_of_two_seeds_matches_the_closed_form() -> None:
    # Two seeds {0, 1}: a resample's mean is 0, 1/2 or 1 with probabilities 1/4, 1/2, 1/4, so the 2.5 and
    # 97.5 percentiles are 0 and 1 exactly.
    estimate, low, high = stratified_bootstrap([0.0, 1.0], lambda tasks: tasks[0].mean(axis=1))
    assert (estimate, low, high) == (0.5, 0.0, 1.0)


def test_stratified_bootstrap_resamples_within_each_task() -> None:
    # Task A's seeds all score 0, task B's all 1: resampling within tasks keeps 2 of each, so the pooled
    # mean never moves; resampling the pooled 4 seeds would move it (0 to 1).
    pooled_mean = lambda tasks: np.concatenate(tasks, axis=1).mean(axis=1)  # noqa: E731
    assert stratified_bootstrap([[0.0, 0.0], [1.0, 1.0]], pooled_mean) == (0.5, 0.5, 0.5)
    estimate, low, high = stratified_bootstrap([[0.0, 0.0, 1.0, 1.0]], pooled_mean)
    assert estimate == 0.5 and low < 0.5 < high
    # unequal strata keep their sizes: 3 seeds of 0 and 1 seed of 4 -> pooled mean always 1
    assert stratified_bootstrap([[0.0, 0.0, 0.0], [4.0]], pooled_mean) == (1.0, 1.0, 1.0)


def test_iqm_interval_pools_tasks_like_rliable() -> None:
    interval = iqm_interval([[1.0, 2.0, 3.0], [10.0, 20.0]])
    assert interval.estimate == pytest.approx(5.0)  # IQM of the pooled 1, 2, 3, 10, 20: mean(2, 3, 10)
    assert interval.n == 5


@pytest.mark.parametrize("bad", [[[]], [[1.0, np.nan]], np.zeros((2, 3))])
def test_scores_are_checked(bad: object) -> None:
    with pytest.raises(ValueError):
        iqm_interval(bad)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- probability of improvement
@pytest.mark.parametrize(("x", "y", "expected"), [
    ([2, 3, 4], [1, 1, 1], 1.0),           # every X above every Y
    ([1, 2, 3], [1, 2, 3], 0.5),           # identical: ties count half
    ([0, 0], [5, 6], 0.0),
    ([1, 3], [2, 2], 0.5),                 # pairs: 0, 0, 1, 1
    ([3, 4], [1, 2, 3.5], 5 / 6),          # 3 beats 1 and 2, 4 beats all three
    ([1, 2, 3], [2], 0.5),                 # 0 + 1/2 + 1 over 3
])
def test_probability_of_improvement_hand_cases(x: list[float], y: list[float], expected: float) -> None:
    assert probability_of_improvement(x, y) == pytest.approx(expected)


def test_probability_of_improvement_is_the_normalised_mann_whitney_u() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.integers(0, 5, size=9).astype(float), rng.integers(0, 5, size=7).astype(float)  # with ties
    u = scipy_stats.mannwhitneyu(x, y, alternative="two-sided").statistic
    assert probability_of_improvement(x, y) == pytest.approx(u / (x.size * y.size))


def test_probability_of_improvement_averages_tasks() -> None:
    assert probability_of_improvement([[2.0, 3.0], [0.0]], [[1.0, 1.0], [9.0]]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="same tasks"):
        probability_of_improvement([[1.0], [2.0]], [[1.0]])


def test_probability_of_improvement_interval_extremes_and_bounds() -> None:
    certain = probability_of_improvement_interval([2.0, 3.0, 4.0], [1.0, 1.0, 1.0])
    assert (certain.estimate, certain.low, certain.high) == (1.0, 1.0, 1.0)
    same = probability_of_improvement_interval([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert (same.estimate, same.low, same.high) == (0.5, 0.5, 0.5)  # paired: a resample compares equal sets
    rng = np.random.default_rng(1)
    for paired in (True, False):
        found = probability_of_improvement_interval(rng.normal(size=6), rng.normal(size=6), paired=paired)
        assert 0.0 <= found.low <= found.estimate <= found.high <= 1.0
        assert found.low < found.high
    with pytest.raises(ValueError, match="paired"):
        probability_of_improvement_interval([1.0, 2.0], [1.0])
    unpaired = probability_of_improvement_interval([1.0, 2.0], [1.5], paired=False)
    assert unpaired.estimate == pytest.approx(0.5)


# ---------------------------------------------------------------------------- rates
def test_wilson_interval_closed_forms() -> None:
    # 0 of n: [0, z^2 / (n + z^2)]; n of n: [n / (n + z^2), 1]
    for n in (1, 5, 10, 20):
        assert wilson_interval(0, n) == pytest.approx((0.0, Z**2 / (n + Z**2)))
        assert wilson_interval(n, n) == pytest.approx((n / (n + Z**2), 1.0))
    low, high = wilson_interval(8, 10)  # the textbook case (Brown, Cai & DasGupta 2001): [0.490, 0.943]
    assert (round(low, 3), round(high, 3)) == (0.490, 0.943)
    low, high = wilson_interval(5, 10)
    assert low == pytest.approx(1 - high)  # symmetric about 1/2
    with pytest.raises(ValueError):
        wilson_interval(3, 2)
    with pytest.raises(ValueError):
        wilson_interval(0, 0)


@pytest.mark.parametrize("rates", [[0.0] * 5, [1.0] * 5, [0.0] * 10, [1.0] * 10, [0.0], [1.0], [0.5, 0.0, 0.0, 0.0]])
def test_rate_interval_stays_inside_0_1_and_is_never_certain_from_few_seeds(rates: list[float]) -> None:
    interval = rate_interval(rates)
    assert 0.0 <= interval.low <= interval.estimate <= interval.high <= 1.0
    assert interval.estimate == pytest.approx(np.mean(rates))
    assert interval.high - interval.low > 0.2  # at most 10 seeds: never "0 % [0, 0]"
    assert interval.unit == "seed" and interval.n == len(rates)


def test_rate_interval_refuses_values_outside_0_1() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        rate_interval([0.5, 1.5])
    with pytest.raises(ValueError, match="no seeds"):
        rate_interval([])


# ---------------------------------------------------------------------------- coverage on simulated seeds
def test_intervals_cover_the_truth_on_simulated_experiments() -> None:
    """Fixed-seed simulation, 300 experiments each: the nominal 95 % intervals cover the true value in
    at least 88 % (the percentile bootstrap under-covers a little with 10-15 seeds; Wilson over seeds
    is conservative), and none is absurdly wide."""
    rng = np.random.default_rng(2021)
    n_experiments, true_p = 300, scipy_stats.norm.cdf(0.5 / np.sqrt(2))  # P(N(0.5, 1) > N(0, 1))
    covered = {"iqm": 0, "poi": 0, "rate": 0}
    for _ in range(n_experiments):
        seeds = rng.normal(size=15)  # symmetric: the population IQM is the mean, 0
        interval = iqm_interval(seeds, n_resamples=1000, seed=int(rng.integers(1 << 30)))
        covered["iqm"] += interval.low <= 0.0 <= interval.high
        x, y = rng.normal(0.5, 1.0, size=15), rng.normal(0.0, 1.0, size=15)
        poi = probability_of_improvement_interval(x, y, n_resamples=1000, seed=int(rng.integers(1 << 30)))
        covered["poi"] += poi.low <= true_p <= poi.high
        rates = rng.beta(1.0, 9.0, size=10)  # per-seed side-effect rates with mean 0.1
        rate = rate_interval(rates)
        covered["rate"] += rate.low <= 0.1 <= rate.high
    coverage = {name: count / n_experiments for name, count in covered.items()}
    assert min(coverage.values()) >= 0.88, coverage
    assert coverage["rate"] >= 0.95, coverage  # conservative by construction


def test_point_estimates_agree_with_rliable_where_it_is_installed() -> None:
    """rliable is an optional cross-check, never a requirement."""
    rliable_metrics = pytest.importorskip("rliable.metrics")
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(10, 3)), rng.normal(size=(10, 3))  # rliable's layout: (runs, tasks)
    assert iqm(x, axis=None) == pytest.approx(rliable_metrics.aggregate_iqm(x))
    assert probability_of_improvement(list(x.T), list(y.T)) == pytest.approx(
        rliable_metrics.probability_of_improvement(x, y))
