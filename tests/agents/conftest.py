"""Small reward posteriors and wrapped envs for RiskPPO's tests (real wrapper, real SB3 envs)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3.common.env_util import make_vec_env

from ruagent.reward_models.base import RewardModel
from ruagent.wrappers import RewardUncertaintyWrapper


def _flat(batch: Any, batch_size: int) -> np.ndarray:
    if isinstance(batch, dict):
        return np.concatenate([_flat(batch[key], batch_size) for key in sorted(batch)], axis=1)
    return np.asarray(batch, dtype=np.float64).reshape(batch_size, -1)


class LinearMembers(RewardModel):
    """K fixed reward hypotheses r_k = offset_k + w_k · flatten(next_obs), seeded; one matmul for all K."""

    family = "tests_linear_members"

    def __init__(self, observation_space, action_space, n_members=3, seed=0, scale=1.0, offsets=None, probs=None):
        super().__init__(observation_space, action_space, n_members, member_probs=probs)
        dim = gym.spaces.flatdim(observation_space)
        self.seed, self.scale = seed, scale
        self.weights = np.random.default_rng(seed).normal(size=(n_members, dim)) * scale
        self.offsets = np.zeros(n_members) if offsets is None else np.asarray(offsets, dtype=np.float64)

    def _predict(self, obs, action, next_obs, batch_size):
        return self.weights @ _flat(next_obs, batch_size).T + self.offsets[:, None]

    def _get_state(self):
        return {"seed": self.seed, "scale": self.scale, "offsets": self.offsets.tolist()}, {}

    @classmethod
    def _from_state(cls, observation_space, action_space, config, tensors):
        return cls(observation_space, action_space, **config)


def wrapped_vec_env(env_id: str, model_factory, n_envs: int = 1, seed: int = 0, **wrapper_kwargs):
    """``make_vec_env`` of ``env_id`` with Monitor, then RewardUncertaintyWrapper(model_factory(env))."""

    def wrap(env: gym.Env) -> gym.Env:
        return RewardUncertaintyWrapper(env, model_factory(env), **wrapper_kwargs)

    return make_vec_env(env_id, n_envs=n_envs, seed=seed, wrapper_class=wrap)


@pytest.fixture
def linear_members():
    """Factory: env -> LinearMembers on that env's spaces."""

    def factory(n_members=3, **kwargs):
        return lambda env: LinearMembers(env.observation_space, env.action_space, n_members, **kwargs)

    return factory


@pytest.fixture(autouse=True)
def _few_threads():
    # Tiny networks: intra-op threads only add contention on a shared 2-core machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def make_env():
    """``make_env(env_id, model_factory, n_envs=1, seed=0, **wrapper_kwargs)`` -> wrapped VecEnv."""
    return wrapped_vec_env
