"""Bradley–Terry likelihood: values, gradients against finite differences, stability."""

import numpy as np
import pytest
import torch

from ruagent.preferences.bradley_terry import (
    bradley_terry_loss,
    nll_derivatives,
    preference_probability,
)

NOISES = [0.0, 0.1, 0.3]


def _finite_difference(f, x, eps=1e-6):
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[i] = eps
        grad[i] = (f(x + step) - f(x - step)) / (2 * eps)
    return grad


@pytest.mark.parametrize("label_noise", NOISES)
def test_probability_matches_the_definition(label_noise):
    delta = np.linspace(-6, 6, 25)
    expected = label_noise / 2 + (1 - label_noise) / (1 + np.exp(-delta))
    np.testing.assert_allclose(preference_probability(delta, label_noise), expected, rtol=1e-12)
    # a random answer is right half the time: P(Δ) + P(−Δ) = 1
    np.testing.assert_allclose(
        preference_probability(delta, label_noise) + preference_probability(-delta, label_noise), 1
    )


@pytest.mark.parametrize("label_noise", NOISES)
def test_torch_loss_gradient_matches_finite_differences(label_noise):
    rng = np.random.default_rng(0)
    returns = rng.normal(0, 3, size=(3, 7, 2))
    labels = torch.tensor([1.0, 0.0, 0.5, 1.0, 0.0, 1.0, 0.5], dtype=torch.float64)
    weights = torch.as_tensor(rng.poisson(1.0, size=(3, 7)) + 0.5, dtype=torch.float64)

    def loss(x: np.ndarray) -> float:
        t = torch.as_tensor(x)
        return float(bradley_terry_loss(t, labels, label_noise, temperature=1.7, weights=weights).sum())

    x = torch.tensor(returns, requires_grad=True)
    bradley_terry_loss(x, labels, label_noise, temperature=1.7, weights=weights).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), _finite_difference(loss, returns), rtol=1e-6, atol=1e-8)
    assert torch.autograd.gradcheck(
        lambda r: bradley_terry_loss(r, labels, label_noise, 1.7, weights), (x.detach().requires_grad_(),)
    )


@pytest.mark.parametrize("label_noise", NOISES)
def test_numpy_derivatives_match_finite_differences_and_torch(label_noise):
    delta = np.linspace(-8, 8, 17)
    for y in (0.0, 0.5, 1.0):
        labels = np.full_like(delta, y)
        nll, grad, _ = nll_derivatives(delta, labels, label_noise)
        numeric = (
            nll_derivatives(delta + 1e-6, labels, label_noise)[0]
            - nll_derivatives(delta - 1e-6, labels, label_noise)[0]
        ) / 2e-6
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)
        returns = torch.as_tensor(np.stack([delta, np.zeros_like(delta)], axis=-1)[None])
        torch_nll = bradley_terry_loss(returns, torch.as_tensor(labels), label_noise) * len(delta)
        np.testing.assert_allclose(float(torch_nll[0]), nll.sum(), rtol=1e-10)


@pytest.mark.parametrize("label_noise", NOISES)
def test_fisher_is_expected_squared_gradient_and_exact_curvature_without_noise(label_noise):
    delta = np.linspace(-5, 5, 11)
    p = preference_probability(delta, label_noise)
    _, grad_1, fisher = nll_derivatives(delta, np.ones_like(delta), label_noise)
    _, grad_0, _ = nll_derivatives(delta, np.zeros_like(delta), label_noise)
    np.testing.assert_allclose(fisher, p * grad_1**2 + (1 - p) * grad_0**2, rtol=1e-10)
    if label_noise == 0.0:
        second = (
            nll_derivatives(delta + 1e-5, np.ones_like(delta))[1]
            - nll_derivatives(delta - 1e-5, np.ones_like(delta))[1]
        ) / 2e-5
        np.testing.assert_allclose(fisher, second, rtol=1e-5)


@pytest.mark.parametrize("label_noise", NOISES)
def test_extreme_differences_stay_finite(label_noise):
    delta = np.array([-1e4, -800.0, 800.0, 1e4])
    nll, grad, fisher = nll_derivatives(delta, np.array([1.0, 1.0, 0.0, 0.0]), label_noise)
    assert np.isfinite(nll).all() and np.isfinite(grad).all() and np.isfinite(fisher).all()
    x = torch.tensor([[[1e4, 0.0], [-1e4, 0.0]]], requires_grad=True)
    loss = bradley_terry_loss(x, torch.tensor([0.0, 1.0]), label_noise).sum()
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()


def test_bad_noise_and_shapes_are_refused():
    with pytest.raises(ValueError, match="label_noise"):
        preference_probability(np.zeros(2), 1.0)
    with pytest.raises(AssertionError):
        bradley_terry_loss(torch.zeros(2, 3, 2), torch.zeros(4))
