"""A monitor outside the reward wrapper would report proxy returns as true ones: warned about, once."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.wrappers import RecordEpisodeStatistics
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor

from ruagent.reward_models.linear import BayesianLinearRewardModel
from ruagent.wrappers import OuterMonitorWarning, RewardUncertaintyWrapper, VecRewardUncertaintyWrapper, core

from .strategies import RandomSpaceEnv

OBSERVATION_SPACE = spaces.Box(-1.0, 1.0, shape=(3,), dtype=np.float32)
ACTION_SPACE = spaces.Discrete(2)
HORIZON = 3


@pytest.fixture(autouse=True)
def fresh_process_flag(monkeypatch):
    """The warning is once per process; each test starts as a fresh process would."""
    monkeypatch.setattr(core, "_outer_monitor_reported", False)


def env() -> RandomSpaceEnv:
    return RandomSpaceEnv(OBSERVATION_SPACE, ACTION_SPACE, horizon=HORIZON)


def model() -> BayesianLinearRewardModel:
    return BayesianLinearRewardModel(OBSERVATION_SPACE, ACTION_SPACE, n_members=4, seed=0)


def outer_monitor_warnings(run) -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run()
    return [w for w in caught if issubclass(w.category, OuterMonitorWarning)]


def play_episodes(gym_env, n_episodes: int = 3) -> list[dict]:
    """Run episodes with a fixed action; the info dict of each episode end."""
    ends = []
    gym_env.reset(seed=0)
    for _ in range(n_episodes * HORIZON):
        *_, terminated, truncated, info = gym_env.step(0)
        if terminated or truncated:
            ends.append(info)
            gym_env.reset()
    return ends


@pytest.mark.parametrize(
    ("outer", "inner"),
    # gymnasium's RecordEpisodeStatistics refuses to stack on an info that has "episode" already
    [(Monitor, Monitor), (Monitor, None), (RecordEpisodeStatistics, None)],
    ids=["Monitor-around-Monitor", "Monitor", "RecordEpisodeStatistics"],
)
@pytest.mark.filterwarnings("ignore::ruagent.wrappers.MissingMonitorWarning")
def test_gym_skin_warns_once_about_a_monitor_outside(outer, inner):
    wrapped = outer(RewardUncertaintyWrapper(inner(env()) if inner else env(), model()))
    ends = []

    caught = outer_monitor_warnings(lambda: ends.extend(play_episodes(wrapped)))

    assert len(caught) == 1 and "OUTSIDE" in str(caught[0].message) and "Monitor(env)" in str(caught[0].message)
    # what the warning is about: the outer record is the proxy return, not the true one
    assert ends[0]["episode"]["r"] == pytest.approx(ends[0]["proxy_episode"]["r"])


def test_gym_skin_with_the_monitor_inside_does_not_warn():
    wrapped = RewardUncertaintyWrapper(Monitor(env()), model())
    ends = []

    assert outer_monitor_warnings(lambda: ends.extend(play_episodes(wrapped))) == []
    env_return = sum(float(np.tanh(spaces.flatten(ACTION_SPACE, 0).sum())) for _ in range(HORIZON))
    assert ends[0]["episode"]["r"] == pytest.approx(env_return)  # Monitor's key is the true return


def test_make_vec_env_around_the_wrapper_warns_once_for_all_sub_envs():
    # make_vec_env applies Monitor around what env_id returns: the classic misplacement
    def run() -> None:
        venv = make_vec_env(lambda: RewardUncertaintyWrapper(Monitor(env()), model()), n_envs=3, seed=0)
        venv.reset()
        for _ in range(3 * HORIZON):
            venv.step(np.zeros(3, dtype=np.int64))

    assert len(outer_monitor_warnings(run)) == 1


@pytest.mark.filterwarnings("ignore::ruagent.wrappers.MissingMonitorWarning")
def test_sb3_adding_its_monitor_around_the_wrapper_is_warned_about_during_learn():
    # PPO wraps a gymnasium env in Monitor unless one is already inside: here there is none
    def run() -> None:
        PPO("MlpPolicy", RewardUncertaintyWrapper(env(), model()), n_steps=16, batch_size=16, n_epochs=1,
            policy_kwargs={"net_arch": [8]}, seed=0, device="cpu").learn(16)

    assert len(outer_monitor_warnings(run)) == 1


def test_vec_skin_warns_once_about_a_vec_monitor_above_it():
    def run() -> None:
        venv = VecMonitor(VecRewardUncertaintyWrapper(DummyVecEnv([lambda: Monitor(env())] * 2), model()))
        venv.reset()
        for _ in range(2 * HORIZON):
            venv.step(np.zeros(2, dtype=np.int64))

    caught = outer_monitor_warnings(run)

    assert len(caught) == 1 and "VecMonitor" in str(caught[0].message)


def test_vec_skin_on_a_vec_monitor_below_it_does_not_warn():
    def run() -> None:
        venv = VecRewardUncertaintyWrapper(VecMonitor(DummyVecEnv([env] * 2)), model())
        venv.reset()
        for _ in range(2 * HORIZON):
            venv.step(np.zeros(2, dtype=np.int64))

    assert outer_monitor_warnings(run) == []
