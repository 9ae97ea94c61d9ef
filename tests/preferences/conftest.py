"""A tiny env with a known linear reward, so learned rewards can be checked against the truth."""

from typing import ClassVar

import gymnasium as gym
import numpy as np
import pytest

#: the true reward weights on next_obs
TRUE_WEIGHTS = np.array([1.0, -0.5], dtype=np.float32)


class LinearRewardWalk(gym.Env):
    """A point in the plane nudged by 4 actions plus noise; reward = TRUE_WEIGHTS · next_obs.

    Episodes last ``horizon`` steps (some shorter than a segment, to exercise padding).
    """

    metadata: ClassVar[dict] = {"render_modes": ["ansi", "rgb_array"]}

    def __init__(self, horizon: int = 30, render_mode: str | None = None) -> None:
        self.observation_space = gym.spaces.Box(-5.0, 5.0, shape=(2,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(4)
        self.horizon = horizon
        self.render_mode = render_mode
        self._moves = np.array([[0.3, 0], [-0.3, 0], [0, 0.3], [0, -0.3]], dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        self._x = self.np_random.uniform(-1, 1, size=2).astype(np.float32)
        return self._x.copy(), {}

    def step(self, action):
        noise = self.np_random.normal(0, 0.1, size=2).astype(np.float32)
        self._x = np.clip(self._x + self._moves[int(action)] + noise, -5, 5).astype(np.float32)
        self._t += 1
        reward = float(TRUE_WEIGHTS @ self._x)
        return self._x.copy(), reward, False, self._t >= self.horizon, {}

    def render(self):
        if self.render_mode == "ansi":
            return f"x={self._x[0]:+.2f}\ny={self._x[1]:+.2f}"
        if self.render_mode == "rgb_array":
            frame = np.zeros((8, 8, 3), dtype=np.uint8)
            frame[..., 0] = int(np.clip(128 + 20 * self._x[0], 0, 255))
            return frame
        return None


@pytest.fixture
def walk_env():
    env = LinearRewardWalk()
    yield env
    env.close()


@pytest.fixture(autouse=True)
def one_torch_thread():
    """The tests' tensors are tiny: one thread avoids oversubscribing the shared CI cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
