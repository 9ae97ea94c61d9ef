"""A small, exact reward posterior for wrapper tests: K fixed random linear functions.

Member k's reward is ``w_k · φ(obs, action, next_obs) + b_k`` with φ the featuriser's
flattening, so every expected value in the tests can be recomputed by hand.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

from ruagent.features import Featuriser
from ruagent.reward_models.base import RewardModel
from ruagent.reward_models.ensemble import EnsembleRewardModel


class RandomLinearRewardModel(RewardModel):
    """K random linear reward functions of the flattened transition (one matrix product for all K)."""

    family = "wrappers_test_random_linear"

    def __init__(self, observation_space, action_space, n_members=5, member_probs=None, seed=0, weights=None):
        super().__init__(observation_space, action_space, n_members, member_probs)
        self.featuriser = Featuriser(observation_space, action_space)
        rng = np.random.default_rng(seed)
        if weights is None:
            weights = rng.normal(size=(n_members, self.featuriser.dim + 1)).astype(np.float32)
        self.weights = np.asarray(weights, dtype=np.float32)
        assert self.weights.shape == (n_members, self.featuriser.dim + 1)
        self.n_calls = 0

    def _predict(self, obs: Any, action: Any, next_obs: Any, batch_size: int) -> np.ndarray:
        self.n_calls += 1
        features = self.featuriser(obs, action, next_obs)  # (B, D)
        return self.weights[:, :-1] @ features.T + self.weights[:, -1:]  # (K, B)

    def _get_state(self):
        return {"seed": 0}, {"weights": torch.from_numpy(self.weights)}

    @classmethod
    def _from_state(cls, observation_space, action_space, config, tensors):
        weights = tensors["weights"].numpy()
        return cls(observation_space, action_space, n_members=weights.shape[0], weights=weights)


class DictObsEnv(gym.Env):
    """A tiny env with a Dict observation (a Box and a Discrete) and a Box action."""

    metadata: ClassVar[dict] = {"render_modes": []}

    def __init__(self, horizon: int = 7) -> None:
        self.observation_space = spaces.Dict(
            {"position": spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32), "phase": spaces.Discrete(3)}
        )
        self.action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.horizon = horizon

    def _obs(self):
        return {"position": self._position.copy(), "phase": int(self._t % 3)}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._position = self.np_random.uniform(-1, 1, size=2).astype(np.float32)
        self._t = 0
        return self._obs(), {}

    def step(self, action):
        self._position = np.clip(self._position + 0.1 * np.asarray(action, dtype=np.float32), -1, 1)
        self._t += 1
        reward = -float(np.linalg.norm(self._position))
        return self._obs(), reward, False, self._t >= self.horizon, {}


@pytest.fixture
def random_model_for():
    """``random_model_for(env, n_members=5, seed=0, member_probs=None)``: a RandomLinearRewardModel for env."""

    def build(env, n_members=5, seed=0, member_probs=None) -> RandomLinearRewardModel:
        return RandomLinearRewardModel(env.observation_space, env.action_space, n_members, member_probs, seed)

    return build


@pytest.fixture
def small_ensemble_for():
    """``small_ensemble_for(env, n_members=3)``: an unfitted 16x16 EnsembleRewardModel for env (its
    random initial and prior nets are K distinct reward functions; fitting is irrelevant to wrapping)."""

    def build(env, n_members=3, seed=0) -> EnsembleRewardModel:
        return EnsembleRewardModel(
            env.observation_space, env.action_space, n_members=n_members, hidden_sizes=(16, 16), seed=seed
        )

    return build


@pytest.fixture
def one_torch_thread():
    """Tiny PPO runs are slower with several threads on a shared 2-core machine (oversubscription)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def dict_obs_env():
    return DictObsEnv()
