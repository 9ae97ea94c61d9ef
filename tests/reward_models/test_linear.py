"""BayesianLinearRewardModel: textbook posterior, learned noise, prior in reward units, analytic moments,
online updates, draws, Fourier features, files."""

import itertools
import json

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
    model = _identity_model(4, prior_reward_scale=prior_std, noise_std=noise_std).fit(_labels(phi, y))
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
    online = _identity_model(3, prior_reward_scale=prior_std, noise_std=noise_std)
    for start, stop in itertools.pairwise(bounds):
        if stop > start:
            online.update(_labels(phi[start:stop], y[start:stop]))
    refit = _identity_model(3, prior_reward_scale=prior_std, noise_std=noise_std).fit(_labels(phi, y))
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
    model = _identity_model(4, n_members=4000, prior_reward_scale=1.0, noise_std=1.0).fit(_labels(phi, y))
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
        env.observation_space, env.action_space, features="env", bias=False, noise_std=0.01, prior_reward_scale=10.0
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
    with pytest.raises(ValueError, match="prior_reward_scale"):
        _identity_model(2, prior_reward_scale=-1.0)
    with pytest.raises(TypeError, match="prior_std"):
        _identity_model(2, prior_std=1.0)  # renamed prior_reward_scale


# ---------------------------------------------------------------------------- learned noise, prior in reward units
def _noisy_design(seed, n=400, d=5, noise=1.0):
    """Φ (n, d) float32, weights w* ~ N(0, I) and y = Φw* + ε, ε ~ N(0, noise²), float64."""
    rng = np.random.default_rng(seed)
    phi = rng.standard_normal((n, d)).astype(np.float32)
    w = rng.standard_normal(d)
    y = (phi.astype(np.float64) @ w + noise * rng.standard_normal(n)).astype(np.float32)  # labels are float32
    return phi, w, y.astype(np.float64)


def _one_hot_labels(n=300, seed=0):
    """One-hot features of 4 terrains of which the last never occurs, exact labels of weights (-1, -2, 5, ·)."""
    rng = np.random.default_rng(seed)
    phi = np.eye(4, dtype=np.float32)[rng.integers(0, 3, n)]
    return phi, phi.astype(np.float64) @ np.array([-1.0, -2.0, 5.0, 0.0])


@pytest.mark.parametrize(("noise_std", "low", "high"), [(None, 0.88, 0.99), (0.1, 0.0, 0.5)])
def test_learned_noise_gives_calibrated_weight_intervals(noise_std, low, high):
    covered, estimates = [], []
    for seed in range(200):  # 200 datasets x 5 weights = 1000 weight-dataset pairs
        phi, w, y = _noisy_design(seed)
        model = _identity_model(5, prior_reward_scale=1.0, noise_std=noise_std).fit(_labels(phi, y))
        sd = np.sqrt(np.diag(model.posterior_cov))
        covered.append(np.abs(model.posterior_mean - w) < 1.96 * sd)
        estimates.append(model.noise_std)
    coverage, estimates = np.mean(covered), np.array(estimates)
    assert low < coverage < high, coverage  # measured: 0.95 learned, 0.15 with the fixed 0.1
    if noise_std is None:
        assert abs(estimates.mean() - 1.0) < 0.02, estimates.mean()
        assert np.mean(np.abs(estimates - 1.0) < 0.1) > 0.95 and np.all(np.abs(estimates - 1.0) < 0.15)


def test_learned_noise_posterior_is_the_closed_form_at_the_evidence_maximum():
    scipy_stats = pytest.importorskip("scipy.stats")
    phi, _, y = _noisy_design(3, n=120, d=4, noise=0.5)
    prior_scale = 1.5
    model = _identity_model(4, prior_reward_scale=prior_scale).fit(_labels(phi, y))
    noise = model.noise_std
    assert model.learn_noise and model.prior_std == prior_scale and 0.35 < noise < 0.65
    phi64 = phi.astype(np.float64)
    cov = np.linalg.inv(np.eye(4) / prior_scale**2 + phi64.T @ phi64 / noise**2)
    mean = cov @ phi64.T @ y / noise**2
    np.testing.assert_allclose(model.posterior_cov, cov, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(model.posterior_mean, mean, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(model.posterior_precision @ cov, np.eye(4), atol=1e-8)

    def log_evidence(sigma):  # y ~ N(0, σ_r² ΦΦᵀ + σ_n² I), the N x N Gaussian itself
        return scipy_stats.multivariate_normal.logpdf(
            y, np.zeros(len(y)), prior_scale**2 * phi64 @ phi64.T + sigma**2 * np.eye(len(y))
        )

    at_estimate = log_evidence(noise)
    for factor in (0.95, 0.99, 1.01, 1.05):
        assert at_estimate >= log_evidence(noise * factor), factor
    assert at_estimate - log_evidence(noise * 0.95) > 0.1  # a peak, not a flat evidence


def test_exact_labels_put_the_noise_on_its_floor():
    phi, y = _one_hot_labels()
    model = _identity_model(4, prior_reward_scale=3.0).fit(_labels(phi, y))
    assert model.noise_std == pytest.approx(model.noise_floor()) and model.noise_floor() == pytest.approx(5e-3)
    np.testing.assert_allclose(model.posterior_mean[:3], [-1.0, -2.0, 5.0], atol=1e-6)


@pytest.mark.parametrize("prior_reward_scale", [2.0, None])
def test_online_updates_equal_a_refit_with_learned_noise(prior_reward_scale):
    phi, _, y = _noisy_design(1, n=300, d=4, noise=0.3)
    order = np.arange(300)
    order[[np.argmax(np.abs(y)), 250]] = order[[250, np.argmax(np.abs(y))]]  # the largest label arrives late:
    phi, y = phi[order], y[order]  # a derived σ_r follows it
    chunks = [(0, 40), (40, 41), (41, 200), (200, 300)]
    online = _identity_model(4, bias=True, prior_reward_scale=prior_reward_scale)
    for start, stop in chunks:
        online.update(_labels(phi[start:stop], y[start:stop]))
    refit = _identity_model(4, bias=True, prior_reward_scale=prior_reward_scale).fit(_labels(phi, y))
    assert online.prior_std == refit.prior_std == (prior_reward_scale or np.abs(y).max())
    assert online.noise_std == pytest.approx(refit.noise_std, rel=1e-10) and 0.25 < refit.noise_std < 0.35
    np.testing.assert_allclose(online.posterior_mean, refit.posterior_mean, rtol=0, atol=1e-8)
    np.testing.assert_allclose(online.posterior_cov, refit.posterior_cov, rtol=0, atol=1e-8)
    np.testing.assert_allclose(online.posterior_precision, refit.posterior_precision, rtol=1e-9)


@settings(max_examples=25, deadline=None)
@given(
    cuts=st.lists(st.integers(0, 80), max_size=4),
    prior_reward_scale=st.one_of(st.none(), st.floats(0.1, 10.0)),
    noise=st.floats(0.01, 2.0),
)
def test_any_split_into_updates_equals_a_refit_with_learned_noise(cuts, prior_reward_scale, noise):
    phi, _, y = _noisy_design(len(cuts), n=80, d=3, noise=noise)
    bounds = [0, *sorted(cuts), 80]
    online = _identity_model(3, prior_reward_scale=prior_reward_scale)
    for start, stop in itertools.pairwise(bounds):
        if stop > start:
            online.update(_labels(phi[start:stop], y[start:stop]))
    refit = _identity_model(3, prior_reward_scale=prior_reward_scale).fit(_labels(phi, y))
    assert online.noise_std == pytest.approx(refit.noise_std, rel=1e-9)
    np.testing.assert_allclose(online.posterior_mean, refit.posterior_mean, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(online.posterior_cov, refit.posterior_cov, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize(("prior_reward_scale", "expected_scale"), [(3.0, 3.0), (None, 5.0)])
def test_a_never_labelled_one_hot_keeps_the_prior_reward_scale(prior_reward_scale, expected_scale, caplog):
    phi, y = _one_hot_labels()
    with caplog.at_level("WARNING", logger="ruagent"):
        model = _identity_model(4, n_members=200, prior_reward_scale=prior_reward_scale).fit(_labels(phi, y))
    assert model.prior_std == expected_scale
    assert ("largest reward magnitude" in caplog.text) == (prior_reward_scale is None)
    unseen = np.eye(4, dtype=np.float32)[[3]]
    members, mean, std = model.predict_moments(unseen, np.zeros(1, dtype=np.int64), unseen)
    assert members[:, 0].std() >= 0.8 * expected_scale
    np.testing.assert_allclose(std, [expected_scale], rtol=1e-9)
    np.testing.assert_allclose(mean, [0.0], atol=1e-9)
    # labelled terrains: the exact labels leave next to no spread
    seen = np.eye(4, dtype=np.float32)[:3]
    _, mean, std = model.predict_moments(seen, np.zeros(3, dtype=np.int64), seen)
    np.testing.assert_allclose(mean, [-1.0, -2.0, 5.0], atol=1e-6)
    assert np.all(std < 1e-3 * expected_scale)


def test_a_label_constant_input_stays_visible_when_inputs_are_normalised():
    phi, y = _one_hot_labels()
    model = _identity_model(4, normalise_inputs=True, prior_reward_scale=3.0).fit(_labels(phi, y))
    assert model.input_scale[3] == pytest.approx(0.5)  # priors.CONSTANT_INPUT_SCALE, not 1
    unseen = np.eye(4, dtype=np.float32)[[3]]
    _, _, std = model.predict_moments(unseen, np.zeros(1, dtype=np.int64), unseen)
    assert std[0] >= 3.0


def test_predict_moments_are_the_analytic_posterior_moments():
    phi, _, y = _noisy_design(4, n=50, d=4)
    model = _identity_model(4, bias=True, n_members=3, prior_reward_scale=2.0).fit(_labels(phi, y))
    queries = np.random.default_rng(5).standard_normal((20, 4)).astype(np.float32) * 3
    members, mean, std = model.predict_moments(*_labels(queries, np.zeros(20))[:3])
    basis = np.concatenate([queries.astype(np.float64), np.ones((20, 1))], axis=1)
    np.testing.assert_allclose(mean, basis @ model.posterior_mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(std, np.sqrt(np.diag(basis @ model.posterior_cov @ basis.T)), rtol=1e-10)
    assert mean.dtype == std.dtype == np.float64
    np.testing.assert_array_equal(members, model.predict(*_labels(queries, np.zeros(20))[:3]))
    # K=3 draws: their average is not the posterior mean, nor their spread the posterior std
    assert np.abs(members.mean(0) - mean).max() > 0.05
    assert np.abs(members.std(0) - std).max() > 0.05


def test_noise_and_prior_scale_before_any_reward_labels():
    model = _identity_model(3)
    assert model.prior_std is None and model.noise_std == 1.0 and model.n_labels == 0
    model.features(np.zeros((1, 3)), np.zeros(1, dtype=np.int64), np.zeros((1, 3)))  # width known: built
    np.testing.assert_allclose(model.posterior_cov, np.eye(3))  # provisional σ_r = 1 until something resolves it
    assert model.resolve_prior_reward_scale() == 1.0 and model.prior_std == 1.0  # preference data: Bradley–Terry units
    assert _identity_model(3, noise_std=0.3).noise_std == 0.3


@pytest.mark.parametrize("kwargs", [{}, {"prior_reward_scale": 2.0, "bias": True}, {"noise_std": 0.2}])
def test_save_load_keeps_the_learned_noise_the_derived_scale_and_the_statistics(tmp_path, kwargs):
    phi, _, y = _noisy_design(6, n=200, d=4, noise=0.4)
    model = _identity_model(4, n_members=5, **kwargs).fit(_labels(phi[:120], y[:120]))
    model.save(tmp_path / "m.pt")
    loaded = BayesianLinearRewardModel.load(tmp_path / "m.pt", features=obs_only)
    assert loaded.prior_reward_scale == model.prior_reward_scale and loaded.prior_std == model.prior_std
    assert loaded.learn_noise == model.learn_noise and loaded.noise_std == model.noise_std
    assert loaded.n_labels == model.n_labels == 120
    x = _labels(phi, y)[:3]
    for a, b in zip(loaded.predict_moments(*x), model.predict_moments(*x), strict=True):
        np.testing.assert_array_equal(a, b)
    for m in (model, loaded):
        m.update(_labels(phi[120:], y[120:]))
    assert loaded.noise_std == model.noise_std
    np.testing.assert_array_equal(loaded.posterior_mean, model.posterior_mean)
    np.testing.assert_array_equal(loaded.posterior_cov, model.posterior_cov)


def test_a_file_from_before_prior_reward_scale_still_loads(tmp_path):
    import torch

    phi, _, y = _noisy_design(7, n=100, d=3)
    model = _identity_model(3, n_members=4, prior_reward_scale=0.7, noise_std=0.3).fit(_labels(phi[:60], y[:60]))
    model.save(tmp_path / "m.pt")
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    config = json.loads(payload["config"])
    config["prior_std"] = config.pop("prior_reward_scale")
    for key in ("prior_reward_scale_resolved", "noise_std_estimate", "default_prior", "n_labels",
                "label_sum_of_squares", "max_abs_label"):
        del config[key]
    payload["config"] = json.dumps(config)
    payload["tensors"] = {k: v for k, v in payload["tensors"].items()
                          if k not in ("prior_mean", "prior_precision", "gram", "moment")}
    torch.save(payload, tmp_path / "old.pt")
    old = BayesianLinearRewardModel.load(tmp_path / "old.pt", features=obs_only)
    assert old.prior_reward_scale == old.prior_std == 0.7 and old.noise_std == 0.3 and not old.learn_noise
    x = _labels(phi, y)[:3]
    np.testing.assert_array_equal(old.predict(*x), model.predict(*x))
    for m in (model, old):  # the saved posterior is the prior of later labels: rank-one updates as before
        m.update(_labels(phi[60:], y[60:]))
    np.testing.assert_allclose(old.posterior_mean, model.posterior_mean, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(old.posterior_cov, model.posterior_cov, rtol=1e-12, atol=1e-14)


def test_update_after_set_posterior_conditions_the_set_gaussian():
    phi, _, y = _noisy_design(8, n=150, d=3, noise=0.5)
    prior_mean, prior_precision = np.array([0.5, -0.5, 1.0]), np.diag([2.0, 3.0, 0.5])
    model = _identity_model(3, prior_reward_scale=1.0)
    model.features(phi[:1], np.zeros(1, dtype=np.int64), phi[:1])
    model.set_posterior(prior_mean, prior_precision)
    assert model.n_labels == 0
    model.update(_labels(phi, y))
    noise, phi64 = model.noise_std, phi.astype(np.float64)
    assert 0.4 < noise < 0.6
    precision = prior_precision + phi64.T @ phi64 / noise**2
    mean = np.linalg.solve(precision, prior_precision @ prior_mean + phi64.T @ y / noise**2)
    np.testing.assert_allclose(model.posterior_mean, mean, rtol=1e-9)
    np.testing.assert_allclose(model.posterior_precision, precision, rtol=1e-12)
    model.fit(_labels(phi, y))  # fit starts over from N(0, σ_r² I)
    fresh = _identity_model(3, prior_reward_scale=1.0).fit(_labels(phi, y))
    np.testing.assert_array_equal(model.posterior_mean, fresh.posterior_mean)
