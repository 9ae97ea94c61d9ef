"""Saving and loading posteriors: identical predictions, safe files, space checks, features."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import ruagent
from ruagent.data import collect_transitions
from ruagent.features import FeaturesUnavailableError
from ruagent.reward_models import (
    BayesianLinearRewardModel,
    EnsembleRewardModel,
    RewardModelFileError,
    SpaceMismatchError,
    load_reward_model,
)

from .conftest import DictObsEnv, TerrainEnv

FAMILIES = {
    "ensemble": lambda env, **kw: EnsembleRewardModel(
        env.observation_space, env.action_space, n_members=4, hidden_sizes=(16, 16), seed=0, **kw
    ),
    "linear": lambda env, **kw: BayesianLinearRewardModel(
        env.observation_space, env.action_space, n_members=4, seed=0, **kw
    ),
    "linear_rff": lambda env, **kw: BayesianLinearRewardModel(
        env.observation_space, env.action_space, n_members=4, random_fourier_features=32, seed=0, **kw
    ),
}


def _fit(model, data):
    if isinstance(model, EnsembleRewardModel):
        return model.fit(data, epochs=3, progress_bar=False)
    return model.fit(data)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("env_factory", [lambda: gym.make("CartPole-v1"), DictObsEnv, lambda: gym.make("Blackjack-v1")])
def test_round_trip_gives_identical_predictions(tmp_path, family, env_factory):
    env = env_factory()
    data = collect_transitions(env, 64, seed=0)
    model = FAMILIES[family](env)
    _fit(model, data)
    path = tmp_path / "posterior.pt"
    model.save(path)
    loaded = load_reward_model(path, env=env)
    assert type(loaded) is type(model) and loaded.n_members == model.n_members
    np.testing.assert_array_equal(
        loaded.predict(data.obs, data.action, data.next_obs), model.predict(data.obs, data.action, data.next_obs)
    )
    np.testing.assert_array_equal(loaded.reward_loc, model.reward_loc)
    np.testing.assert_array_equal(loaded.reward_scale, model.reward_scale)
    assert [p.name for p in tmp_path.iterdir()] == ["posterior.pt"]


def test_loaded_linear_model_keeps_updating_like_the_original(tmp_path):
    env = gym.make("CartPole-v1")
    data = collect_transitions(env, 120, seed=0)
    model = FAMILIES["linear"](env).fit(data[:60])
    model.save(tmp_path / "m.pt")
    loaded = BayesianLinearRewardModel.load(tmp_path / "m.pt")
    model.update(data[60:])
    loaded.update(data[60:])
    np.testing.assert_allclose(loaded.posterior_mean, model.posterior_mean, rtol=1e-12, atol=1e-15)


def test_fitting_a_loaded_ensemble_continues_like_the_original(tmp_path):
    env = gym.make("CartPole-v1")
    data = collect_transitions(env, 64, seed=0)
    model = FAMILIES["ensemble"](env)
    model.fit(data[:32], epochs=2, progress_bar=False)
    model.save(tmp_path / "m.pt")
    loaded = load_reward_model(tmp_path / "m.pt")
    for m in (model, loaded):
        m.fit(data, epochs=2, progress_bar=False)
    np.testing.assert_array_equal(
        loaded.predict(data.obs, data.action, data.next_obs), model.predict(data.obs, data.action, data.next_obs)
    )


def test_files_hold_only_plain_data_and_tensors(tmp_path):
    env = gym.make("CartPole-v1")
    model = FAMILIES["ensemble"](env)
    model.save(tmp_path / "m.pt")
    payload = torch.load(tmp_path / "m.pt", weights_only=True)  # refuses anything that needs unpickling code
    assert payload["family"] == "ensemble"
    assert "CartPole" not in str(payload["config"])  # spaces stored as JSON, not as objects
    assert '"type": "Box"' in payload["observation_space"]


@pytest.mark.parametrize("family", FAMILIES)
def test_space_mismatch_is_refused_naming_both_spaces(tmp_path, family):
    cartpole = gym.make("CartPole-v1")
    model = FAMILIES[family](cartpole)
    model.save(tmp_path / "m.pt")
    with pytest.raises(SpaceMismatchError) as info:
        load_reward_model(tmp_path / "m.pt", env=gym.make("Acrobot-v1"))
    message = str(info.value)
    assert str(cartpole.observation_space) in message and str(gym.make("Acrobot-v1").observation_space) in message


@pytest.mark.parametrize("family", ["ensemble", "linear"])
def test_callable_features_must_be_given_again(tmp_path, family):
    env = TerrainEnv()
    data = collect_transitions(env, 50, seed=0)

    def terrain_features(obs, action, next_obs):
        return TerrainEnv().reward_features(obs, action, next_obs)

    model = FAMILIES[family](env, features=terrain_features)
    _fit(model, data)
    model.save(tmp_path / "m.pt")
    loaded = ruagent.load_reward_model(tmp_path / "m.pt")
    with pytest.raises(FeaturesUnavailableError, match=r"terrain_features.*features=fn"):
        loaded.predict(data.obs, data.action, data.next_obs)
    reloaded = type(model).load(tmp_path / "m.pt", features=terrain_features)
    np.testing.assert_array_equal(
        reloaded.predict(data.obs, data.action, data.next_obs), model.predict(data.obs, data.action, data.next_obs)
    )


@pytest.mark.parametrize("family", ["ensemble", "linear"])
def test_env_features_are_rebound_on_load(tmp_path, family):
    env = gym.wrappers.TimeLimit(TerrainEnv(), 30)
    data = collect_transitions(env, 50, seed=0)
    model = FAMILIES[family](env, features="env")
    _fit(model.bind(env) or model, data)
    model.save(tmp_path / "m.pt")
    with pytest.raises(FeaturesUnavailableError, match="bind"):
        load_reward_model(tmp_path / "m.pt").predict(data.obs, data.action, data.next_obs)
    loaded = load_reward_model(tmp_path / "m.pt", env=env)
    np.testing.assert_array_equal(
        loaded.predict(data.obs, data.action, data.next_obs), model.predict(data.obs, data.action, data.next_obs)
    )


def test_unfitted_env_feature_model_round_trips(tmp_path):
    env = TerrainEnv()
    EnsembleRewardModel(env.observation_space, env.action_space, features="env").save(tmp_path / "m.pt")
    loaded = load_reward_model(tmp_path / "m.pt", env=env)
    assert loaded.in_dim is None and loaded.features_mode == "env"
    assert loaded.predict(np.array([0]), np.array([1]), np.array([1])).shape == (10, 1)


def test_corrupt_and_wrong_family_files(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(RewardModelFileError, match="not a readable"):
        load_reward_model(tmp_path / "junk.pt")
    env = gym.make("CartPole-v1")
    FAMILIES["linear"](env).save(tmp_path / "linear.pt")
    with pytest.raises(RewardModelFileError, match="holds a BayesianLinearRewardModel, not a EnsembleRewardModel"):
        EnsembleRewardModel.load(tmp_path / "linear.pt")
