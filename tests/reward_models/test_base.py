"""The RewardModel protocol, exercised through the real families."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from ruagent.data import collect_transitions
from ruagent.reward_models import (
    BayesianLinearRewardModel,
    EnsembleRewardModel,
    RewardModel,
    RewardModelFileError,
    SpaceMismatchError,
    load_reward_model,
)

FAMILIES = [EnsembleRewardModel, BayesianLinearRewardModel]


@pytest.fixture(scope="module")
def cartpole_data():
    return collect_transitions("CartPole-v1", 40, seed=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_families_are_registered_and_predict_k_by_b(family, cartpole_data):
    env = gym.make("CartPole-v1")
    model = family(env.observation_space, env.action_space, n_members=3, seed=0)
    assert isinstance(model, RewardModel) and RewardModel._families[model.family] is family
    rewards = model.predict(cartpole_data.obs, cartpole_data.action, cartpole_data.next_obs)
    assert rewards.shape == (3, 40) and rewards.dtype == np.float32


@pytest.mark.parametrize("family", FAMILIES)
def test_batch_errors_say_how_to_fix_them(family, cartpole_data):
    env = gym.make("CartPole-v1")
    model = family(env.observation_space, env.action_space, n_members=2)
    with pytest.raises(ValueError, match="action has batch size 39 but obs has 40"):
        model.predict(cartpole_data.obs, cartpole_data.action[:-1], cartpole_data.next_obs)
    with pytest.raises(ValueError, match=r"value\[None\]"):
        model.predict(np.float32(0.0), 0, np.float32(0.0))
    with pytest.raises(ValueError, match=r"observation has shape \(40, 3\), expected \(40, 4\)"):
        model.predict(cartpole_data.obs[:, :3], cartpole_data.action, cartpole_data.next_obs)


@pytest.mark.parametrize("family", FAMILIES)
def test_non_finite_rewards_are_caught(family):
    space = gym.spaces.Box(-np.inf, np.inf, (1,), dtype=np.float32)
    model = family(space, gym.spaces.Discrete(1), n_members=2, features=lambda o, a, n: o, seed=0)
    obs = np.array([[0.0], [np.nan]], dtype=np.float32)
    with pytest.raises(FloatingPointError, match="batch index 1"):
        model.predict(obs, np.zeros(2, dtype=np.int64), obs)
    model.check_finite = False
    assert np.isnan(model.predict(obs, np.zeros(2, dtype=np.int64), obs)[:, 1]).all()


@pytest.mark.parametrize("family", FAMILIES)
def test_standardise_is_identity_until_fitted(family, cartpole_data):
    env = gym.make("CartPole-v1")
    model = family(env.observation_space, env.action_space, n_members=3, seed=0)
    rewards = model.predict(cartpole_data.obs, cartpole_data.action, cartpole_data.next_obs)
    assert model.standardise(rewards) is rewards
    if isinstance(model, EnsembleRewardModel):
        model.fit(cartpole_data, epochs=2, progress_bar=False)
    else:
        model.fit(cartpole_data)
    assert model.reward_loc.shape == (3,) and model.reward_scale.shape == (3,) and (model.reward_scale > 0).all()


def test_member_probs_are_validated_and_saved(tmp_path):
    env = gym.make("CartPole-v1")
    with pytest.raises(ValueError, match="member_probs"):
        BayesianLinearRewardModel(env.observation_space, env.action_space, n_members=2, member_probs=[-1, 2])
    model = BayesianLinearRewardModel(env.observation_space, env.action_space, n_members=2, member_probs=[3, 1])
    np.testing.assert_allclose(model.member_probs, [0.75, 0.25])
    model.save(tmp_path / "m.pt")
    np.testing.assert_allclose(load_reward_model(tmp_path / "m.pt").member_probs, [0.75, 0.25])


def test_bind_refuses_other_spaces():
    env = gym.make("CartPole-v1")
    EnsembleRewardModel(env.observation_space, env.action_space, n_members=2).bind(gym.make("CartPole-v1"))
    model = EnsembleRewardModel(env.observation_space, gym.spaces.Discrete(3), n_members=2)
    with pytest.raises(SpaceMismatchError, match=r"action space Discrete\(3\) but the env has .* Discrete\(2\)"):
        model.bind(env)


def test_unreadable_files_are_reported(tmp_path):
    with pytest.raises(RewardModelFileError, match="no reward-model file"):
        load_reward_model(tmp_path / "missing.pt")
    env = gym.make("CartPole-v1")
    EnsembleRewardModel(env.observation_space, env.action_space, n_members=2).save(tmp_path / "m.pt")
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    torch.save({**payload, "version": 99}, tmp_path / "newer.pt")
    with pytest.raises(RewardModelFileError, match="Upgrade ruagent"):
        load_reward_model(tmp_path / "newer.pt")
    torch.save({**payload, "family": "gaussian_process"}, tmp_path / "unknown.pt")
    with pytest.raises(RewardModelFileError, match="unknown reward-model family 'gaussian_process'"):
        load_reward_model(tmp_path / "unknown.pt")
    torch.save({**payload, "tensors": {}}, tmp_path / "truncated.pt")
    with pytest.raises(RewardModelFileError, match="corrupt"):
        load_reward_model(tmp_path / "truncated.pt")
