"""Rollout buffers that keep one reward, value, advantage and return per reward hypothesis.

SB3's :class:`~stable_baselines3.common.buffers.RolloutBuffer` stores one scalar reward per
transition. RiskPPO needs all K member rewards (``info["reward_members"]``) so that GAE can
run per member (Schulman et al., "High-Dimensional Continuous Control Using Generalized
Advantage Estimation", ICLR 2016) and the policy can follow a risk measure over the members'
returns (PG-BROIL: Javed et al., ICML 2021). The member arrays have shape
``(n_steps, n_envs, K)``, float32; the inherited scalar arrays hold the risk-weighted
combination ``Σ_k w_k x_k`` once :meth:`combine` has run, so SB3 code that reads
``values``/``advantages``/``returns`` sees the scalarised critic (with K = 1 and w = 1 these
are exactly PPO's).

Memory (bytes) of a filled buffer, N = n_steps · n_envs transitions::

    N · (obs_bytes + action_bytes + 24 + 16 K)

where 24 = six inherited float32 scalars (reward, return, episode start, value, log-prob,
advantage) and 16 K = four float32 member arrays. :meth:`RiskRolloutBuffer.nbytes` reports
the exact figure.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import DictRolloutBuffer, RolloutBuffer
from stable_baselines3.common.type_aliases import TensorDict
from stable_baselines3.common.vec_env import VecNormalize

__all__ = [
    "DictRiskRolloutBuffer",
    "DictRiskRolloutBufferSamples",
    "RiskRolloutBuffer",
    "RiskRolloutBufferSamples",
]

_MEMBER_ARRAYS = ("member_rewards", "member_values", "member_advantages", "member_returns")


class RiskRolloutBufferSamples(NamedTuple):
    """A minibatch of B transitions; the field names are SB3's, the critic fields have K columns.

    observations (B, *obs_shape); actions (B, action_dim); old_values (B, K); old_log_prob (B,);
    advantages (B,) — already risk-weighted, Σ_k w_k A_k; returns (B, K).
    """

    observations: th.Tensor
    actions: th.Tensor
    old_values: th.Tensor
    old_log_prob: th.Tensor
    advantages: th.Tensor
    returns: th.Tensor


class DictRiskRolloutBufferSamples(NamedTuple):
    """:class:`RiskRolloutBufferSamples` for Dict observations (a dict of (B, *shape) tensors)."""

    observations: TensorDict
    actions: th.Tensor
    old_values: th.Tensor
    old_log_prob: th.Tensor
    advantages: th.Tensor
    returns: th.Tensor


class _MemberRollouts:
    """Per-member storage, GAE and risk weighting shared by the Box and Dict buffers.

    Mixed in before an SB3 rollout buffer; ``n_members`` is set before that buffer's
    ``__init__`` runs, because it calls :meth:`reset`.
    """

    n_members: int
    member_rewards: np.ndarray
    member_values: np.ndarray
    member_advantages: np.ndarray
    member_returns: np.ndarray

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: th.device | str = "auto",
        gae_lambda: float = 1,
        gamma: float = 0.99,
        n_envs: int = 1,
        n_members: int = 1,
    ):
        if int(n_members) < 1:
            raise ValueError(f"n_members must be >= 1, got {n_members}")
        self.n_members = int(n_members)
        super().__init__(buffer_size, observation_space, action_space, device, gae_lambda, gamma, n_envs)

    def get(self, batch_size: int | None = None) -> Generator:
        """SB3's minibatch generator, with the member arrays flattened alongside."""
        self._flatten_members()
        yield from super().get(batch_size)

    def reset(self) -> None:
        shape = (self.buffer_size, self.n_envs, self.n_members)
        for name in _MEMBER_ARRAYS:
            setattr(self, name, np.zeros(shape, dtype=np.float32))
        super().reset()

    def add(self, obs, action, reward, episode_start, value: th.Tensor, log_prob: th.Tensor, *, member_rewards) -> None:
        """SB3's ``add`` with the critic's K values and the K member rewards of the step.

        :param value: (n_envs, K) member values of ``obs``.
        :param member_rewards: (n_envs, K) float32, ``info["reward_members"]`` stacked over envs
            (plus γ·V_k of the final observation where a time limit truncated the episode).
        The other parameters are SB3's; ``reward`` (the wrapper's scalar reward) is kept for
        reference, GAE uses the member rewards.
        """
        expected = (self.n_envs, self.n_members)
        assert tuple(member_rewards.shape) == expected, (member_rewards.shape, expected)
        assert tuple(value.shape) == expected, (tuple(value.shape), expected)
        self.member_rewards[self.pos] = member_rewards
        self.member_values[self.pos] = value.detach().cpu().numpy()
        # The scalar slot gets the members' mean for now; combine() sets the risk-weighted value.
        super().add(obs, action, reward, episode_start, value.mean(dim=1), log_prob)

    def compute_returns_and_advantage(self, last_values: th.Tensor, dones: np.ndarray) -> None:
        """GAE(λ) and TD(λ) returns for every member at once (SB3's recursion, batched over K).

        :param last_values: (n_envs, K) member values of the observation after the last step.
        :param dones: (n_envs,) whether that last step ended the episode.
        """
        last_values = last_values.detach().cpu().numpy().reshape(self.n_envs, self.n_members)
        last_gae_lam = np.zeros((self.n_envs, self.n_members), dtype=np.float32)
        for step in reversed(range(self.buffer_size)):
            if step == self.buffer_size - 1:
                next_non_terminal = 1.0 - dones.astype(np.float32)
                next_values = last_values
            else:
                next_non_terminal = 1.0 - self.episode_starts[step + 1]
                next_values = self.member_values[step + 1]
            next_non_terminal = next_non_terminal[:, None]
            delta = self.member_rewards[step] + self.gamma * next_values * next_non_terminal - self.member_values[step]
            last_gae_lam = delta + self.gamma * self.gae_lambda * next_non_terminal * last_gae_lam
            self.member_advantages[step] = last_gae_lam
        self.member_returns = self.member_advantages + self.member_values

    def start_values(self, source: str = "return") -> np.ndarray:
        """Per-member estimate J_k of the policy's value under hypothesis k, shape (K,).

        The mean over episode-start states in this rollout (over all states if none started
        here) of the members' TD(λ) returns (``source="return"``) or critic values
        (``source="value"``). J(π) = E_{s0}[V^π(s0)], so episode starts are the right states;
        returns mix in the rewards actually collected, so the estimate does not wait for the
        critic to learn (an untrained critic says 0 for every member and would make the risk
        weights arbitrary).
        """
        member = {"return": self.member_returns, "value": self.member_values}[source]
        starts = self.episode_starts.astype(bool)
        picked = member[starts] if starts.any() else member.reshape(-1, self.n_members)
        return picked.mean(axis=0, dtype=np.float64)

    def combine(self, weights: np.ndarray) -> None:
        """Set the scalar ``advantages``, ``values`` and ``returns`` to Σ_k w_k (member array).

        :param weights: (K,) risk weights dρ/dJ.
        """
        weights = np.asarray(weights, dtype=np.float32)
        assert weights.shape == (self.n_members,), (weights.shape, self.n_members)
        self.advantages = self.member_advantages @ weights
        self.values = self.member_values @ weights
        self.returns = self.member_returns @ weights

    def nbytes(self) -> int:
        """Bytes held by the buffer's arrays (grows as 16·K per transition)."""
        arrays = [value for value in vars(self).values() if isinstance(value, np.ndarray)]
        if isinstance(getattr(self, "observations", None), dict):
            arrays += list(self.observations.values())
        return int(sum(array.nbytes for array in arrays))

    def _flatten_members(self) -> None:
        if not self.generator_ready:
            for name in _MEMBER_ARRAYS:
                setattr(self, name, self.swap_and_flatten(getattr(self, name)))


class RiskRolloutBuffer(_MemberRollouts, RolloutBuffer):
    """SB3's RolloutBuffer plus member rewards/values/advantages/returns of shape (n_steps, n_envs, K).

    :param n_members: K, the number of reward hypotheses; the other parameters are SB3's.
    """

    def _get_samples(self, batch_inds: np.ndarray, env: VecNormalize | None = None) -> RiskRolloutBufferSamples:
        return RiskRolloutBufferSamples(
            observations=self.to_torch(self.observations[batch_inds]),
            actions=self.to_torch(self.actions[batch_inds].astype(np.float32, copy=False)),
            old_values=self.to_torch(self.member_values[batch_inds]),
            old_log_prob=self.to_torch(self.log_probs[batch_inds].flatten()),
            advantages=self.to_torch(self.advantages[batch_inds].flatten()),
            returns=self.to_torch(self.member_returns[batch_inds]),
        )


class DictRiskRolloutBuffer(_MemberRollouts, DictRolloutBuffer):
    """:class:`RiskRolloutBuffer` for Dict observation spaces (SB3's DictRolloutBuffer underneath)."""

    def _get_samples(self, batch_inds: np.ndarray, env: VecNormalize | None = None) -> DictRiskRolloutBufferSamples:
        return DictRiskRolloutBufferSamples(
            observations={key: self.to_torch(obs[batch_inds]) for key, obs in self.observations.items()},
            actions=self.to_torch(self.actions[batch_inds].astype(np.float32, copy=False)),
            old_values=self.to_torch(self.member_values[batch_inds]),
            old_log_prob=self.to_torch(self.log_probs[batch_inds].flatten()),
            advantages=self.to_torch(self.advantages[batch_inds].flatten()),
            returns=self.to_torch(self.member_returns[batch_inds]),
        )
