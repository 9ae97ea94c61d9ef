"""Laplace posterior against a brute-force grid posterior on a 2-D toy; online updates."""

import numpy as np
import pytest

from ruagent.preferences.bradley_terry import nll_derivatives
from ruagent.preferences.laplace import LaplacePosterior, fit_laplace

TRUE_W = np.array([1.0, -0.5])


def _toy(n: int, label_noise: float, seed: int):
    rng = np.random.default_rng(seed)
    d = rng.normal(0, 1.5, size=(n, 2))
    p = label_noise / 2 + (1 - label_noise) / (1 + np.exp(-d @ TRUE_W))
    return d, (rng.random(n) < p).astype(float)


def _grid_posterior(d, labels, prior_precision, label_noise, centre, half_width):
    """Moments and mode of the exact posterior on a 121 x 121 grid around ``centre``."""
    axes = [np.linspace(c - h, c + h, 121) for c, h in zip(centre, half_width)]
    w = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 2)  # (G, 2)
    nll, _, _ = nll_derivatives(w @ d.T, np.broadcast_to(labels, (w.shape[0], len(labels))), label_noise)
    log_post = -nll.sum(axis=1) - 0.5 * prior_precision * (w**2).sum(axis=1)
    weights = np.exp(log_post - log_post.max())
    weights /= weights.sum()
    mean = weights @ w
    centred = w - mean
    return mean, (weights[:, None] * centred).T @ centred, w[np.argmax(weights)]


# label noise fattens the likelihood's tails, so its posterior needs more labels to become
# Gaussian (Bernstein–von Mises): the gap between mode and mean shrinks like 1/sqrt(n)
@pytest.mark.parametrize(("label_noise", "n_labels"), [(0.0, 120), (0.1, 300)])
def test_laplace_matches_grid_posterior(label_noise, n_labels):
    d, labels = _toy(n_labels, label_noise, seed=1)
    mean, precision = fit_laplace(d, labels, np.zeros(2), np.eye(2), label_noise)
    cov = np.linalg.inv(precision)
    grid_mean, grid_cov, grid_mode = _grid_posterior(d, labels, 1.0, label_noise, mean, 6 * np.sqrt(np.diag(cov)))
    spacing = 12 * np.sqrt(np.diag(cov)) / 120
    np.testing.assert_array_less(np.abs(mean - grid_mode), spacing)  # the MAP is the posterior's mode
    sd = np.sqrt(np.diag(grid_cov))
    assert np.all(np.abs(mean - grid_mean) < 0.25 * sd), (mean, grid_mean, sd)
    assert np.linalg.norm(cov - grid_cov) / np.linalg.norm(grid_cov) < 0.2, (cov, grid_cov)


def test_precision_is_the_hessian_at_the_map_without_noise():
    d, labels = _toy(60, 0.0, seed=2)
    prior_precision = np.array([[2.0, 0.3], [0.3, 1.0]])
    mean, precision = fit_laplace(d, labels, np.zeros(2), prior_precision)

    def gradient(w):
        _, grad, _ = nll_derivatives(d @ w, labels)
        return d.T @ grad + prior_precision @ w

    np.testing.assert_allclose(gradient(mean), 0, atol=1e-7)
    hessian = np.stack([(gradient(mean + e * 1e-5) - gradient(mean - e * 1e-5)) / 2e-5 for e in np.eye(2)])
    np.testing.assert_allclose(precision, hessian, rtol=1e-5)


def test_online_updates_equal_a_batch_fit():
    d, labels = _toy(200, 0.0, seed=3)
    batch_mean, batch_precision = fit_laplace(d, labels, np.zeros(2), np.eye(2))
    online = LaplacePosterior(np.zeros(2), 1.0)
    for chunk in np.array_split(np.arange(200), 8):
        online.update(d[chunk], labels[chunk])
    np.testing.assert_allclose(online.mean, batch_mean, atol=1e-8)
    np.testing.assert_allclose(online.precision, batch_precision, rtol=1e-8)
    assert online.n_labels == 200
    sd = np.sqrt(np.diag(online.cov))
    # more labels, tighter posterior, centred near the truth
    assert np.all(np.abs(online.mean - TRUE_W) < 3 * sd)


def test_skipped_labels_are_ignored_and_shapes_checked():
    d, labels = _toy(40, 0.0, seed=4)
    with_skips = np.concatenate([labels, [np.nan, np.nan]])
    mean, _ = fit_laplace(np.concatenate([d, np.ones((2, 2))]), with_skips, np.zeros(2), np.eye(2))
    np.testing.assert_allclose(mean, fit_laplace(d, labels, np.zeros(2), np.eye(2))[0])
    with pytest.raises(ValueError, match="need d"):
        fit_laplace(d[:, :1], labels, np.zeros(2), np.eye(2))
