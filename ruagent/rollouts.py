"""Evaluation rollouts: episodes of a policy, scored by the truth and by the posterior.

:func:`run_episodes` steps a plain (unwrapped-by-ruagent) env with a policy and records
every transition, the env's own reward (the truth), ``info["side_effect"]`` and, when a
reward model is given, every member's reward for every transition: ONE batched
``predict`` call per rollout, shape (K, T). From these :class:`Episodes` gives per-episode
true returns, proxy returns (posterior mean, the quantity a mean-reward agent climbs),
goodhart gaps and side-effect indicators. Used by :mod:`ruagent.callbacks` (periodic
evaluation during training) and :mod:`ruagent.cli.evaluate` (evaluate.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

if TYPE_CHECKING:  # the reward-model module imports torch; rollouts only call predict/bind
    from ruagent.reward_models.base import RewardModel

__all__ = ["Episodes", "run_episodes", "stack_observations"]

#: A policy: an SB3 model (anything with ``predict(obs, deterministic=...)``), a callable
#: obs -> action, or None for uniformly random actions.
Policy = Any


def stack_observations(items: list[Any]) -> Any:
    """Stack T observations into one batch with leading axis T (dicts/tuples key by key)."""
    first = items[0]
    if isinstance(first, dict):
        return {key: stack_observations([item[key] for item in items]) for key in first}
    if isinstance(first, tuple):
        return tuple(stack_observations([item[i] for item in items]) for i in range(len(first)))
    return np.stack([np.asarray(item) for item in items])


@dataclass
class Episodes:
    """T transitions from E complete episodes, in order.

    :param obs: batch of T observations (leading axis T; dict/tuple for Dict/Tuple spaces).
    :param actions: batch of T actions.
    :param next_obs: batch of T next observations (the true last observation at episode ends).
    :param env_rewards: (T,) the env's own rewards.
    :param side_effects: (T,) bool, ``info["side_effect"]`` (False where the env has none).
    :param episode_ids: (T,) int, episode index 0..E-1 of each transition.
    :param member_rewards: (K, T) float32 member rewards, or None without a reward model.
    :param member_probs: (K,) posterior weights of the members, or None.
    :param posterior_mean: (T,) the posterior mean reward (``RewardModel.predict_moments``:
        analytic where the family has one), or None: then the members' weighted mean.
    :param posterior_std: (T,) the posterior std of the reward, likewise.
    :param frames: per-episode lists of rgb frames when rendering was asked for, else None.
    :param positions: with frames, per-episode (T_e + 1, 2) pixel (x, y) centres of the agent's
        cell for grid envs that expose ``agent`` (row, col) and ``terrain`` (H, W); else None.
    :param optimal_returns: (E,) the env's exact optimal true return from each episode's start
        (``env.unwrapped.optimal_return()``, e.g. the gridworld solver), or None.
    """

    obs: Any
    actions: np.ndarray
    next_obs: Any
    env_rewards: np.ndarray
    side_effects: np.ndarray
    episode_ids: np.ndarray
    member_rewards: np.ndarray | None = None
    member_probs: np.ndarray | None = None
    posterior_mean: np.ndarray | None = None
    posterior_std: np.ndarray | None = None
    frames: list[list[np.ndarray]] | None = None
    optimal_returns: np.ndarray | None = None
    positions: list[np.ndarray] | None = None

    @property
    def n_episodes(self) -> int:
        return int(self.episode_ids.max()) + 1 if self.episode_ids.size else 0

    def _per_episode_sum(self, per_step: np.ndarray) -> np.ndarray:
        return np.bincount(self.episode_ids, weights=per_step, minlength=self.n_episodes)

    def true_returns(self) -> np.ndarray:
        """(E,) undiscounted sums of the env's reward."""
        return self._per_episode_sum(self.env_rewards.astype(np.float64))

    def lengths(self) -> np.ndarray:
        """(E,) episode lengths."""
        return np.bincount(self.episode_ids, minlength=self.n_episodes)

    def reward_mean(self) -> np.ndarray:
        """(T,) posterior-mean reward: the family's (analytic where it has one), else the members' weighted mean."""
        if self.member_rewards is None:
            raise ValueError("these episodes were run without a reward model; pass reward_model= to run_episodes")
        if self.posterior_mean is not None:
            return self.posterior_mean
        return self._member_mean()

    def _member_mean(self) -> np.ndarray:
        k = self.member_rewards.shape[0]
        probs = np.full(k, 1.0 / k) if self.member_probs is None else self.member_probs
        return probs @ self.member_rewards.astype(np.float64)

    def reward_std(self) -> np.ndarray:
        """(T,) posterior std of the reward on each transition (analytic where the family has one)."""
        if self.posterior_std is not None:
            return self.posterior_std
        mean = self._member_mean()
        k = self.member_rewards.shape[0]
        probs = np.full(k, 1.0 / k) if self.member_probs is None else self.member_probs
        return np.sqrt(probs @ (self.member_rewards.astype(np.float64) - mean) ** 2)

    def proxy_returns(self) -> np.ndarray:
        """(E,) sums of the posterior-mean reward: what a mean-reward agent believes it earns."""
        return self._per_episode_sum(self.reward_mean())

    def goodhart_gaps(self) -> np.ndarray:
        """(E,) proxy return − true return; large and positive when the agent exploits reward errors."""
        return self.proxy_returns() - self.true_returns()

    def side_effect_episodes(self) -> np.ndarray:
        """(E,) 1.0 for episodes with at least one side effect."""
        return (self._per_episode_sum(self.side_effects.astype(np.float64)) > 0).astype(np.float64)


def _agent_pixel(env: gym.Env, frame: np.ndarray) -> tuple[float, float] | None:
    """Pixel centre (x, y) of the agent's cell in ``frame`` for grid envs (``agent`` and ``terrain``)."""
    agent, terrain = getattr(env.unwrapped, "agent", None), getattr(env.unwrapped, "terrain", None)
    if not (isinstance(agent, tuple) and len(agent) == 2 and isinstance(terrain, np.ndarray) and terrain.ndim == 2):
        return None
    cell_h, cell_w = frame.shape[0] / terrain.shape[0], frame.shape[1] / terrain.shape[1]
    return (agent[1] + 0.5) * cell_w, (agent[0] + 0.5) * cell_h


def _as_action_fn(policy: Policy, env: gym.Env, deterministic: bool) -> Callable[[Any], Any]:
    if policy is None:
        return lambda _obs: env.action_space.sample()
    if hasattr(policy, "predict"):
        return lambda obs: policy.predict(obs, deterministic=deterministic)[0]
    if callable(policy):
        return policy
    raise TypeError(f"policy must be an SB3 model, a callable obs -> action or None, got {type(policy).__name__}")


def run_episodes(
    env: gym.Env,
    policy: Policy,
    n_episodes: int,
    *,
    reward_model: RewardModel | None = None,
    seed: int | None = 0,
    deterministic: bool = True,
    render: bool = False,
    solve_optimal: bool = False,
) -> Episodes:
    """Run ``n_episodes`` complete episodes and record what evaluation needs.

    :param env: a gymnasium env; its reward is the truth (``info["env_reward"]`` when it is wrapped by
        RewardUncertaintyWrapper, whose returned reward is the proxy).
    :param policy: SB3 model, callable obs -> action, or None (random actions).
    :param n_episodes: E >= 1.
    :param reward_model: posterior scoring every transition in one batched call after the episodes;
        it is bound to ``env`` first (:meth:`RewardModel.bind`: space check, env features). None skips it.
    :param seed: the first reset's seed (episodes then follow the env's RNG); the action space
        is seeded too so random policies repeat.
    :param deterministic: passed to ``policy.predict``.
    :param render: also keep ``env.render()`` frames (env must have ``render_mode="rgb_array"``).
    :param solve_optimal: after each reset, record ``env.unwrapped.optimal_return()`` where the
        env has an exact solver (the gridworlds); ignored for envs without one.
    """
    if n_episodes < 1:
        raise ValueError(f"n_episodes must be >= 1, got {n_episodes}")
    act = _as_action_fn(policy, env, deterministic)
    if reward_model is not None:
        reward_model.bind(env)
    env.action_space.seed(seed)
    obs_list, action_list, next_obs_list, rewards, side_effects, episode_ids = [], [], [], [], [], []
    frames: list[list[np.ndarray]] = []
    positions: list[np.ndarray] = []
    solver = getattr(env.unwrapped, "optimal_return", None) if solve_optimal else None
    optimal_returns = []
    for episode in range(n_episodes):
        obs, _ = env.reset(seed=seed if episode == 0 else None)
        episode_frames = [env.render()] if render else []
        episode_positions = [_agent_pixel(env, episode_frames[0])] if render else []
        if solver is not None:
            optimal_returns.append(float(solver()))
        done = False
        while not done:
            action = act(obs)
            next_obs, reward, terminated, truncated, info = env.step(action)
            obs_list.append(obs)
            action_list.append(action)
            next_obs_list.append(next_obs)
            # Through RewardUncertaintyWrapper the returned reward is the proxy; the truth is in the info.
            rewards.append(float(info.get("env_reward", reward)))
            side_effects.append(bool(info.get("side_effect", False)))
            episode_ids.append(episode)
            if render:
                episode_frames.append(env.render())
                episode_positions.append(_agent_pixel(env, episode_frames[-1]))
            obs, done = next_obs, terminated or truncated
        frames.append(episode_frames)
        if render and None not in episode_positions:
            positions.append(np.array(episode_positions, dtype=np.float64))
    batch_obs, batch_next_obs = stack_observations(obs_list), stack_observations(next_obs_list)
    batch_actions = np.stack([np.asarray(a) for a in action_list])
    member_rewards = member_probs = posterior_mean = posterior_std = None
    if reward_model is not None:
        member_rewards, posterior_mean, posterior_std = reward_model.predict_moments(
            batch_obs, batch_actions, batch_next_obs
        )
        member_probs = reward_model.member_probs
        assert member_rewards.shape == (reward_model.n_members, len(rewards)), member_rewards.shape
    return Episodes(
        obs=batch_obs,
        actions=batch_actions,
        next_obs=batch_next_obs,
        env_rewards=np.asarray(rewards, dtype=np.float64),
        side_effects=np.asarray(side_effects, dtype=bool),
        episode_ids=np.asarray(episode_ids, dtype=np.int64),
        member_rewards=member_rewards,
        member_probs=member_probs,
        posterior_mean=posterior_mean,
        posterior_std=posterior_std,
        frames=frames if render else None,
        optimal_returns=np.asarray(optimal_returns) if solver is not None else None,
        positions=positions if render and len(positions) == n_episodes else None,
    )
