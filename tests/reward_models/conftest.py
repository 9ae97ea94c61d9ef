"""Small envs and label sets shared by the reward-model tests."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

BOX_1D = spaces.Box(-np.inf, np.inf, (1,), dtype=np.float32)


@pytest.fixture(autouse=True)
def single_torch_thread():
    """Tiny batched matmuls gain nothing from intra-op threads, and on a loaded 2-core machine
    torch's spinning thread pool makes them several times slower; restored after each test."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def obs_only(obs, action, next_obs):
    """Features = the observation itself (a 1-D toy input)."""
    return np.asarray(obs, dtype=np.float32)


@pytest.fixture
def toy_1d():
    """256 labels of r = sin(3x) + noise for x in [-1, 1] (Box(1) obs, Discrete(1) action)."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (256, 1)).astype(np.float32)
    reward = (np.sin(3 * x[:, 0]) + 0.05 * rng.standard_normal(256)).astype(np.float32)
    return x, np.zeros(256, dtype=np.int64), x, reward


class TerrainEnv(gym.Env):
    """A 1-D corridor of terrains; reward_features is the one-hot terrain of the cell entered
    (IRD's φ). Reached through wrappers by features='env'."""

    terrain = np.array([0, 1, 1, 0, 2, 0])
    observation_space = spaces.Discrete(6)
    action_space = spaces.Discrete(2)

    def reward_features(self, obs, action, next_obs):
        return np.eye(3, dtype=np.float32)[self.terrain[np.asarray(next_obs)]]

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = 0
        return self.pos, {}

    def step(self, action):
        self.pos = int(np.clip(self.pos + (1 if action else -1), 0, 5))
        reward = float(self.reward_features(None, None, np.array([self.pos]))[0] @ np.array([-1.0, -2.0, 5.0]))
        return self.pos, reward, self.pos == 5, False, {}


class DictObsEnv(gym.Env):
    observation_space = spaces.Dict(
        {"pos": spaces.Box(-np.inf, np.inf, (2,), dtype=np.float32), "door": spaces.Discrete(3, start=1)}
    )
    action_space = spaces.Box(-1, 1, (2,), dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = self.np_random.uniform(-1, 1, 2).astype(np.float32)
        return self._obs(), {}

    def _obs(self):
        return {"pos": self.pos.copy(), "door": 1 + int(self.pos[0] > 0) + int(self.pos[1] > 0)}

    def step(self, action):
        self.pos = np.clip(self.pos + 0.2 * action, -3, 3).astype(np.float32)
        return self._obs(), -float(np.abs(self.pos).sum()), False, False, {}
