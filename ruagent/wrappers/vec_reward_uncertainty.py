"""SB3 VecEnv skin of the posterior-reward core: one posterior call per step for all sub-envs."""

from __future__ import annotations

import os
import sys
from types import FrameType
from typing import Any

import numpy as np
from gymnasium.wrappers import RecordEpisodeStatistics
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper, VecMonitor, VecNormalize
from stable_baselines3.common.vec_env.base_vec_env import VecEnvStepReturn

from ruagent.reward_models.base import RewardModel
from ruagent.wrappers.core import (
    PosteriorRewardCore,
    as_reward_model,
    env_labels,
    replace_rows,
    warn_missing_monitor,
    warn_outer_monitor,
)

__all__ = ["VecRewardUncertaintyWrapper"]


class VecRewardUncertaintyWrapper(VecEnvWrapper):
    """VecEnv twin of :class:`~ruagent.wrappers.RewardUncertaintyWrapper`.

    Same parameters, modes and info keys; for B = ``num_envs`` sub-envs it makes ONE
    ``reward_model.predict`` call per step on the (B, ...) batch, and takes the next
    observation of a finished episode from ``infos[i]["terminal_observation"]`` (SB3
    auto-resets, so the returned obs is already the next episode's first). Rewards are a
    (B,) float32 array. Sub-env i samples members with seed ``seed + i``, so it gives the
    same rewards as a ``RewardUncertaintyWrapper`` seeded with ``seed + i``.

    Place it below ``VecNormalize`` (``VecNormalize(VecRewardUncertaintyWrapper(venv, ...))``):
    the posterior must see raw observations. A ``VecMonitor`` placed *above* it would record
    proxy returns as ``info["episode"]``; the first ``step_wait`` looks at its callers for one
    and warns once (:class:`~ruagent.wrappers.OuterMonitorWarning`). The env's ``reward_features`` (if the model uses
    them) are taken from sub-env 0: they must be a function of the transition alone.

    :param venv: the VecEnv to wrap; its sub-envs should be wrapped in ``Monitor``
        (``make_vec_env`` does that) or it should sit on a ``VecMonitor``.
    :param seed: seed of member sampling; ``seed(s)`` reseeds it (sub-env i with s + i).
    See :class:`~ruagent.wrappers.RewardUncertaintyWrapper` for the rest.
    """

    def __init__(
        self,
        venv: VecEnv,
        reward_model: RewardModel | str | os.PathLike,
        mode: str = "mean",
        lcb_c: float = 1.0,
        cvar_alpha: float = 0.1,
        standardise: bool = False,
        seed: int | None = None,
    ) -> None:
        super().__init__(venv)
        _refuse_normalised_observations(venv)
        self.reward_model = as_reward_model(reward_model)
        self.reward_model.bind(venv)  # checks spaces; env features come from sub-env 0 (VecEnv.get_attr)
        self.core = PosteriorRewardCore(self.reward_model, venv.num_envs, mode, lcb_c, cvar_alpha, standardise, seed)
        self.core.env_names = env_labels(venv)
        if not _is_monitored(venv):
            warn_missing_monitor(
                type(self).__name__,
                f"Build the VecEnv with make_vec_env (it adds Monitor) or wrap it: {type(self).__name__}("
                "VecMonitor(venv), ...).",
            )
        self._last_obs: Any = None
        self._actions: np.ndarray | None = None
        self._all_envs = np.ones(self.num_envs, dtype=bool)
        self._callers_checked = False

    @property
    def mode(self) -> str:
        """The mode giving the scalar reward."""
        return self.core.mode

    @property
    def standardise(self) -> bool:
        """Whether member rewards are standardised by the label statistics before use."""
        return self.core.standardise

    def seed(self, seed: int | None = None) -> list[int | None]:
        """Seed the sub-envs (SB3: applied at the next reset) and member sampling (sub-env i: seed + i)."""
        self.core.seed(seed)
        return self.venv.seed(seed)

    def reset(self) -> Any:
        """Reset every sub-env; in ``sample`` mode draws each one's member for the new episode."""
        obs = self.venv.reset()
        self.core.start_episodes(self._all_envs)
        self._last_obs = obs
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)
        self.venv.step_async(actions)

    def step_wait(self) -> VecEnvStepReturn:
        if self._last_obs is None or self._actions is None:
            raise RuntimeError(f"call reset() before step() on {type(self).__name__}")
        if not self._callers_checked:
            self._callers_checked = True
            if _outer_vec_monitor(self, sys._getframe(1)) is not None:
                warn_outer_monitor(type(self).__name__, "a VecMonitor")
        obs, env_rewards, dones, infos = self.venv.step_wait()
        next_obs = obs
        if dones.any():
            next_obs = replace_rows(obs, {int(i): _terminal_observation(infos, i) for i in np.flatnonzero(dones)})
        out = self.core.step(self._last_obs, self._actions, next_obs, dones, env_rewards)
        members_by_env = np.ascontiguousarray(out.members.T)  # (B, K): each row a contiguous (K,) view
        for info, members, mean, std, env_reward in zip(
            infos, members_by_env, out.mean.tolist(), out.std.tolist(), env_rewards.tolist()
        ):
            info["env_reward"] = env_reward
            info["reward_members"] = members
            info["reward_mean"] = mean
            info["reward_std"] = std
        for i, episode in out.episodes.items():
            infos[i]["proxy_episode"] = episode
        if out.episodes:
            self.core.start_episodes(dones)
        self._last_obs = obs
        self._actions = None
        return obs, out.rewards, dones, infos


def _terminal_observation(infos: list[dict], i: int) -> Any:
    try:
        return infos[i]["terminal_observation"]
    except KeyError:
        raise KeyError(
            f"sub-env {i} finished an episode but its info has no 'terminal_observation'; "
            "VecRewardUncertaintyWrapper needs an SB3 VecEnv (DummyVecEnv, SubprocVecEnv) that records it."
        ) from None


def _outer_vec_monitor(wrapper: VecEnvWrapper, frame: FrameType | None) -> VecMonitor | None:
    """A VecMonitor above ``wrapper`` among the callers of its ``step_wait``, or None.

    A VecEnvWrapper cannot see the wrappers above it, but they call it: each one's
    ``step_wait`` is a frame on the stack whose ``self`` is that wrapper. Looked at once, on
    the first step, so the cost is nil.
    """
    while frame is not None:
        caller = frame.f_locals.get("self")
        if isinstance(caller, VecMonitor) and _wraps(caller, wrapper):
            return caller
        frame = frame.f_back
    return None


def _wraps(outer: VecEnvWrapper, inner: VecEnv) -> bool:
    layer: VecEnv = outer
    while isinstance(layer, VecEnvWrapper):
        if layer.venv is inner:
            return True
        layer = layer.venv
    return False


def _is_monitored(venv: VecEnv) -> bool:
    layer = venv
    while isinstance(layer, VecEnvWrapper):
        if isinstance(layer, VecMonitor):
            return True
        layer = layer.venv
    return all(a or b for a, b in zip(venv.env_is_wrapped(Monitor), venv.env_is_wrapped(RecordEpisodeStatistics)))


def _refuse_normalised_observations(venv: VecEnv) -> None:
    layer = venv
    while isinstance(layer, VecEnvWrapper):
        if isinstance(layer, VecNormalize) and layer.norm_obs:
            raise ValueError(
                "VecRewardUncertaintyWrapper sits on a VecNormalize that normalises observations, but the reward "
                "posterior was fitted on raw ones; put it below: VecNormalize(VecRewardUncertaintyWrapper(venv, ...))."
            )
        layer = layer.venv
