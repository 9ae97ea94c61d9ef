"""The posterior-reward core shared by both wrapper skins.

:class:`PosteriorRewardCore` turns a batch of B transitions into the scalar reward the
agent sees, with one batched call to the reward posterior: member rewards ``(K, B)``,
their probability-weighted mean and std ``(B,)``, and the scalar ``(B,)`` of the chosen
mode. It also keeps, per env, the member sampled for the current episode, the proxy
episode return and a random generator. :class:`~ruagent.wrappers.RewardUncertaintyWrapper`
(gymnasium, B = 1) and :class:`~ruagent.wrappers.VecRewardUncertaintyWrapper` (SB3 VecEnv,
B = n_envs) are thin skins over it, so both give the same rewards for the same members.

Modes (the scalar the agent sees, per step, from the K member rewards r_k and the member
probabilities p_k of the posterior):

- ``mean``: the posterior mean of the reward (analytic where the family has one, e.g. the
  linear family's φᵀμ; else Σ p_k r_k over the members).
- ``sample``: r_k for one member k ~ p drawn at each episode start (Thompson sampling over
  reward hypotheses, as in posterior sampling for RL: Osband, Russo & Van Roy, NeurIPS 2013).
- ``sample_step``: a fresh k ~ p every step.
- ``lcb``: mean − c·std with the posterior's mean and std (analytic where available), a lower
  confidence bound.
- ``worst``: min over members with p_k > 0 (:func:`ruagent.risk.worst`).
- ``cvar``: CVaR_α over members (:func:`ruagent.risk.cvar`; Rockafellar & Uryasev, 2000).

The risk modes call :mod:`ruagent.risk`, the one implementation also used by the agents.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from typing import Any

import numpy as np

from ruagent import risk
from ruagent.reward_models.base import RewardModel, load_reward_model, member_moments

__all__ = [
    "MODES",
    "MissingMonitorWarning",
    "NonFiniteRewardError",
    "OuterMonitorWarning",
    "PosteriorRewardCore",
    "PosteriorRewards",
    "as_reward_model",
    "batch_one",
    "env_labels",
    "replace_rows",
    "warn_missing_monitor",
    "warn_outer_monitor",
]

MODES = ("mean", "sample", "sample_step", "lcb", "worst", "cvar")
#: modes that pick one member per env instead of scalarising over all of them
_SAMPLING_MODES = ("sample", "sample_step")


class MissingMonitorWarning(UserWarning):
    """No episode monitor records the env's true return inside a reward-uncertainty wrapper."""


class OuterMonitorWarning(UserWarning):
    """An episode monitor sits outside a reward-uncertainty wrapper, so it records proxy returns."""


class NonFiniteRewardError(FloatingPointError):
    """A NaN or inf reward at a wrapper step: the env's own reward, or the scalar handed to the agent."""


#: whether this process has already warned about an outer monitor (see :func:`warn_outer_monitor`)
_outer_monitor_reported = False


@dataclasses.dataclass(frozen=True)
class PosteriorRewards:
    """What the core returns for one step of B envs.

    :ivar rewards: (B,) float32, the scalar reward of the mode (what the agent sees).
    :ivar members: (K, B) float32, every member's reward (standardised if asked).
    :ivar mean: (B,) float64, the posterior mean of the reward (``RewardModel.predict_moments``:
        analytic where the family has it, else the probability-weighted member mean).
    :ivar std: (B,) float64, the posterior standard deviation, likewise.
    :ivar episodes: env index -> proxy episode summary, for the envs whose episode ended:
        ``{"r": proxy return (sum of ``rewards``), "l": length, "r_mean": sum of ``mean``,
        "r_members": (K,) float32 per-member returns}``.
    """

    rewards: np.ndarray
    members: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    episodes: dict[int, dict[str, Any]]


class PosteriorRewardCore:
    """Scalar rewards from a reward posterior for B envs, with per-env episode state.

    :param reward_model: the posterior (already bound to the env by the skin).
    :param n_envs: B, the number of envs stepped together.
    :param mode: one of :data:`MODES` (see the module docstring).
    :param lcb_c: c in ``lcb`` = mean − c·std; >= 0.
    :param cvar_alpha: α of ``cvar``, the probability mass of the worst members; in (0, 1].
    :param standardise: if True, map member rewards through ``reward_model.standardise``
        (per-member location/scale of the label data) before anything else, so members
        that differ by a constant offset do not look risky.
    :param seed: env i samples members from ``np.random.default_rng(seed + i)`` (SB3's
        per-env seeding convention); None draws fresh entropy.
    """

    def __init__(
        self,
        reward_model: RewardModel,
        n_envs: int,
        mode: str = "mean",
        lcb_c: float = 1.0,
        cvar_alpha: float = 0.1,
        standardise: bool = False,
        seed: int | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        if not float(lcb_c) >= 0.0:
            raise ValueError(f"lcb_c must be >= 0 (mean - c*std), got {lcb_c}")
        if not 0.0 < float(cvar_alpha) <= 1.0:
            raise ValueError(f"cvar_alpha must be in (0, 1] (the worst fraction of members), got {cvar_alpha}")
        if int(n_envs) < 1:
            raise ValueError(f"n_envs must be >= 1, got {n_envs}")
        if standardise and (reward_model.reward_loc is None or reward_model.reward_scale is None):
            warnings.warn(
                f"standardise=True but this {type(reward_model).__name__} has no label-data statistics "
                "(reward_loc/reward_scale are set by fitting), so member rewards are left as they are; "
                "fit the model first or pass standardise=False.",
                UserWarning,
                stacklevel=3,
            )
        self.reward_model = reward_model
        self.n_envs = int(n_envs)
        self.mode = mode
        self.lcb_c = float(lcb_c)
        self.cvar_alpha = float(cvar_alpha)
        self.standardise = bool(standardise)
        self._risk_measure = {
            "worst": risk.make("worst"),
            "cvar": risk.make("cvar", alpha=self.cvar_alpha),
        }.get(mode)
        k, b = reward_model.n_members, self.n_envs
        self._env_index = np.arange(b)
        self._sampled_member = np.zeros(b, dtype=np.int64)
        # per-env episode sums in one array, so starting episodes zero them with one write:
        # proxy return, posterior-mean return, then the K member returns
        self._returns = np.zeros((b, 2 + k))
        self._proxy_return, self._mean_return, self._member_returns = (
            self._returns[:, 0], self._returns[:, 1], self._returns[:, 2:]
        )
        self._length = np.zeros(b, dtype=np.int64)
        self._steps = 0  # steps since construction (every env steps at once), named in errors
        #: how errors name env i (the skins set the env ids)
        self.env_names = [f"env {i}" for i in range(b)]
        self._rngs: list[np.random.Generator] = []
        self._checked_probs: np.ndarray | None = None
        self._uniform = False
        self.seed(seed)

    # ------------------------------------------------------------------ seeding and episodes
    def seed(self, seed: int | None = None) -> None:
        """Reseed member sampling: env i draws from ``np.random.default_rng(seed + i)``."""
        self._rngs = [np.random.default_rng(None if seed is None else seed + i) for i in range(self.n_envs)]

    def start_episodes(self, starting: np.ndarray) -> None:
        """Zero the episode bookkeeping of the envs where ``starting`` (B,) is True; in
        ``sample`` mode draw each such env's member for the new episode."""
        starting = np.asarray(starting, dtype=bool)
        assert starting.shape == (self.n_envs,), (starting.shape, self.n_envs)
        self._returns[starting] = 0.0
        self._length[starting] = 0
        if self.mode == "sample":
            indices = np.flatnonzero(starting)
            self._sampled_member[indices] = self._draw_members(indices)

    def _draw_members(self, env_indices: np.ndarray) -> np.ndarray:
        """One member k ~ member_probs per listed env, each from that env's own generator.

        Inverse-CDF sampling: one uniform per env, so a gym wrapper seeded with s + i draws
        exactly the members of sub-env i of a VecEnv wrapper seeded with s.
        """
        cdf = np.cumsum(self.reward_model.member_probs)
        uniforms = np.array([self._rngs[i].random() for i in env_indices]) * cdf[-1]
        # side="right" never picks a zero-probability member (its cdf equals its predecessor's)
        return np.minimum(np.searchsorted(cdf, uniforms, side="right"), len(cdf) - 1)

    def _probs_are_uniform(self, probs: np.ndarray) -> bool:
        # re-check only when the model's probs array is replaced (fitting and loading assign new arrays)
        if probs is not self._checked_probs:
            self._checked_probs, self._uniform = probs, bool(np.all(probs == probs[0]))
        return self._uniform

    def _where(self, i: int) -> str:
        return f"{self.env_names[i]}, step {self._steps} (episode step {int(self._length[i]) + 1})"

    @property
    def sampled_members(self) -> np.ndarray:
        """(B,) the member each env follows this episode (``sample`` mode; zeros otherwise)."""
        return self._sampled_member.copy()

    # ------------------------------------------------------------------ the step
    def step(
        self, obs: Any, action: Any, next_obs: Any, dones: np.ndarray, env_rewards: np.ndarray | None = None
    ) -> PosteriorRewards:
        """Posterior rewards for B transitions, with ONE call to the reward model.

        :param obs: batched observations (leading axis B; dict/tuple of batches for Dict/Tuple).
        :param action: (B, ...) actions.
        :param next_obs: batched next observations (the true last observation at episode ends).
        :param dones: (B,) bool, True where the episode ended with this transition.
        :param env_rewards: (B,) the env's own rewards, checked to be finite (they go to
            ``info["env_reward"]`` and to the Monitor's true return).
        :raises NonFiniteRewardError: naming the env and the step, for a NaN/inf env reward or a
            NaN/inf scalar reward (e.g. label statistics of NaN under ``standardise=True``).
        """
        b = self.n_envs
        self._steps += 1
        if env_rewards is not None and not _all_finite(env_rewards):
            i = int(np.flatnonzero(~np.isfinite(env_rewards))[0])
            raise NonFiniteRewardError(
                f"{self._where(i)} returned a non-finite reward {float(env_rewards[i])} (it would become "
                "info['env_reward'] and the Monitor's true return); fix the env's reward computation"
            )
        members, mean, std = self.reward_model.predict_moments(obs, action, next_obs)
        k = self.reward_model.n_members
        assert members.shape == (k, b), f"reward model gave shape {members.shape}, expected (K={k}, B={b})"
        probs = self.reward_model.member_probs
        if self.standardise:
            # per-member offsets have no analytic counterpart: moments of the aligned draws
            members = self.reward_model.standardise(members)
            mean, std = member_moments(members, probs)
        if self.mode == "mean":
            rewards = mean.astype(np.float32)
        elif self.mode == "lcb":
            rewards = (mean - self.lcb_c * std).astype(np.float32)
        elif self._risk_measure is not None:
            # uniform probs go in as None: same maths, without re-validating them every step
            risk_probs = None if self._probs_are_uniform(probs) else probs
            rewards = self._risk_measure.value(members, risk_probs).astype(np.float32)
        else:
            if self.mode == "sample_step":
                self._sampled_member[:] = self._draw_members(self._env_index)
            rewards = members[self._sampled_member, self._env_index]
        assert rewards.shape == (b,) and rewards.dtype == np.float32, (rewards.shape, rewards.dtype)
        if not _all_finite(rewards):
            i = int(np.flatnonzero(~np.isfinite(rewards))[0])
            raise NonFiniteRewardError(
                f"the posterior reward handed to the agent is {float(rewards[i])} at {self._where(i)} (mode "
                f"{self.mode!r}, standardise={self.standardise}, reward_loc={self.reward_model.reward_loc}); "
                "refit the reward model on finite, non-empty labels"
            )
        self._proxy_return += rewards
        self._mean_return += mean
        self._member_returns += members.T
        self._length += 1
        episodes = {}
        for i in np.flatnonzero(dones):
            episodes[int(i)] = {
                "r": float(self._proxy_return[i]),
                "l": int(self._length[i]),
                "r_mean": float(self._mean_return[i]),
                "r_members": self._member_returns[i].astype(np.float32),
            }
        return PosteriorRewards(rewards, members, mean, std, episodes)


def _all_finite(values: np.ndarray) -> bool:
    """Whether every value is finite, in one reduction on the usual path: a sum is finite iff
    every term is, unless it overflows (summed in float64, float32 rewards cannot), which the
    exact check then clears."""
    return math.isfinite(values.sum(dtype=np.float64)) or bool(np.isfinite(values).all())


# ---------------------------------------------------------------------- helpers for the skins
def as_reward_model(reward_model: RewardModel | str | os.PathLike) -> RewardModel:
    """``reward_model`` itself, or the model saved at that path (``ruagent.load_reward_model``)."""
    if isinstance(reward_model, RewardModel):
        return reward_model
    if isinstance(reward_model, (str, os.PathLike)):
        return load_reward_model(reward_model)
    raise TypeError(
        f"reward_model must be a ruagent RewardModel or the path of a saved one, got {type(reward_model).__name__}; "
        "build one with ruagent.EnsembleRewardModel / BayesianLinearRewardModel or pass the file it was saved to."
    )


def warn_missing_monitor(wrapper_name: str, fix: str) -> None:
    """Say (once per call site) why a missing inner Monitor misleads evaluation."""
    warnings.warn(
        f"{wrapper_name}: no Monitor (stable_baselines3.common.monitor.Monitor, VecMonitor or "
        "gymnasium.wrappers.RecordEpisodeStatistics) sits inside this wrapper, so nothing records the env's "
        "true episode return: SB3 would add its Monitor outside and its ep_rew_mean, evaluate_policy and "
        f"info['episode'] would report the proxy rewards the agent sees. {fix}",
        MissingMonitorWarning,
        stacklevel=3,
    )


def warn_outer_monitor(wrapper_name: str, monitor: str) -> None:
    """Say, once per process, that a monitor outside the wrapper reports proxy returns as true ones.

    Once per process, not per wrapper: every sub-env of a VecEnv has its own wrapper and
    would otherwise repeat the same warning n_envs times.
    """
    global _outer_monitor_reported
    if _outer_monitor_reported:
        return
    _outer_monitor_reported = True
    warnings.warn(
        f"{wrapper_name}: {monitor} sits OUTSIDE this wrapper, so the episode returns it records (info['episode'], "
        "SB3's rollout/ep_rew_mean, evaluate_policy) are sums of the proxy rewards the agent sees, not the env's true "
        f"return. Put the monitor inside: {wrapper_name}(Monitor(env), ...), VecRewardUncertaintyWrapper("
        "VecMonitor(venv), ...), or make_vec_env(env_id, wrapper_class=...), which applies Monitor first; the "
        "proxy return is in info['proxy_episode'].",
        OuterMonitorWarning,
        stacklevel=3,
    )


def env_labels(env: Any) -> list[str]:
    """How errors name the envs under a skin: the env id of a gymnasium env, or "<id> (sub-env i)"
    for each sub-env of an SB3 VecEnv (one ``get_attr`` call, at construction)."""
    if hasattr(env, "num_envs") and hasattr(env, "get_attr"):
        try:
            spec_ids = [getattr(spec, "id", None) for spec in env.get_attr("spec")]
        except Exception:  # a VecEnv whose sub-envs do not answer: plain indices
            spec_ids = [None] * env.num_envs
        return [f"{spec_id or 'VecEnv'} (sub-env {i})" for i, spec_id in enumerate(spec_ids)]
    spec = getattr(env, "spec", None)
    return [getattr(spec, "id", None) or type(getattr(env, "unwrapped", env)).__name__]


def batch_one(value: Any) -> Any:
    """Add a leading batch axis of 1 to an observation or action (dicts and tuples recursively)."""
    if isinstance(value, dict):
        return {key: batch_one(sub) for key, sub in value.items()}
    if isinstance(value, tuple):
        return tuple(batch_one(sub) for sub in value)
    return np.asarray(value)[None]


def replace_rows(batch: Any, rows: dict[int, Any]) -> Any:
    """A copy of a batched observation with row i replaced by ``rows[i]`` (an unbatched obs)."""
    if isinstance(batch, dict):
        return {key: replace_rows(sub, {i: row[key] for i, row in rows.items()}) for key, sub in batch.items()}
    if isinstance(batch, tuple):
        return tuple(replace_rows(sub, {i: row[j] for i, row in rows.items()}) for j, sub in enumerate(batch))
    out = np.array(batch, copy=True)
    for i, row in rows.items():
        out[i] = row
    return out
