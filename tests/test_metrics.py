"""ruagent.metrics on synthetic data with known answers (fixed seeds, margins from the maths)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from ruagent.metrics import (
    Interval,
    auroc,
    auroc_interval,
    bootstrap_interval,
    difference_interval,
    gaussian_nll,
    interval_coverage,
    member_mean_std,
)


def brute_force_auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(pos > neg) + ½ P(tie) over all pairs."""
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


# ---------------------------------------------------------------------- AUROC
@pytest.mark.parametrize("seed", range(5))
def test_auroc_equals_the_pairwise_definition_with_ties(seed):
    rng = np.random.default_rng(seed)
    pos = rng.integers(0, 6, size=rng.integers(1, 40)).astype(float)  # small integers: many ties
    neg = rng.integers(0, 5, size=rng.integers(1, 40)).astype(float)
    assert auroc(pos, neg) == pytest.approx(brute_force_auroc(pos, neg), abs=1e-12)


def test_auroc_extremes_and_chance():
    assert auroc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 1.0
    assert auroc(np.array([0.0, 1.0]), np.array([2.0, 3.0])) == 0.0
    assert auroc(np.ones(4), np.ones(7)) == 0.5
    with pytest.raises(ValueError, match="positives and negatives"):
        auroc(np.array([]), np.ones(3))


def test_auroc_interval_matches_the_binormal_truth():
    # Unit-variance normals one apart: AUROC = Φ(1/√2) ≈ 0.760.
    rng = np.random.default_rng(0)
    truth = stats.norm.cdf(1 / np.sqrt(2))
    interval = auroc_interval(rng.normal(1.0, 1.0, 400), rng.normal(0.0, 1.0, 400), seed=0)
    assert interval.low <= interval.estimate <= interval.high
    assert interval.low <= truth <= interval.high
    assert interval.high - interval.low < 0.12  # ~4 standard errors of an 800-point AUROC
    assert interval.unit == "transition" and interval.n == 800


# ---------------------------------------------------------------------- bootstrap
def test_bootstrap_interval_covers_the_mean_at_about_the_nominal_rate():
    rng = np.random.default_rng(0)
    trials = 200
    covered = 0
    for i in range(trials):
        interval = bootstrap_interval(rng.normal(1.0, 2.0, 40), seed=i, n_resamples=999)
        covered += interval.low <= 1.0 <= interval.high
    # Nominal 0.95; a binomial(200, 0.95) is within ±0.05 with probability > 0.99, and
    # BCa on n=40 undercovers slightly, hence the lower margin.
    assert 0.87 <= covered / trials <= 0.995


def test_bootstrap_interval_of_one_sample_contains_its_mean():
    values = np.random.default_rng(1).exponential(3.0, 60)
    interval = bootstrap_interval(values)
    assert interval.estimate == pytest.approx(values.mean())
    assert interval.low < interval.estimate < interval.high
    assert (interval.n, interval.unit) == (60, "episode")
    assert bootstrap_interval(values) == interval  # seeded: reproducible


def test_bootstrap_interval_over_seeds_resamples_seed_means():
    rng = np.random.default_rng(2)
    per_seed = [rng.normal(mu, 1.0, 25) for mu in (0.0, 1.0, 2.0, 3.0, 4.0)]
    interval = bootstrap_interval(per_seed)
    assert (interval.n, interval.unit) == (5, "seed")
    assert interval.estimate == pytest.approx(np.mean([s.mean() for s in per_seed]))
    # Seed-to-seed spread (sd ≈ 1.6) dominates: wider than pooling 125 episodes would claim.
    pooled = bootstrap_interval(np.concatenate(per_seed))
    assert interval.high - interval.low > pooled.high - pooled.low
    assert bootstrap_interval([per_seed[0]]).unit == "episode"


def test_bootstrap_interval_degenerate_and_bad_input():
    assert bootstrap_interval([2.0, 2.0, 2.0]) == Interval(2.0, 2.0, 2.0, 3, "episode")
    assert bootstrap_interval([5.0]) == Interval(5.0, 5.0, 5.0, 1, "episode")
    with pytest.raises(ValueError, match="no samples"):
        bootstrap_interval([])
    with pytest.raises(ValueError, match="non-finite"):
        bootstrap_interval([1.0, np.nan])
    with pytest.raises(ValueError, match="a seed has no episodes"):
        bootstrap_interval([[1.0], []])


def test_difference_interval_covers_the_true_difference():
    rng = np.random.default_rng(3)
    interval = difference_interval(rng.normal(5.0, 1.0, 80), rng.normal(3.0, 1.0, 50))
    assert interval.low <= 2.0 <= interval.high and interval.low > 1.0
    assert difference_interval([4.0], [1.0, 2.0]).estimate == 2.5


def test_interval_serialises_to_the_eval_json_schema():
    assert Interval(1.0, 0.5, 1.5, 10).to_dict() == {"estimate": 1.0, "low": 0.5, "high": 1.5, "n": 10,
                                                      "unit": "episode"}


# ---------------------------------------------------------------------- calibration
def test_member_mean_std_uniform_and_weighted():
    rng = np.random.default_rng(4)
    members = rng.normal(size=(7, 30))
    mean, std = member_mean_std(members)
    np.testing.assert_allclose(mean, members.mean(axis=0))
    np.testing.assert_allclose(std, members.std(axis=0))
    probs = rng.dirichlet(np.ones(7))
    mean_w, std_w = member_mean_std(members, probs)
    np.testing.assert_allclose(mean_w, np.average(members, axis=0, weights=probs))
    np.testing.assert_allclose(std_w**2, np.average((members - mean_w) ** 2, axis=0, weights=probs))
    with pytest.raises(ValueError, match=r"\(K, B\)"):
        member_mean_std(members[0])


def test_nll_of_a_calibrated_gaussian_is_its_entropy():
    rng = np.random.default_rng(5)
    n = 20_000
    mean, std = rng.normal(size=n), rng.uniform(0.2, 3.0, n)
    labels = rng.normal(mean, std)
    nll = gaussian_nll(labels, mean, std)
    entropy = 0.5 * np.log(2 * np.pi * np.e * std**2)
    # Per-label NLL − entropy = (z² − 1)/2 with z ~ N(0, 1): mean 0, sd 1/√2.
    assert abs(nll.mean() - entropy.mean()) < 4 * (1 / np.sqrt(2)) / np.sqrt(n)
    # Overconfidence (std / 3) and underconfidence (std × 3) both cost likelihood.
    assert gaussian_nll(labels, mean, std / 3).mean() > nll.mean() + 0.5
    assert gaussian_nll(labels, mean, std * 3).mean() > nll.mean() + 0.5


def test_coverage_is_nominal_when_calibrated_and_low_when_overconfident():
    rng = np.random.default_rng(6)
    n = 20_000
    mean, std = rng.normal(size=n), rng.uniform(0.2, 3.0, n)
    labels = rng.normal(mean, std)
    for level in (0.5, 0.9):
        coverage = interval_coverage(labels, mean, std, level).mean()
        assert abs(coverage - level) < 4 * np.sqrt(level * (1 - level) / n)
    # Std a third of the truth: the 90 % interval covers P(|z| < 1.645/3) ≈ 0.42.
    expected = 2 * stats.norm.cdf(stats.norm.ppf(0.95) / 3) - 1
    assert interval_coverage(labels, mean, std / 3, 0.9).mean() == pytest.approx(expected, abs=0.02)


def test_calibration_floor_and_bad_input():
    labels, mean, std = np.array([1.0, 2.0]), np.array([1.0, 2.5]), np.zeros(2)
    with pytest.raises(ValueError, match="min_std > 0"):
        gaussian_nll(labels, mean, std)
    assert np.isfinite(gaussian_nll(labels, mean, std, min_std=0.1)).all()
    assert interval_coverage(labels, mean, std, 0.9, min_std=0.1).tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match=r"\(B,\) arrays"):
        gaussian_nll(labels, mean[:1], std)
    with pytest.raises(ValueError, match="level"):
        interval_coverage(labels, mean, std + 1, level=1.0)
