"""EnsembleRewardModel: fits, randomised priors disagree off the data, one batched computation."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from ruagent.data import collect_transitions
from ruagent.features import FeaturesUnavailableError
from ruagent.reward_models import EnsembleRewardModel
from ruagent.reward_models import ensemble as ensemble_module
from ruagent.reward_models import stacked as stacked_module

from .conftest import BOX_1D, TerrainEnv, obs_only


def _toy_model(**kwargs):
    kwargs = {"n_members": 8, "hidden_sizes": (32, 32), "features": obs_only, "seed": 0, **kwargs}
    return EnsembleRewardModel(BOX_1D, gym.spaces.Discrete(1), **kwargs)


def _predict_1d(model, x):
    x = np.asarray(x, dtype=np.float32)[:, None]
    return model.predict(x, np.zeros(len(x), dtype=np.int64), x)


def test_members_fit_labels_and_disagree_more_off_the_data(toy_1d):
    model = _toy_model()
    history = model.fit(toy_1d, epochs=150, batch_size=64, lr=3e-3, progress_bar=False)
    on_data, off_data = np.linspace(-1, 1, 64), np.linspace(3, 5, 64)
    rewards_on = _predict_1d(model, on_data)
    assert rewards_on.shape == (8, 64) and rewards_on.dtype == np.float32
    # the posterior mean fits sin(3x) (labels have std ~0.7, noise 0.05)
    assert np.abs(rewards_on.mean(0) - np.sin(3 * on_data)).mean() < 0.1
    spread_on = rewards_on.std(0).mean()
    spread_off = _predict_1d(model, off_data).std(0).mean()
    assert spread_off > 3 * spread_on, (spread_on, spread_off)
    assert len(history["val_loss"]) == history["epochs"] and len(history["best_epoch"]) == 8


def test_randomised_priors_alone_create_the_off_data_disagreement(toy_1d):
    """Identical trainable nets, full-batch data, no bootstrap: only the priors differ."""
    spreads = {}
    for prior_scale in (0.0, 1.0):
        model = _toy_model(n_members=6, prior_reward_scale=prior_scale, bootstrap=False)
        model.features(*toy_1d[:3])  # build
        for param in model.parameters():
            param.data[:] = param.data[:1]
        model.fit(toy_1d, epochs=60, batch_size=256, lr=1e-2, val_fraction=0.0, progress_bar=False)
        spreads[prior_scale] = (
            _predict_1d(model, np.linspace(-1, 1, 32)).std(0).mean(),
            _predict_1d(model, np.linspace(3, 5, 32)).std(0).mean(),
        )
    assert spreads[0.0][1] < 1e-5  # no priors: the members stay one function
    on_data, off_data = spreads[1.0]
    assert off_data > 3 * on_data, spreads


def test_untrained_members_are_prior_functions_that_differ():
    model = _toy_model(prior_reward_scale=1.0)
    rewards = _predict_1d(model, np.linspace(-1, 1, 16))
    assert rewards.std(0).min() > 0  # K different functions before any data
    np.testing.assert_array_equal(rewards, _predict_1d(model, np.linspace(-1, 1, 16)))  # fixed draws


def test_prior_scale_zero_removes_the_prior_nets_contribution():
    scaled, unscaled = _toy_model(prior_reward_scale=0.0), _toy_model(prior_reward_scale=0.0)
    for prior in scaled._prior:  # different priors, same trainable nets: same predictions
        prior.mul_(3.0)
    x = np.linspace(-2, 2, 8)
    np.testing.assert_allclose(_predict_1d(scaled, x), _predict_1d(unscaled, x), rtol=0, atol=0)


def test_ensemble_is_one_batched_computation():
    """Parameter tensors and torch ops per forward/training step do not grow with K."""
    x = torch.randn(32, 1)

    def count_torch_calls(model, run):
        calls = []

        class Count(torch.overrides.TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                calls.append(func)
                return func(*args, **(kwargs or {}))

        with Count():
            run(model)
        return len(calls)

    counts = {}
    for k in (2, 16):
        model = _toy_model(n_members=k)
        rng = np.random.default_rng(0)
        obs = rng.uniform(-1, 1, (64, 1)).astype(np.float32)
        labels = (obs, np.zeros(64, dtype=np.int64), obs, obs[:, 0])
        counts[k] = (
            count_torch_calls(model, lambda m, data=labels: m.fit(data, epochs=2, batch_size=16, progress_bar=False)),
            count_torch_calls(model, lambda m: m.member_rewards_torch(x)),
        )
        assert len(model.parameters()) == 6 and all(p.shape[0] == k for p in model.parameters())
    assert counts[2] == counts[16], counts


def test_differentiable_forward_matches_predict_and_trains_only_parameters():
    env = gym.make("CartPole-v1")
    data = collect_transitions(env, 200, seed=0)
    model = EnsembleRewardModel(env.observation_space, env.action_space, n_members=4, seed=1)
    model.fit(data, epochs=3, progress_bar=False)
    features = model.features_torch(data.obs, data.action, data.next_obs)
    assert features.shape == (200, 10)
    torch_rewards = model.member_rewards_torch(features)
    np.testing.assert_allclose(
        torch_rewards.detach().numpy(), model.predict(data.obs, data.action, data.next_obs), rtol=1e-4, atol=1e-4
    )
    per_member = model.member_rewards_torch(features[None].expand(4, -1, -1))
    np.testing.assert_allclose(per_member.detach().numpy(), torch_rewards.detach().numpy(), rtol=1e-5, atol=1e-5)
    torch_rewards.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    assert all(not prior.requires_grad for prior in model._prior)


def test_training_outside_fit_reaches_predict(toy_1d):
    """A loss trained through member_rewards_torch (e.g. Bradley–Terry) changes predict at once."""
    model = _toy_model(n_members=3)
    model.fit(toy_1d, epochs=2, progress_bar=False)
    x = np.linspace(-1, 1, 8)
    before = _predict_1d(model, x)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    features = torch.as_tensor(x, dtype=torch.float32)[:, None]
    model.member_rewards_torch(features).sum().backward()
    optimiser.step()
    after = _predict_1d(model, x)
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, model.member_rewards_torch(features).detach().numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("hidden_sizes", [(16, 8, 4), ()])
def test_numpy_and_torch_prediction_paths_agree_with_the_differentiable_forward(hidden_sizes, monkeypatch):
    monkeypatch.setattr(stacked_module, "ROWS_PER_CHUNK", 50)  # the torch path's 128 rows: 3 chunks, one short
    env = gym.make("CartPole-v1")
    data = collect_transitions(env, 2 * ensemble_module.TORCH_MIN_BATCH, seed=0)
    model = EnsembleRewardModel(env.observation_space, env.action_space, n_members=5, hidden_sizes=hidden_sizes)
    model.fit(data, epochs=2, progress_bar=False)  # non-trivial normalisation to fold in
    big = model.predict(data.obs, data.action, data.next_obs)  # torch path
    parts = [data[i : i + 8] for i in range(0, len(data), 8)]
    small = np.concatenate([model.predict(p.obs, p.action, p.next_obs) for p in parts], axis=1)  # numpy path
    reference = model.member_rewards_torch(model.features_torch(data.obs, data.action, data.next_obs))
    np.testing.assert_allclose(big, small, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(big, reference.detach().numpy(), rtol=1e-4, atol=1e-4)


def test_reward_statistics_are_members_label_mean_and_std(toy_1d):
    model = _toy_model(n_members=3)
    model.fit(toy_1d, epochs=5, progress_bar=False)
    rewards = model.predict(*toy_1d[:3])
    np.testing.assert_allclose(model.reward_loc, rewards.mean(1), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(model.reward_scale, rewards.std(1), rtol=1e-3)
    standardised = model.standardise(rewards)  # every member's label mean becomes the posterior's
    np.testing.assert_allclose(standardised.mean(1), rewards.mean(), atol=1e-3)
    np.testing.assert_allclose(standardised.std(1), rewards.std(1), rtol=1e-3)  # nothing rescaled


def test_standardise_keeps_a_constant_survival_reward_and_the_prior_spread():
    """CartPole's labels are all +1: aligning offsets must leave +1 (not 0) and the spread off the data."""
    rng = np.random.default_rng(0)
    obs = rng.uniform(-1, 1, (300, 1)).astype(np.float32)
    model = _toy_model(n_members=6)
    model.fit((obs, np.zeros(300, dtype=np.int64), obs, np.ones(300, dtype=np.float32)), epochs=60,
              progress_bar=False)
    x = np.linspace(-1, 1, 32, dtype=np.float32)[:, None]
    far = np.linspace(4, 6, 32, dtype=np.float32)[:, None]
    on_data = model.standardise(_predict_1d(model, x[:, 0]))
    np.testing.assert_allclose(on_data.mean(), 1.0, atol=0.05)
    raw_far = _predict_1d(model, far[:, 0])
    np.testing.assert_allclose(model.standardise(raw_far).std(0), raw_far.std(0), atol=0.05)


def test_early_stopping_on_pure_noise_labels():
    rng = np.random.default_rng(0)
    obs = rng.uniform(-1, 1, (200, 1)).astype(np.float32)
    noise = rng.standard_normal(200).astype(np.float32)
    model = _toy_model(n_members=3, prior_reward_scale=1.0)  # a prior as wide as the noise: little to cancel
    history = model.fit((obs, np.zeros(200, dtype=np.int64), obs, noise), epochs=400, patience=5, progress_bar=False)
    assert history["epochs"] < 400  # held-out loss on noise stops improving early
    best = np.argmin(history["val_loss"])
    assert max(history["best_epoch"]) <= history["epochs"] - 1 and best <= history["epochs"] - 1


def test_bootstrap_gives_members_different_data():
    rng = np.random.default_rng(0)
    obs = rng.uniform(-1, 1, (64, 1)).astype(np.float32)
    labels = (obs, np.zeros(64, dtype=np.int64), obs, obs[:, 0] ** 2)
    x = np.linspace(-1, 1, 16)
    spread = {}
    for bootstrap in (True, False):
        model = _toy_model(n_members=6, prior_reward_scale=0.0, bootstrap=bootstrap)
        model.features(*labels[:3])  # builds the nets (callable features have no width until seen)
        for param in model.parameters():  # identical initial members: only the data can differ
            param.data[:] = param.data[:1]
        model.fit(labels, epochs=5, batch_size=64, val_fraction=0.0, progress_bar=False)  # full batch
        spread[bootstrap] = _predict_1d(model, x).std(0).max()
    assert spread[False] < 1e-6 < spread[True]


def test_env_features_through_bind_and_fit():
    env = gym.wrappers.TimeLimit(TerrainEnv(), 20)
    data = collect_transitions(env, 200, seed=0)
    model = EnsembleRewardModel(env.observation_space, env.action_space, n_members=3, features="env", seed=0)
    with pytest.raises(FeaturesUnavailableError, match="bind"):
        model.predict(data.obs[:2], data.action[:2], data.next_obs[:2])
    model.fit(data, env=env, epochs=100, lr=1e-2, progress_bar=False)
    assert model.in_dim == 3
    truth = TerrainEnv().reward_features(None, None, data.next_obs) @ np.array([-1.0, -2.0, 5.0])
    mean = model.predict(data.obs, data.action, data.next_obs).mean(0)
    assert np.abs(mean - truth).mean() < 0.3


def test_bad_inputs_give_clear_errors(toy_1d):
    with pytest.raises(ValueError, match="prior_reward_scale"):
        _toy_model(prior_reward_scale=-1)
    model = _toy_model()
    with pytest.raises(TypeError, match="Transitions or a tuple"):
        model.fit(toy_1d[:3], progress_bar=False)
    model.fit(toy_1d, epochs=1, progress_bar=False)
    with pytest.raises(ValueError, match="width 2 but this EnsembleRewardModel was built for width 1"):
        model.features(np.zeros((4, 2)), np.zeros(4, dtype=np.int64), np.zeros((4, 2)))


def test_a_never_labelled_one_hot_column_gets_the_prior_reward_scale():
    """A feature the labels never switched on keeps a spread of at least σ_r (documented floor: σ_r)."""
    rng = np.random.default_rng(0)
    seen = np.eye(3, dtype=np.float32)[rng.integers(0, 2, 400)]  # column 2 is never active
    labels = (seen, np.zeros(400, dtype=np.int64), seen, seen @ np.array([-0.1, 0.5, -2.0], dtype=np.float32))
    for declared in (None, 3.0):
        model = EnsembleRewardModel(gym.spaces.Box(0, 1, (3,)), gym.spaces.Discrete(1), n_members=10,
                                    hidden_sizes=(32, 32), features=obs_only, seed=0, prior_reward_scale=declared)
        model.fit(labels, epochs=100, progress_bar=False)
        scale = 0.5 if declared is None else declared  # the default is the largest label magnitude, 0.5
        assert model.prior_reward_scale == scale
        unseen = np.eye(3, dtype=np.float32)[[2]]
        assert _spread(model, unseen) >= scale
        assert _spread(model, seen[:50]) < 0.05 * scale  # sharp where the labels are


def test_a_far_away_input_gets_a_spread_in_reward_units(toy_1d):
    """Far beyond the labelled interval the prior nets' disagreement returns: at least σ_r / 2 at 5x the range."""
    model = _toy_model(prior_reward_scale=2.0)
    model.fit(toy_1d, epochs=150, batch_size=64, lr=3e-3, progress_bar=False)
    assert _predict_1d(model, np.linspace(5, 6, 16)).std(0).mean() >= 0.5 * 2.0
    assert _predict_1d(model, np.linspace(-1, 1, 16)).std(0).mean() < 0.05 * 2.0


def test_the_default_prior_reward_scale_is_announced(toy_1d, caplog):
    model = _toy_model()
    model.fit(toy_1d, epochs=2, progress_bar=False)
    assert model.prior_reward_scale == pytest.approx(float(np.abs(toy_1d[3]).max()))
    assert "prior_reward_scale not given" in caplog.text and model.declared_prior_reward_scale is None


def _spread(model, features):
    members = model.predict(features, np.zeros(len(features), dtype=np.int64), features)
    return float(members.std(0).mean())


def test_predict_moments_take_the_novelty_prior_analytically():
    """The novelty term's mean is 0 and its variance σ_r²‖P x̃‖² exactly; only the nets' moments come from K draws."""
    rng = np.random.default_rng(0)
    seen = np.eye(3, dtype=np.float32)[rng.integers(0, 2, 400)]
    labels = (seen, np.zeros(400, dtype=np.int64), seen, seen @ np.array([-0.1, 0.5, -2.0], dtype=np.float32))
    model = EnsembleRewardModel(gym.spaces.Box(0, 1, (3,)), gym.spaces.Discrete(1), n_members=10, hidden_sizes=(32,),
                                features=obs_only, seed=0, prior_reward_scale=3.0)
    model.fit(labels, epochs=50, progress_bar=False)
    x = np.eye(3, dtype=np.float32)[[2, 0, 1]]
    members, mean, std = model.predict_moments(x, np.zeros(3, dtype=np.int64), x)
    np.testing.assert_array_equal(members, model.predict(x, np.zeros(3, dtype=np.int64), x))
    _, nets = model._net_and_novelty_rewards(x)
    np.testing.assert_allclose(mean, nets.mean(0), rtol=1e-6)
    # by hand: the never-varied directions of the normalised labels, and x̃'s length along them
    loc, scale = model.input_loc.numpy().astype(np.float64), model.input_scale.numpy().astype(np.float64)
    normalised = (seen - loc) / scale
    eigenvalues, eigenvectors = np.linalg.eigh(normalised.T @ normalised / len(seen))
    null = eigenvectors[:, eigenvalues <= 1e-6]
    novelty_var = 3.0**2 * np.square(((x - loc) / scale) @ null).sum(axis=1)
    np.testing.assert_allclose(std**2, nets.var(0) + novelty_var, rtol=1e-4, atol=1e-8)
    assert novelty_var[0] >= (2 * 3.0) ** 2  # the unseen column is 1 / 0.5 normalised units out
    assert novelty_var[1:].max() < 1e-8  # label inputs have no novelty
    assert not np.allclose(mean[0], members[:, 0].mean(), atol=0.1)  # K draws would add noise


def test_the_novelty_variance_is_the_same_from_either_subspace():
    """Whichever basis is smaller is kept (never-varied directions, or their complement): same variance."""
    rng = np.random.default_rng(1)
    seen = np.zeros((300, 12), dtype=np.float32)
    seen[:, :3] = rng.normal(size=(300, 3))  # 3 varied columns, 9 never varied: the complement is smaller
    labels = (seen, np.zeros(300, dtype=np.int64), seen, seen[:, 0])
    model = EnsembleRewardModel(gym.spaces.Box(-9, 9, (12,)), gym.spaces.Discrete(1), n_members=4, hidden_sizes=(8,),
                                features=obs_only, seed=0, prior_reward_scale=1.0)
    model.fit(labels, epochs=2, progress_bar=False)
    assert model.novelty.complement
    x = rng.normal(size=(20, 12)).astype(np.float32)
    _, _, std_complement = model.predict_moments(x, np.zeros(20, dtype=np.int64), x)
    _, nets = model._net_and_novelty_rewards(x)
    loc, scale = model.input_loc.numpy().astype(np.float64), model.input_scale.numpy().astype(np.float64)
    direct = np.square(((x - loc) / scale)[:, 3:]).sum(axis=1)  # the 9 never-varied columns
    np.testing.assert_allclose(std_complement**2, nets.var(0) + direct, rtol=1e-4)
