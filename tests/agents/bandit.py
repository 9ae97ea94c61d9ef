"""A one-step env with a safe and a risky action, and a hand-made posterior for it (off-policy direction tests).

``OneStepChoice``: every episode is one step from the same observation. In the Discrete
version action 0 is safe and action 1 risky; in the Box version the action is a ∈ [-1, 1].
``ActionTablePosterior`` gives member k the reward ``table[k, a]`` (Discrete) or
``slopes[k]·a`` (Box): with members (+3, −1) for the risky action and (0.5, 0.5) for the safe
one, the mean (1.0 vs 0.5) takes the risky action and CVaR at α = 0.5 (−1 vs 0.5) the safe one.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from stable_baselines3.common.env_util import make_vec_env

from ruagent.reward_models.base import RewardModel
from ruagent.wrappers import RewardUncertaintyWrapper

#: member rewards of (safe, risky) for members 0 and 1
TABLE = np.array([[0.5, 3.0], [0.5, -1.0]])
#: Box version: member k pays slopes[k]·a; mean 0.5·a (best at a = 1), worst min(2a, −a) (best at a = 0)
SLOPES = np.array([2.0, -1.0])


class OneStepChoice(gym.Env):
    """One step per episode from a constant observation; the env's own reward is 0."""

    def __init__(self, continuous: bool = False) -> None:
        self.observation_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        if continuous:
            self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        else:
            self.action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action):
        return np.zeros(1, dtype=np.float32), 0.0, True, False, {}


class ActionTablePosterior(RewardModel):
    """Two fixed members whose rewards depend on the action only (see the module docstring)."""

    family = "tests_action_table"

    def _predict(self, obs, action, next_obs, batch_size):
        if isinstance(self.action_space, gym.spaces.Discrete):
            return TABLE[:, np.asarray(action, dtype=np.int64).reshape(batch_size)]
        return SLOPES[:, None] * np.asarray(action, dtype=np.float64).reshape(1, batch_size)

    def _get_state(self):
        return {}, {}

    @classmethod
    def _from_state(cls, observation_space, action_space, config, tensors):
        return cls(observation_space, action_space, 2)


def one_step_env(continuous: bool = False, n_envs: int = 1, seed: int = 0):
    """The wrapped VecEnv: Monitor inside, RewardUncertaintyWrapper with the two-member posterior outside."""

    def wrap(env):
        return RewardUncertaintyWrapper(env, ActionTablePosterior(env.observation_space, env.action_space, 2))

    return make_vec_env(lambda: OneStepChoice(continuous), n_envs=n_envs, seed=seed, wrapper_class=wrap)
