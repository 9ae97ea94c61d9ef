"""VecRewardUncertaintyWrapper: same rewards as the gym skin, one posterior call a step, SB3 end to end."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor, VecNormalize

from ruagent import risk
from ruagent.wrappers import MODES, MissingMonitorWarning, RewardUncertaintyWrapper, VecRewardUncertaintyWrapper

N_ENVS = 3
SEED = 10


def _twins(make_env, model, mode):
    """A VecEnv wrapper over N_ENVS envs and N_ENVS gym wrappers with matching seeds."""
    venv = VecRewardUncertaintyWrapper(
        DummyVecEnv([lambda: Monitor(make_env())] * N_ENVS), model, mode=mode, lcb_c=0.8, cvar_alpha=0.4
    )
    venv.seed(SEED)
    singles = [
        RewardUncertaintyWrapper(Monitor(make_env()), model, mode=mode, lcb_c=0.8, cvar_alpha=0.4)
        for _ in range(N_ENVS)
    ]
    return venv, singles


def _assert_twins_agree(venv, singles, n_steps):
    venv.reset()
    single_obs = [env.reset(seed=SEED + i)[0] for i, env in enumerate(singles)]
    venv.action_space.seed(0)
    n_episodes = 0
    for _ in range(n_steps):
        actions = np.array([venv.action_space.sample() for _ in range(N_ENVS)])
        _, rewards, dones, infos = venv.step(actions)
        assert rewards.dtype == np.float32 and rewards.shape == (N_ENVS,)
        for i, env in enumerate(singles):
            single_obs[i], reward, terminated, truncated, info = env.step(actions[i])
            # same members, same maths; only float32 rounding of a batched vs a single matmul differs
            assert rewards[i] == pytest.approx(reward, rel=1e-5, abs=1e-6)
            np.testing.assert_allclose(infos[i]["reward_members"], info["reward_members"], rtol=1e-5, atol=1e-6)
            for key in ("reward_mean", "reward_std", "env_reward"):
                assert infos[i][key] == pytest.approx(info[key], rel=1e-5, abs=1e-6), key
            assert dones[i] == (terminated or truncated)
            if dones[i]:
                n_episodes += 1
                assert infos[i]["proxy_episode"]["r"] == pytest.approx(info["proxy_episode"]["r"], rel=1e-5)
                assert infos[i]["proxy_episode"]["l"] == info["proxy_episode"]["l"]
                assert infos[i]["episode"]["r"] == pytest.approx(info["episode"]["r"])
                single_obs[i] = env.reset()[0]
    assert n_episodes >= N_ENVS, "the comparison must cross episode ends (terminal_observation, redraws)"


@pytest.mark.parametrize("mode", MODES)
def test_vec_twin_gives_the_gym_wrappers_rewards_in_every_mode(mode, random_model_for):
    model = random_model_for(gym.make("CartPole-v1"), n_members=7, member_probs=np.arange(1.0, 8.0))
    venv, singles = _twins(lambda: gym.make("CartPole-v1"), model, mode)
    _assert_twins_agree(venv, singles, n_steps=120)


@pytest.mark.parametrize("env_id", ["Blackjack-v1", "dict-obs", "Pendulum-v1"])
def test_vec_twin_agrees_on_tuple_dict_and_box_spaces(env_id, small_ensemble_for, dict_obs_env):
    make_env = (lambda: type(dict_obs_env)()) if env_id == "dict-obs" else (lambda: gym.make(env_id))
    model = small_ensemble_for(make_env(), n_members=4)
    venv, singles = _twins(make_env, model, "sample")
    _assert_twins_agree(venv, singles, n_steps=30 if env_id != "Pendulum-v1" else 210)


def test_one_posterior_call_per_step_for_all_sub_envs(random_model_for):
    model = random_model_for(gym.make("CartPole-v1"))
    venv = VecRewardUncertaintyWrapper(make_vec_env("CartPole-v1", n_envs=4, seed=0), model, mode="cvar")
    venv.reset()
    calls = model.n_calls
    for _ in range(25):
        venv.step(np.zeros(4, dtype=np.int64))
    assert model.n_calls - calls == 25


def test_episode_ends_use_the_terminal_observation(random_model_for):
    model = random_model_for(gym.make("CartPole-v1"), n_members=2)
    venv = VecRewardUncertaintyWrapper(make_vec_env("CartPole-v1", n_envs=2, seed=1), model)
    obs = venv.reset()
    while True:
        actions = np.ones(2, dtype=np.int64)
        next_obs, _, dones, infos = venv.step(actions)
        if dones.any():
            break
        obs = next_obs
    i = int(np.flatnonzero(dones)[0])
    terminal = infos[i]["terminal_observation"][None]
    expected = model.predict(obs[i : i + 1], actions[i : i + 1], terminal)[:, 0]
    np.testing.assert_allclose(infos[i]["reward_members"], expected, rtol=1e-5)
    wrong = model.predict(obs[i : i + 1], actions[i : i + 1], next_obs[i : i + 1])[:, 0]
    assert not np.allclose(expected, wrong)


def test_missing_monitor_warns_once_and_monitors_are_found(random_model_for):
    model = random_model_for(gym.make("CartPole-v1"))
    plain = DummyVecEnv([lambda: gym.make("CartPole-v1")] * 3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        venv = VecRewardUncertaintyWrapper(plain, model)
        venv.reset()
        for _ in range(30):
            venv.step(np.zeros(3, dtype=np.int64))
    assert sum(issubclass(w.category, MissingMonitorWarning) for w in caught) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", MissingMonitorWarning)
        VecRewardUncertaintyWrapper(VecMonitor(DummyVecEnv([lambda: gym.make("CartPole-v1")])), model)
        VecRewardUncertaintyWrapper(make_vec_env("CartPole-v1", n_envs=2), model)


def test_normalised_observations_below_are_refused(random_model_for):
    model = random_model_for(gym.make("CartPole-v1"))
    with pytest.raises(ValueError, match=r"put it below: VecNormalize\(VecRewardUncertaintyWrapper"):
        VecRewardUncertaintyWrapper(VecNormalize(make_vec_env("CartPole-v1", n_envs=1)), model)
    VecRewardUncertaintyWrapper(VecNormalize(make_vec_env("CartPole-v1", n_envs=1), norm_obs=False), model)


def test_step_before_reset_is_refused(random_model_for):
    model = random_model_for(gym.make("CartPole-v1"))
    venv = VecRewardUncertaintyWrapper(make_vec_env("CartPole-v1", n_envs=1), model)
    with pytest.raises(RuntimeError, match=r"call reset\(\) before step\(\)"):
        venv.step(np.zeros(1, dtype=np.int64))


class _RewardRecorder(BaseCallback):
    """Checks, every rollout step, that PPO receives the wrapper's cvar rewards, not the env's."""

    def __init__(self, model, alpha):
        super().__init__()
        self.reward_model, self.alpha, self.n_checked = model, alpha, 0

    def _on_step(self) -> bool:
        members = np.stack([info["reward_members"] for info in self.locals["infos"]], axis=1)  # (K, B)
        expected = risk.cvar(members, self.alpha, self.reward_model.member_probs)[0]
        np.testing.assert_allclose(self.locals["rewards"], expected, rtol=1e-5, atol=1e-6)
        self.n_checked += 1
        return True


def test_ppo_trains_end_to_end_on_the_vec_wrapper(random_model_for, one_torch_thread):
    model = random_model_for(gym.make("CartPole-v1"), n_members=5)
    venv = VecRewardUncertaintyWrapper(
        make_vec_env("CartPole-v1", n_envs=2, seed=0), model, mode="cvar", cvar_alpha=0.4
    )
    recorder = _RewardRecorder(model, 0.4)
    agent = PPO("MlpPolicy", venv, n_steps=64, batch_size=64, n_epochs=2, seed=0, device="cpu")
    before = [p.detach().clone() for p in agent.policy.parameters()]
    agent.learn(256, callback=recorder)
    assert agent.num_timesteps == 256 and recorder.n_checked == 128
    assert any(not np.allclose(a, b.detach()) for a, b in zip(before, agent.policy.parameters())), "PPO updated"
    # Monitor sits inside: SB3's episode statistics are the true CartPole returns (1 per step)
    assert len(agent.ep_info_buffer) > 0
    assert all(info["r"] == info["l"] for info in agent.ep_info_buffer)


def test_ppo_with_the_gym_wrapper_built_from_a_path_like_rl_zoo(tmp_path, random_model_for, one_torch_thread):
    model = random_model_for(gym.make("CartPole-v1"), n_members=3)
    model.save(tmp_path / "reward_model.pt")
    # rl-zoo's env_wrapper: becomes make_vec_env's wrapper_class, applied over its Monitor
    venv = make_vec_env(
        "CartPole-v1",
        n_envs=2,
        seed=0,
        wrapper_class=RewardUncertaintyWrapper,
        wrapper_kwargs={"reward_model": str(tmp_path / "reward_model.pt"), "mode": "sample"},
    )
    agent = PPO("MlpPolicy", venv, n_steps=32, batch_size=32, n_epochs=1, seed=0, device="cpu").learn(128)
    assert agent.num_timesteps == 128
    assert all(info["r"] == info["l"] for info in agent.ep_info_buffer)
