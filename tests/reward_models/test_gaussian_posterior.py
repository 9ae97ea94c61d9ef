"""LinearGaussianPosterior against the textbook formulas, and its paths against each other."""

import numpy as np
import pytest

from ruagent.reward_models.gaussian_posterior import LinearGaussianPosterior


@pytest.fixture
def problem():
    """A random prior N(m₀, Λ₀⁻¹) with a non-zero mean, and noisy labels of a known weight vector."""
    rng = np.random.default_rng(0)
    p, n = 4, 60
    a = rng.normal(size=(p, p))
    prior_mean, prior_precision = rng.normal(size=p), a @ a.T + p * np.eye(p)
    phi = rng.normal(size=(n, p))
    y = phi @ rng.normal(size=p) + 0.3 * rng.normal(size=n)
    return prior_mean, prior_precision, phi, y


def textbook(prior_mean, prior_precision, phi, y, noise_std):
    """Bishop eq. 3.50–3.51: Λ = Λ₀ + ΦᵀΦ/σ², μ = Λ⁻¹(Λ₀m₀ + Φᵀy/σ²)."""
    precision = prior_precision + phi.T @ phi / noise_std**2
    mean = np.linalg.solve(precision, prior_precision @ prior_mean + phi.T @ y / noise_std**2)
    return mean, np.linalg.inv(precision), precision


def test_a_new_posterior_is_its_prior(problem):
    prior_mean, prior_precision, _, _ = problem
    posterior = LinearGaussianPosterior(prior_mean, prior_precision)
    np.testing.assert_allclose(posterior.mean, prior_mean)
    np.testing.assert_allclose(posterior.cov @ prior_precision, np.eye(4), atol=1e-12)
    assert posterior.n_labels == 0 and posterior.noise_std is None


def test_fixed_noise_is_the_closed_form(problem):
    prior_mean, prior_precision, phi, y = problem
    posterior = LinearGaussianPosterior(prior_mean, prior_precision)
    posterior.add(phi, y)
    posterior.condition(noise_std=0.5)
    mean, cov, precision = textbook(prior_mean, prior_precision, phi, y, 0.5)
    np.testing.assert_allclose(posterior.mean, mean, rtol=1e-10)
    np.testing.assert_allclose(posterior.cov, cov, rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(posterior.precision, precision, rtol=1e-12)
    assert posterior.n_labels == 60 and posterior.max_abs_label == pytest.approx(np.abs(y).max())


def test_learned_noise_is_the_closed_form_at_its_estimate(problem):
    """The whitened eigen-path gives the same posterior as the direct formula at σ̂_n, and σ̂_n
    is near the true noise (0.3) with 60 labels."""
    prior_mean, prior_precision, phi, y = problem
    posterior = LinearGaussianPosterior(prior_mean, prior_precision)
    posterior.add(phi, y)
    posterior.condition(noise_std=None, noise_floor=1e-6)
    assert 0.2 < posterior.noise_std < 0.4
    mean, cov, _ = textbook(prior_mean, prior_precision, phi, y, posterior.noise_std)
    np.testing.assert_allclose(posterior.mean, mean, rtol=1e-9)
    np.testing.assert_allclose(posterior.cov, cov, rtol=1e-8, atol=1e-14)


def test_learned_noise_respects_the_floor(problem):
    prior_mean, prior_precision, phi, _ = problem
    posterior = LinearGaussianPosterior(prior_mean, prior_precision)
    posterior.add(phi, phi @ np.ones(4))  # exact labels: the evidence peaks at σ_n → 0
    posterior.condition(noise_std=None, noise_floor=1e-3)
    assert posterior.noise_std == pytest.approx(1e-3)


def test_online_updates_equal_a_batch_fit(problem):
    prior_mean, prior_precision, phi, y = problem
    online = LinearGaussianPosterior(prior_mean, prior_precision)
    for rows in np.array_split(np.arange(len(y)), 3):
        online.add(phi[rows], y[rows])
        online.rank_one_updates(phi[rows], y[rows], noise_std=0.5)
    batch = LinearGaussianPosterior(prior_mean, prior_precision)
    batch.add(phi, y)
    batch.condition(noise_std=0.5)
    for name in ("mean", "cov", "precision", "gram", "moment"):
        np.testing.assert_allclose(getattr(online, name), getattr(batch, name), rtol=1e-9, atol=1e-12, err_msg=name)
    assert online.yy == pytest.approx(batch.yy) and online.n_labels == batch.n_labels


def test_clear_forgets_the_labels_and_set_prior_keeps_them(problem):
    prior_mean, prior_precision, phi, y = problem
    posterior = LinearGaussianPosterior(prior_mean, prior_precision)
    posterior.add(phi, y)
    posterior.set_prior(np.zeros(4), np.eye(4))
    assert posterior.n_labels == 60  # statistics kept; conditioning uses the new prior
    posterior.condition(noise_std=0.5)
    np.testing.assert_allclose(posterior.mean, textbook(np.zeros(4), np.eye(4), phi, y, 0.5)[0], rtol=1e-10)
    posterior.clear()
    assert posterior.n_labels == 0 and posterior.yy == 0.0
    np.testing.assert_allclose(posterior.mean, np.zeros(4))


def test_draws_have_the_posterior_covariance(problem):
    """With z = I (one draw per basis direction), Σ_k (w_k − μ)(w_k − μ)ᵀ = L⁻ᵀL⁻¹ = Σ exactly."""
    prior_mean, prior_precision, phi, y = problem
    posterior = LinearGaussianPosterior(prior_mean, prior_precision)
    posterior.add(phi, y)
    posterior.condition(noise_std=0.5)
    offsets = posterior.draws(np.eye(4)) - posterior.mean
    np.testing.assert_allclose(offsets.T @ offsets, posterior.cov, rtol=1e-9, atol=1e-14)


def test_moments_are_the_predictive_mean_and_std(problem):
    prior_mean, prior_precision, phi, y = problem
    posterior = LinearGaussianPosterior(prior_mean, prior_precision)
    posterior.add(phi, y)
    posterior.condition(noise_std=0.5)
    mean, std = posterior.moments(phi[:5])
    np.testing.assert_allclose(mean, phi[:5] @ posterior.mean)
    np.testing.assert_allclose(std**2, np.diag(phi[:5] @ posterior.cov @ phi[:5].T), rtol=1e-10)
