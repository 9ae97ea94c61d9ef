"""Replay buffers that score sampled transitions with the *current* reward posterior.

SB3's :class:`~stable_baselines3.common.buffers.ReplayBuffer` stores the reward of each
transition when it is added. A reward posterior can be refitted while the agent trains (online
preference learning, :class:`~ruagent.preferences.PreferenceLearningCallback`), and a reward
stored at collection time would then be stale for most of the buffer. These buffers keep what
SB3 keeps — (obs, action, next_obs, done, timeout) — and compute the K member rewards when a
batch is sampled, with **one** ``reward_model.predict(obs, action, next_obs)`` call per batch:
a refit applies to the whole buffer at the next gradient step (relabelling).

What the posterior sees is what the reward-uncertainty wrapper saw when the transition
happened: the unnormalised observations (SB3 stores those also under ``VecNormalize``), the
terminal observation at episode ends (``info["terminal_observation"]``, as SB3 stores it) and
the action the env received (Box actions are stored scaled to [-1, 1] and are mapped back to
the action space's bounds, as SB3's ``policy.unscale_action`` does). Time-limit truncations
are not terminations (SB3's ``handle_timeout_termination``): their ``dones`` are 0.

Samples are SB3's ``ReplayBufferSamples`` / ``DictReplayBufferSamples`` whose ``rewards`` are
the member rewards, shape (batch, K) float32 (with K = 1 exactly what SB3's (batch, 1) reward
holds when the wrapper hands the agent that member's reward). ``VecNormalize(norm_reward=True)``
does not rescale member rewards (as in RiskPPO).

The buffer holds a reference to the posterior (``reward_model``), set by the agent from the
env's wrapper chain; it is never pickled with the buffer (``save_replay_buffer`` stores the
transitions only, and ``load_replay_buffer`` re-attaches the env's posterior).

``member_rewards="env"`` is the control without reward uncertainty: every member's reward is the
reward SB3 stored (normalised by ``VecNormalize`` as SB3 does): on an env without a posterior
wrapper, the true reward, so an agent with K heads trains on it, no posterior needed. Comparing it with SB3's
algorithm separates what the K heads do from what a learnt reward does (``bench/pbrl_mujoco.py
--control``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.buffers import DictReplayBuffer, ReplayBuffer
from stable_baselines3.common.type_aliases import DictReplayBufferSamples, ReplayBufferSamples
from stable_baselines3.common.vec_env import VecNormalize

from ruagent.reward_models.base import align_member_offsets

__all__ = ["MEMBER_REWARDS", "DictRelabellingReplayBuffer", "RelabellingReplayBuffer"]

#: where sampled member rewards come from: the current posterior (relabelling), or the env's stored reward
MEMBER_REWARDS = ("posterior", "env")


def _unbatched_shape(space: spaces.Space) -> tuple[int, ...]:
    return tuple(space.shape) if space.shape is not None else ()


class _Relabelling:
    """Member rewards from the current posterior for sampled transitions (mixin for SB3 replay buffers)."""

    observation_space: spaces.Space
    action_space: spaces.Space
    n_envs: int
    #: class default, so a buffer pickled before this attribute existed loads as a relabelling one
    member_rewards = "posterior"

    def _init_relabelling(self, n_members: int, member_rewards: str) -> None:
        if getattr(self, "optimize_memory_usage", False):
            raise ValueError(
                "optimize_memory_usage=True keeps one observation array, so the next transition's first "
                "observation overwrites an episode's terminal observation, which the posterior scores; "
                "use optimize_memory_usage=False with a relabelling replay buffer"
            )
        if int(n_members) < 1:
            raise ValueError(f"n_members must be >= 1, got {n_members}")
        if member_rewards not in MEMBER_REWARDS:
            raise ValueError(f"member_rewards must be one of {MEMBER_REWARDS}, got {member_rewards!r}")
        self.n_members = int(n_members)
        #: "posterior": score samples with the attached reward model; "env": the env's stored reward for every member
        self.member_rewards = member_rewards
        #: the reward posterior that scores sampled batches (set by the agent; not pickled)
        self.reward_model: Any = None
        #: align members' label-data offsets (``RewardModel.standardise``) before returning them
        self.standardise = False

    def attach(self, reward_model: Any, standardise: bool = False) -> None:
        """Score sampled batches with ``reward_model`` (K members); ``standardise`` aligns member offsets."""
        if reward_model is not None and int(reward_model.n_members) != self.n_members:
            raise ValueError(
                f"the replay buffer was built for n_members={self.n_members} but the reward model has "
                f"{reward_model.n_members} members"
            )
        self.reward_model = reward_model
        self.standardise = bool(standardise)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["reward_model"] = None  # the posterior is saved on its own, never inside a pickled buffer
        return state

    def env_actions(self, actions: np.ndarray) -> np.ndarray:
        """Stored actions (B, action_dim) as the env received them: (B, *action_space.shape)."""
        batch = actions.shape[0]
        if isinstance(self.action_space, spaces.Box):
            low, high = self.action_space.low, self.action_space.high
            actions = low + (0.5 * (actions + 1.0) * (high - low))  # SB3's unscale_action
        return actions.reshape(batch, *_unbatched_shape(self.action_space))

    def _env_obs(self, obs: Any, space: spaces.Space) -> Any:
        if isinstance(space, spaces.Dict):
            return {key: self._env_obs(obs[key], sub) for key, sub in space.spaces.items()}
        return obs.reshape(obs.shape[0], *_unbatched_shape(space))

    def relabel(self, obs: Any, actions: np.ndarray, next_obs: Any) -> np.ndarray:
        """Member rewards (K, B) float32 of stored transitions, from the current posterior (one call)."""
        model = self.reward_model
        if model is None:
            raise RuntimeError(
                "this replay buffer has no reward model to score sampled transitions; the agent attaches the "
                "posterior of its env's RewardUncertaintyWrapper (set_env / load with env=...), or call "
                "replay_buffer.attach(reward_model); to train every member on the env's own reward instead (a "
                "control without reward uncertainty), pass replay_buffer_kwargs={'member_rewards': 'env'}"
            )
        members = model.predict(
            self._env_obs(obs, self.observation_space),
            self.env_actions(actions),
            self._env_obs(next_obs, self.observation_space),
        )
        if members.shape[0] != self.n_members:
            raise ValueError(
                f"the reward model returned {members.shape[0]} members but the agent was built for "
                f"n_members={self.n_members}"
            )
        if self.standardise and getattr(model, "reward_loc", None) is not None:
            members = align_member_offsets(members, model.reward_loc, model.member_probs)
        return members

    def _member_rewards(self, obs: Any, actions: np.ndarray, next_obs: Any, stored: np.ndarray,
                        env: VecNormalize | None) -> np.ndarray:
        """(B, K) float32, contiguous: rewards of the samples, one column per member.

        ``stored``: the (B,) rewards SB3 stored, used (normalised as SB3 does) for ``member_rewards="env"``.
        """
        if self.member_rewards == "env":
            rewards = self._normalize_reward(stored.reshape(-1, 1), env).astype(np.float32)  # type: ignore[attr-defined]
            return np.ascontiguousarray(np.broadcast_to(rewards, (len(rewards), self.n_members)))
        return np.ascontiguousarray(self.relabel(obs, actions, next_obs).T, dtype=np.float32)


class RelabellingReplayBuffer(_Relabelling, ReplayBuffer):
    """SB3's ReplayBuffer whose samples carry the K member rewards of the current posterior.

    :param n_members: K; sampled ``rewards`` have shape (batch, K).
    :param member_rewards: ``"posterior"`` (score samples with the current posterior) or ``"env"``
        (every member gets the env's stored reward: the control without reward uncertainty).

    The other parameters are SB3's (``handle_timeout_termination``, ...); ``optimize_memory_usage``
    must stay False (it overwrites terminal observations, which the posterior scores).
    The scalar reward passed to ``add`` is stored as SB3 stores it, used only with ``member_rewards="env"``.
    """

    def __init__(self, *args: Any, n_members: int = 1, member_rewards: str = "posterior", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_relabelling(n_members, member_rewards)

    def _get_samples(self, batch_inds: np.ndarray, env: VecNormalize | None = None) -> ReplayBufferSamples:
        # the env index is drawn as SB3 draws it: the same global stream as SAC/DQN's buffer (K = 1 equivalence)
        env_indices = np.random.randint(0, high=self.n_envs, size=(len(batch_inds),))  # noqa: NPY002
        obs = self.observations[batch_inds, env_indices]
        next_obs = self.next_observations[batch_inds, env_indices]  # the terminal observation at episode ends
        actions = self.actions[batch_inds, env_indices]
        # a time-limit truncation is not a termination: bootstrap through it
        dones = self.dones[batch_inds, env_indices] * (1 - self.timeouts[batch_inds, env_indices])
        # raw observations: what the wrapper saw
        rewards = self._member_rewards(obs, actions, next_obs, self.rewards[batch_inds, env_indices], env)
        return ReplayBufferSamples(
            observations=self.to_torch(self._normalize_obs(obs, env)),
            actions=self.to_torch(actions),
            next_observations=self.to_torch(self._normalize_obs(next_obs, env)),
            dones=self.to_torch(dones.reshape(-1, 1)),
            rewards=self.to_torch(rewards),
        )


class DictRelabellingReplayBuffer(_Relabelling, DictReplayBuffer):
    """SB3's DictReplayBuffer (Dict observations) whose samples carry the K member rewards."""

    def __init__(self, *args: Any, n_members: int = 1, member_rewards: str = "posterior", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_relabelling(n_members, member_rewards)

    def _get_samples(  # type: ignore[override]
        self, batch_inds: np.ndarray, env: VecNormalize | None = None
    ) -> DictReplayBufferSamples:
        env_indices = np.random.randint(0, high=self.n_envs, size=(len(batch_inds),))  # noqa: NPY002  (as SB3)
        obs = {key: value[batch_inds, env_indices] for key, value in self.observations.items()}
        next_obs = {key: value[batch_inds, env_indices] for key, value in self.next_observations.items()}
        actions = self.actions[batch_inds, env_indices]
        dones = self.dones[batch_inds, env_indices] * (1 - self.timeouts[batch_inds, env_indices])
        rewards = self._member_rewards(obs, actions, next_obs, self.rewards[batch_inds, env_indices], env)
        normalised_obs = self._normalize_obs(obs, env)
        normalised_next = self._normalize_obs(next_obs, env)
        return DictReplayBufferSamples(
            observations={key: self.to_torch(value) for key, value in normalised_obs.items()},
            actions=self.to_torch(actions),
            next_observations={key: self.to_torch(value) for key, value in normalised_next.items()},
            dones=self.to_torch(dones.reshape(-1, 1)),
            rewards=self.to_torch(rewards),
        )
