"""The evidence of Bayesian linear regression from whitened statistics, against direct formulas."""

import numpy as np
import pytest
from scipy import stats

from ruagent.reward_models.evidence import evidence_slope, log_evidence, maximise_evidence


def _statistics(phi, y, prior_std):
    whitened = prior_std * phi
    s, vectors = np.linalg.eigh(whitened.T @ whitened)
    b = vectors.T @ (whitened.T @ y)
    return s, b * b, float(y @ y), len(y)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    phi = rng.normal(size=(60, 4))
    y = phi @ rng.normal(size=4) + 0.7 * rng.normal(size=60)
    return phi, y, 1.3


@pytest.mark.parametrize("noise_std", [0.05, 0.7, 3.0])
def test_log_evidence_is_the_marginal_likelihood(data, noise_std):
    phi, y, prior_std = data
    direct = stats.multivariate_normal.logpdf(y, np.zeros(len(y)),
                                              prior_std**2 * phi @ phi.T + noise_std**2 * np.eye(len(y)))
    assert log_evidence(np.log(noise_std), *_statistics(phi, y, prior_std)) == pytest.approx(direct, rel=1e-9)


@pytest.mark.parametrize("noise_std", [0.3, 0.7, 2.0])
def test_slope_is_minus_twice_the_derivative_in_log_variance(data, noise_std):
    statistics = _statistics(*data)
    h = 1e-5  # d/d log σ² = ½ d/d log σ
    derivative = (log_evidence(np.log(noise_std) + h, *statistics)
                  - log_evidence(np.log(noise_std) - h, *statistics)) / (2 * h) / 2
    assert evidence_slope(np.log(noise_std), *statistics) == pytest.approx(-2 * derivative, rel=1e-5, abs=1e-6)


def test_maximise_evidence_finds_the_maximum_and_respects_the_floor(data):
    statistics = _statistics(*data)
    best = maximise_evidence(*statistics, floor=1e-3)
    grid = np.exp(np.linspace(np.log(1e-2), np.log(10), 2001))
    on_grid = grid[np.argmax([log_evidence(np.log(g), *statistics) for g in grid])]
    assert best == pytest.approx(on_grid, rel=5e-3)
    assert maximise_evidence(*statistics, floor=5.0) == 5.0  # the maximum lies below the floor
