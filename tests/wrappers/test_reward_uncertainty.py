"""RewardUncertaintyWrapper: env checkers across space types, info keys, episodes, loading, warnings."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from stable_baselines3.common.monitor import Monitor

from ruagent import risk
from ruagent.data import collect_transitions
from ruagent.reward_models.base import SpaceMismatchError
from ruagent.wrappers import MissingMonitorWarning, RewardUncertaintyWrapper

ENV_IDS = [
    "CartPole-v1",
    "Pendulum-v1",
    "FrozenLake-v1",
    "Taxi-v4",  # gymnasium 1.4 retired Taxi-v3 (same env, fixed rendering)
    "MountainCarContinuous-v0",
    "Acrobot-v1",
    "Blackjack-v1",  # Tuple observations
    "dict-obs",
]


def _make(env_id, dict_obs_env):
    return dict_obs_env if env_id == "dict-obs" else gym.make(env_id)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_wrapped_env_passes_gymnasium_and_sb3_checkers(env_id, dict_obs_env, small_ensemble_for):
    env = _make(env_id, dict_obs_env)
    model = small_ensemble_for(env)
    with warnings.catch_warnings():
        # the checkers warn about the env itself (Tuple obs unsupported by SB3 policies, ...), and
        # no Monitor goes inside: its wall-clock info["episode"]["t"] would fail the determinism
        # check on one-step episodes (Blackjack); Monitor and the wrapper are tested together below.
        warnings.simplefilter("ignore", UserWarning)
        wrapped = RewardUncertaintyWrapper(env, model, mode="sample", seed=0)
        gym_check_env(wrapped, skip_render_check=True)
        sb3_check_env(RewardUncertaintyWrapper(Monitor(env), model, mode="cvar"), warn=False, skip_render_check=True)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_info_keys_shapes_and_dtypes(env_id, dict_obs_env, small_ensemble_for):
    env = _make(env_id, dict_obs_env)
    model = small_ensemble_for(env, n_members=3)
    wrapped = RewardUncertaintyWrapper(Monitor(env), model, mode="lcb", lcb_c=0.5)
    obs, _ = wrapped.reset(seed=0)
    wrapped.action_space.seed(0)
    action = wrapped.action_space.sample()
    next_obs, reward, _, _, info = wrapped.step(action)
    assert type(reward) is float
    assert info["reward_members"].shape == (3,) and info["reward_members"].dtype == np.float32
    assert type(info["reward_mean"]) is float and type(info["reward_std"]) is float
    assert type(info["env_reward"]) is float
    expected = model.predict(*(_one(x) for x in (obs, action, next_obs)))[:, 0]
    np.testing.assert_allclose(info["reward_members"], expected, rtol=1e-6)
    assert reward == pytest.approx(float(risk.mean_std(expected, lam=0.5)[0]), rel=1e-5, abs=1e-6)


def _one(value):
    if isinstance(value, dict):
        return {key: _one(sub) for key, sub in value.items()}
    if isinstance(value, tuple):
        return tuple(_one(sub) for sub in value)
    return np.asarray(value)[None]


@pytest.mark.parametrize("mode", ["mean", "sample", "sample_step", "lcb", "worst", "cvar"])
def test_proxy_episode_return_is_the_sum_of_proxy_rewards_and_monitor_keeps_the_true_one(mode, random_model_for):
    env = gym.make("CartPole-v1")
    wrapped = RewardUncertaintyWrapper(Monitor(env), random_model_for(env), mode=mode, seed=3)
    wrapped.reset(seed=3)
    wrapped.action_space.seed(3)
    rewards, env_rewards, done = [], [], False
    while not done:
        _, reward, terminated, truncated, info = wrapped.step(wrapped.action_space.sample())
        rewards.append(reward)
        env_rewards.append(info["env_reward"])
        done = terminated or truncated
    assert info["proxy_episode"]["r"] == pytest.approx(sum(rewards), rel=1e-5)
    assert info["proxy_episode"]["l"] == len(rewards)
    assert info["episode"]["r"] == pytest.approx(sum(env_rewards)), "Monitor's key is the true return"
    assert info["episode"]["r"] != pytest.approx(info["proxy_episode"]["r"])


def test_sample_mode_follows_one_member_per_episode_and_reset_seed_reproduces(random_model_for):
    env = gym.make("CartPole-v1")
    wrapped = RewardUncertaintyWrapper(Monitor(env), random_model_for(env, n_members=8), mode="sample")

    def members_followed(seed):
        followed = []
        wrapped.reset(seed=seed)
        for _ in range(6):
            matches = set(range(8))
            done = False
            while not done:
                _, reward, terminated, truncated, info = wrapped.step(wrapped.action_space.sample())
                matches &= set(np.flatnonzero(info["reward_members"] == np.float32(reward)).tolist())
                done = terminated or truncated
            assert len(matches) == 1, "one member's rewards for the whole episode"
            followed.append(matches.pop())
            wrapped.reset()
        return followed

    first = members_followed(seed=4)
    assert len(set(first)) > 1, "a new member is drawn each episode"
    assert members_followed(seed=4) == first


def test_path_to_a_saved_model_is_loaded_and_bound(tmp_path, random_model_for):
    env = gym.make("Pendulum-v1")
    model = random_model_for(env, n_members=3, seed=2)
    path = tmp_path / "reward_model.pt"
    model.save(path)
    from_path = RewardUncertaintyWrapper(Monitor(env), str(path), mode="worst")
    from_object = RewardUncertaintyWrapper(Monitor(gym.make("Pendulum-v1")), model, mode="worst")
    from_path.reset(seed=1)
    from_object.reset(seed=1)
    action = np.array([0.3], dtype=np.float32)
    assert from_path.step(action)[1] == from_object.step(action)[1]
    # RecordConstructorArgs: the spec can rebuild the wrapper from the path (what configs store)
    recorded = from_path.spec.additional_wrappers[-1]
    assert recorded.kwargs["reward_model"] == str(path) and recorded.kwargs["mode"] == "worst"


def test_mismatched_spaces_are_refused_naming_both(tmp_path, random_model_for):
    model = random_model_for(gym.make("Pendulum-v1"))
    model.save(tmp_path / "pendulum.pt")
    with pytest.raises(SpaceMismatchError, match="observation space Box"):
        RewardUncertaintyWrapper(Monitor(gym.make("CartPole-v1")), tmp_path / "pendulum.pt")
    with pytest.raises(SpaceMismatchError):
        RewardUncertaintyWrapper(Monitor(gym.make("CartPole-v1")), model)


def test_not_a_model_is_refused_with_the_fix(random_model_for):
    with pytest.raises(TypeError, match="RewardModel or the path of a saved one"):
        RewardUncertaintyWrapper(gym.make("CartPole-v1"), reward_model=42)


def test_missing_monitor_warns_once_and_says_why(random_model_for):
    env = gym.make("CartPole-v1")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        wrapped = RewardUncertaintyWrapper(env, random_model_for(env))
        wrapped.reset(seed=0)
        for _ in range(20):
            _, _, terminated, truncated, _ = wrapped.step(0)
            if terminated or truncated:
                wrapped.reset()
    monitor_warnings = [w for w in caught if issubclass(w.category, MissingMonitorWarning)]
    assert len(monitor_warnings) == 1
    assert "proxy rewards" in str(monitor_warnings[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MissingMonitorWarning)
        RewardUncertaintyWrapper(Monitor(gym.make("CartPole-v1")), random_model_for(env))
        RewardUncertaintyWrapper(gym.wrappers.RecordEpisodeStatistics(gym.make("CartPole-v1")), random_model_for(env))


def test_step_before_reset_is_refused(random_model_for):
    env = gym.make("CartPole-v1")
    wrapped = RewardUncertaintyWrapper(Monitor(env), random_model_for(env))
    with pytest.raises(gym.error.ResetNeeded):
        wrapped.step(0)


def test_fitted_ensemble_loaded_from_path_with_standardise(tmp_path, small_ensemble_for, one_torch_thread):
    env = gym.make("Pendulum-v1")
    model = small_ensemble_for(env, n_members=4)
    model.fit(collect_transitions(env, 200, seed=0), epochs=3, progress_bar=False)
    model.save(tmp_path / "reward_model.pt")
    wrapped = RewardUncertaintyWrapper(
        Monitor(gym.make("Pendulum-v1")), tmp_path / "reward_model.pt", mode="mean", standardise=True
    )
    obs, _ = wrapped.reset(seed=0)
    action = np.array([0.5], dtype=np.float32)
    next_obs, reward, _, _, info = wrapped.step(action)
    raw = model.predict(obs[None], action[None], next_obs[None])[:, 0]
    standardised = raw - model.reward_loc + model.reward_loc.mean()
    np.testing.assert_allclose(info["reward_members"], standardised, rtol=1e-5, atol=1e-6)
    assert reward == pytest.approx(float(standardised.mean()), rel=1e-5, abs=1e-6)
    assert info["env_reward"] != pytest.approx(reward)
