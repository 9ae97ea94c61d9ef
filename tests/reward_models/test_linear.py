"""BayesianLinearRewardModel: textbook posterior, online updates, draws, Fourier features."""

import itertools

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ruagent.data import collect_transitions
from ruagent.reward_models import BayesianLinearRewardModel

from .conftest import BOX_1D, TerrainEnv, obs_only


def _design(n=120, d=4, seed=0):
    rng = np.random.default_rng(seed)
    phi = rng.standard_normal((n, d)).astype(np.float32)
    y = (phi @ rng.standard_normal(d) + 0.1 * rng.standard_normal(n)).astype(np.float32)
    return phi, y


def _identity_model(d, **kwargs):
    """Features are the observation: the model's design matrix is Φ itself."""
    space = gym.spaces.Box(-np.inf, np.inf, (d,), dtype=np.float32)
    kwargs = {"features": obs_only, "bias": False, "seed": 0, **kwargs}
    return BayesianLinearRewardModel(space, gym.spaces.Discrete(1), **kwargs)


def _labels(phi, y):
    return phi, np.zeros(len(y), dtype=np.int64), phi, y


def test_posterior_equals_textbook_closed_form():
    phi, y = _design()
    prior_std, noise_std = 0.7, 0.3
    model = _identity_model(4, prior_std=prior_std, noise_std=noise_std).fit(_labels(phi, y))
    # Bishop (2006) eq. 3.53-3.54, with explicit inverses (independent of the model's Cholesky path)
    phi64 = phi.astype(np.float64)
    cov = np.linalg.inv(np.eye(4) / prior_std**2 + phi64.T @ phi64 / noise_std**2)
    mean = cov @ phi64.T @ y.astype(np.float64) / noise_std**2
    np.testing.assert_allclose(model.posterior_cov, cov, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(model.posterior_mean, mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(model.posterior_precision @ cov, np.eye(4), atol=1e-9)


@pytest.mark.parametrize("kwargs", [{}, {"bias": True}, {"random_fourier_features": 64, "normalise_inputs": False}])
def test_online_updates_equal_a_full_refit(kwargs):
    phi, y = _design(n=300)
    refit = _identity_model(4, **kwargs).fit(_labels(phi, y))
    online = _identity_model(4, **kwargs).fit(_labels(phi[:50], y[:50]))
    online.update(_labels(phi[50:200], y[50:200])).update(_labels(phi[200:], y[200:]))
    from_prior = _identity_model(4, **kwargs).update(_labels(phi, y))
    for model in (online, from_prior):
        np.testing.assert_allclose(model.posterior_mean, refit.posterior_mean, rtol=0, atol=1e-6)
        np.testing.assert_allclose(model.posterior_cov, refit.posterior_cov, rtol=0, atol=1e-6)
        np.testing.assert_allclose(model.posterior_precision, refit.posterior_precision, rtol=1e-12)
        np.testing.assert_allclose(model.predict(*_labels(phi, y)[:3]), refit.predict(*_labels(phi, y)[:3]), atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(
    cuts=st.lists(st.integers(0, 80), max_size=4),
    prior_std=st.floats(0.1, 10.0),
    noise_std=st.floats(0.01, 2.0),
)
def test_any_split_into_updates_equals_a_refit(cuts, prior_std, noise_std):
    phi, y = _design(n=80, d=3, seed=len(cuts))
    bounds = [0, *sorted(cuts), 80]
    online = _identity_model(3, prior_std=prior_std, noise_std=noise_std)
    for start, stop in itertools.pairwise(bounds):
        if stop > start:
            online.update(_labels(phi[start:stop], y[start:stop]))
    refit = _identity_model(3, prior_std=prior_std, noise_std=noise_std).fit(_labels(phi, y))
    np.testing.assert_allclose(online.posterior_mean, refit.posterior_mean, rtol=0, atol=1e-6)
    np.testing.assert_allclose(online.posterior_cov, refit.posterior_cov, rtol=0, atol=1e-6)


def test_predictions_are_basis_times_member_weights():
    phi, y = _design()
    model = _identity_model(4, bias=True, n_members=6).fit(_labels(phi, y))
    rewards = model.predict(*_labels(phi, y)[:3])
    expected = (np.concatenate([phi, np.ones((len(phi), 1))], 1) @ model.weights.T).T
    assert rewards.shape == (6, len(phi)) and rewards.dtype == np.float32
    np.testing.assert_allclose(rewards, expected, rtol=1e-4, atol=1e-4)


def test_member_draws_follow_the_posterior():
    phi, y = _design(n=30)
    model = _identity_model(4, n_members=4000, prior_std=1.0, noise_std=1.0).fit(_labels(phi, y))
    weights = model.weights
    # sample moments of 4000 draws: standard errors ~ sqrt(var / 4000) ≈ 0.016 * posterior std
    std = np.sqrt(np.diag(model.posterior_cov))
    assert np.all(np.abs(weights.mean(0) - model.posterior_mean) < 5 * std / np.sqrt(4000))
    np.testing.assert_allclose(np.cov(weights.T), model.posterior_cov, atol=0.1 * std.max() ** 2)


def test_draws_are_fixed_until_resampled():
    phi, y = _design()
    model = _identity_model(4, n_members=5).fit(_labels(phi, y))
    x = _labels(phi[:10], y[:10])[:3]
    first = model.predict(*x)
    np.testing.assert_array_equal(first, model.predict(*x))
    model.resample(seed=1)
    second = model.predict(*x)
    assert not np.allclose(first, second)
    model.resample(seed=1)
    np.testing.assert_array_equal(second, model.predict(*x))


def test_set_posterior_for_laplace_approximations():
    model = _identity_model(3)
    with pytest.raises(RuntimeError, match="features"):
        model.set_posterior(np.zeros(3), np.eye(3))
    model.features(np.zeros((1, 3)), np.zeros(1, dtype=np.int64), np.zeros((1, 3)))
    mean, precision = np.array([1.0, -2.0, 0.5]), np.diag([4.0, 9.0, 1.0])
    model.set_posterior(mean, precision)
    np.testing.assert_allclose(model.posterior_cov, np.diag([0.25, 1 / 9, 1.0]))
    np.testing.assert_array_equal(model.posterior_mean, mean)
    with pytest.raises(ValueError, match=r"need mean \(3,\)"):
        model.set_posterior(np.zeros(2), np.eye(2))


def test_fourier_features_are_uncertain_away_from_the_data(toy_1d):
    model = BayesianLinearRewardModel(
        BOX_1D, gym.spaces.Discrete(1), n_members=20, features=obs_only, random_fourier_features=100,
        rff_lengthscale=0.5, noise_std=0.1, seed=0,
    ).fit(toy_1d)
    on_data, off_data = np.linspace(-1, 1, 32), np.linspace(4, 6, 32)

    def predict(x):
        x = x.astype(np.float32)[:, None]
        return model.predict(x, np.zeros(len(x), dtype=np.int64), x)

    assert np.abs(predict(on_data).mean(0) - np.sin(3 * on_data)).mean() < 0.1
    assert predict(off_data).std(0).mean() > 3 * predict(on_data).std(0).mean()
    np.testing.assert_allclose(model.reward_loc, predict(toy_1d[0][:, 0]).mean(1), rtol=1e-4, atol=1e-5)


def test_env_features_recover_terrain_weights():
    env = TerrainEnv()
    data = collect_transitions(env, 300, seed=0)
    model = BayesianLinearRewardModel(
        env.observation_space, env.action_space, features="env", bias=False, noise_std=0.01, prior_std=10.0
    ).fit(data, env=env)
    visited = np.unique(env.terrain[data.next_obs])
    np.testing.assert_allclose(model.posterior_mean[visited], np.array([-1.0, -2.0, 5.0])[visited], atol=1e-3)


def test_transition_features_on_cartpole_shapes():
    env = gym.make("CartPole-v1")
    data = collect_transitions(env, 100, seed=0)
    model = BayesianLinearRewardModel(env.observation_space, env.action_space, n_members=7, seed=0).fit(data)
    assert model.basis_dim == 11  # 4 + 2 + 4 featuriser columns + bias
    assert model.predict(data.obs, data.action, data.next_obs).shape == (7, 100)
    np.testing.assert_allclose(model.predict(data.obs, data.action, data.next_obs).mean(0), 1.0, atol=0.05)


def test_invalid_hyperparameters():
    with pytest.raises(ValueError, match="noise_std"):
        _identity_model(2, noise_std=0.0)
