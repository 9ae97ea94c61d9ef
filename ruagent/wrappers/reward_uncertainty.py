"""Gymnasium skin of the posterior-reward core: hide the env's reward, hand out posterior rewards.

>>> import gymnasium as gym
>>> from stable_baselines3.common.monitor import Monitor
>>> env = RewardUncertaintyWrapper(Monitor(gym.make("CartPole-v1")), "reward_model.pt", mode="cvar")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import RecordEpisodeStatistics
from stable_baselines3.common.env_util import is_wrapped
from stable_baselines3.common.monitor import Monitor

from ruagent.reward_models.base import RewardModel
from ruagent.wrappers.core import (
    PosteriorRewardCore,
    as_reward_model,
    batch_one,
    env_labels,
    warn_missing_monitor,
    warn_outer_monitor,
)

__all__ = ["RewardUncertaintyWrapper"]


class RewardUncertaintyWrapper(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Replace the env's reward by a reward from a posterior over reward functions.

    The agent sees the scalar of ``mode`` (see :mod:`ruagent.wrappers.core`); the env's own
    reward is kept in ``info["env_reward"]`` for labelling and evaluation. Put SB3's
    ``Monitor`` *inside* (``RewardUncertaintyWrapper(Monitor(env), ...)``) so that
    ``info["episode"]`` stays the true return; the proxy return goes to
    ``info["proxy_episode"]``. A monitor placed *outside* (it would record proxy returns as
    ``info["episode"]``) is detected at the first reset after an episode end and warned about
    once (:class:`~ruagent.wrappers.OuterMonitorWarning`).

    Info keys on every step: ``reward_members`` (K,) float32, ``reward_mean`` and
    ``reward_std`` (floats, weighted by the posterior's ``member_probs``), ``env_reward``
    (float). At episode end: ``proxy_episode = {"r", "l", "r_mean", "r_members"}`` (proxy
    return, length, return of the posterior mean, (K,) per-member returns).

    :param env: the env to wrap.
    :param reward_model: a :class:`~ruagent.reward_models.RewardModel`, or the path of a saved one
        (so that configs such as rl-zoo's ``env_wrapper:`` can build this wrapper).
        It is bound to ``env`` (space check, env ``reward_features``).
    :param mode: ``mean``, ``sample`` (one member per episode), ``sample_step``, ``lcb``,
        ``worst`` or ``cvar``.
    :param lcb_c: c in ``lcb`` = mean − c·std.
    :param cvar_alpha: α of ``cvar``.
    :param standardise: map member rewards through ``reward_model.standardise`` first
        (members' label-data means aligned to the posterior's; ``reward_members`` are then aligned too).
    :param seed: seed of member sampling; ``reset(seed=s)`` reseeds it with s.
    :raises SpaceMismatchError: if the model was fitted on other spaces.
    """

    def __init__(
        self,
        env: gym.Env,
        reward_model: RewardModel | str | os.PathLike,
        mode: str = "mean",
        lcb_c: float = 1.0,
        cvar_alpha: float = 0.1,
        standardise: bool = False,
        seed: int | None = None,
    ) -> None:
        gym.utils.RecordConstructorArgs.__init__(
            self,
            reward_model=reward_model,
            mode=mode,
            lcb_c=lcb_c,
            cvar_alpha=cvar_alpha,
            standardise=standardise,
            seed=seed,
        )
        gym.Wrapper.__init__(self, env)
        self.reward_model = as_reward_model(reward_model)
        self.reward_model.bind(env)
        self.core = PosteriorRewardCore(self.reward_model, 1, mode, lcb_c, cvar_alpha, standardise, seed)
        self.core.env_names = env_labels(env)
        if not (is_wrapped(env, Monitor) or is_wrapped(env, RecordEpisodeStatistics)):
            warn_missing_monitor(type(self).__name__, f"Wrap the env first: {type(self).__name__}(Monitor(env), ...).")
        self._last_obs: Any = None
        # The info dict of the last episode end and the "episode" entry it held when this
        # wrapper returned it: outer wrappers mutate that same dict, so by the next reset an
        # entry added or replaced by someone outside shows a monitor on the proxy rewards.
        self._ended_info: dict[str, Any] | None = None
        self._inner_episode: Any = None
        self._done_mask = np.zeros(1, dtype=bool)
        self._start_mask = np.ones(1, dtype=bool)

    @property
    def mode(self) -> str:
        """The mode giving the scalar reward."""
        return self.core.mode

    @property
    def standardise(self) -> bool:
        """Whether member rewards are standardised by the label statistics before use."""
        return self.core.standardise

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        """Reset the env; ``seed`` also reseeds member sampling. In ``sample`` mode draws this episode's member."""
        self._check_for_outer_monitor()
        obs, info = self.env.reset(seed=seed, options=options)
        if seed is not None:
            self.core.seed(seed)
        self.core.start_episodes(self._start_mask)
        self._last_obs = obs
        return obs, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        """Step the env and return the posterior reward (a Python float) instead of the env's."""
        if self._last_obs is None:
            raise gym.error.ResetNeeded(f"call reset() before step() on {type(self).__name__}")
        next_obs, env_reward, terminated, truncated, info = self.env.step(action)
        self._done_mask[0] = terminated or truncated
        out = self.core.step(batch_one(self._last_obs), batch_one(action), batch_one(next_obs), self._done_mask,
                             np.array([env_reward], dtype=np.float64))
        info["env_reward"] = float(env_reward)
        info["reward_members"] = out.members[:, 0]
        info["reward_mean"] = float(out.mean[0])
        info["reward_std"] = float(out.std[0])
        if self._done_mask[0]:
            info["proxy_episode"] = out.episodes[0]
            self._ended_info, self._inner_episode = info, info.get("episode")
            self._last_obs = None
        else:
            self._last_obs = next_obs
        return next_obs, float(out.rewards[0]), terminated, truncated, info

    def _check_for_outer_monitor(self) -> None:
        """Warn if an ``info["episode"]`` appeared outside this wrapper at the last episode end."""
        info, self._ended_info = self._ended_info, None
        if info is not None and info.get("episode", self._inner_episode) is not self._inner_episode:
            warn_outer_monitor(
                type(self).__name__, "an episode monitor (SB3 Monitor or gymnasium RecordEpisodeStatistics)"
            )
