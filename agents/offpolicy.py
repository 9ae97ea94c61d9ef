"""What RiskSAC and RiskDQN share: the posterior found through the env, the relabelling buffer,
the risk settings (plain JSON values in the saved zip) and the ``risk/*`` log of each update.

Both optimise a **per-state** risk: at every state s, ρ over the members' action values
Q_1(s, a) … Q_K(s, a) (RiskSAC at the actor's action, RiskDQN for every action, acting
greedily on ρ). RiskPPO's risk is trajectory-level instead: ρ over the members' expected
episode returns J_k(π). The two differ; see docs/offpolicy.md.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.type_aliases import GymEnv
from stable_baselines3.common.vec_env import VecEnv

from ruagent import risk as risk_measures
from ruagent.agents.replay_buffers import DictRelabellingReplayBuffer, RelabellingReplayBuffer
from ruagent.agents.risk_ppo.risk_ppo import (
    find_reward_model,
    find_wrapper_attr,
    normalised_member_probs,
    refuse_double_standardisation,
)
from ruagent.spaces import spaces_equal

__all__ = ["RiskOffPolicyMixin"]

_WRAP_HINT = (
    "wrap the env with ruagent.RewardUncertaintyWrapper(env, reward_model) or the VecEnv with "
    "ruagent.VecRewardUncertaintyWrapper(venv, reward_model)"
)


class RiskOffPolicyMixin:
    """Posterior, buffer and risk bookkeeping for an SB3 off-policy algorithm over K reward members.

    The subclass calls :meth:`_init_risk` in ``__init__`` (before ``_setup_model``) and wraps its
    ``_setup_model`` between :meth:`_prepare_risk_setup` and :meth:`_finish_risk_setup`.
    """

    env: VecEnv | None
    observation_space: spaces.Space
    action_space: spaces.Space
    replay_buffer: Any
    replay_buffer_class: Any
    replay_buffer_kwargs: dict[str, Any]
    policy_kwargs: dict[str, Any]
    n_steps: int
    num_timesteps: int
    _total_timesteps: int
    logger: Any

    def _init_risk(
        self,
        n_members: int | None,
        member_probs: Any,
        risk: str | risk_measures.RiskMeasure,
        risk_kwargs: dict[str, float] | None,
        risk_anneal_fraction: float,
        standardise_rewards: bool,
    ) -> None:
        measure = risk_measures.make(risk, **(risk_kwargs or {}))  # validates name and parameters now
        if not 0.0 <= float(risk_anneal_fraction) <= 1.0:
            raise ValueError(f"risk_anneal_fraction must be in [0, 1], got {risk_anneal_fraction}")
        # Plain JSON-able attributes, so SB3's save stores them without pickling objects.
        self.risk = measure.name
        self.risk_kwargs = dict(measure.params)
        self.risk_anneal_fraction = float(risk_anneal_fraction)
        self.standardise_rewards = bool(standardise_rewards)
        self.n_members = None if n_members is None else int(n_members)
        self.member_probs = None if member_probs is None else np.asarray(member_probs, dtype=np.float64).tolist()
        self._risk_updates = 0  # updates made, for risk_log_interval

    # ------------------------------------------------------------------ setup
    def _prepare_risk_setup(self) -> None:
        """Before SB3's ``_setup_model``: K, member probabilities, the buffer class and the policy's K."""
        name = type(self).__name__
        if self.n_steps != 1:
            raise ValueError(
                f"{name} does not support n-step returns (n_steps={self.n_steps}): member rewards are computed "
                "per sampled transition; use n_steps=1"
            )
        if self.env is not None:
            self._read_posterior(self.env)
        if self.n_members is None:
            raise ValueError(f"{name} could not infer n_members (K): pass n_members=K, or {_WRAP_HINT}")
        self.member_probs = normalised_member_probs(self.member_probs, self.n_members)
        if self.replay_buffer_class is None:
            dict_obs = isinstance(self.observation_space, spaces.Dict)
            self.replay_buffer_class = DictRelabellingReplayBuffer if dict_obs else RelabellingReplayBuffer
        if not issubclass(self.replay_buffer_class, (RelabellingReplayBuffer, DictRelabellingReplayBuffer)):
            raise TypeError(
                f"{name} needs a replay buffer that scores samples with the posterior, got "
                f"{self.replay_buffer_class.__name__}; use ruagent.agents.replay_buffers.RelabellingReplayBuffer "
                "(or leave replay_buffer_class=None)"
            )
        self.replay_buffer_kwargs = {**self.replay_buffer_kwargs, "n_members": self.n_members}
        self.policy_kwargs = {**self.policy_kwargs, "n_members": self.n_members}

    def _finish_risk_setup(self) -> None:
        """After SB3's ``_setup_model``: the measure object and the buffer's posterior."""
        self.risk_measure = risk_measures.make(self.risk, **self.risk_kwargs)
        self._attach_posterior()

    def _read_posterior(self, env: VecEnv) -> None:
        """Fill K and member probabilities from the env's reward model; check K and the spaces."""
        model = find_reward_model(env)
        if model is None:
            return
        name = type(self).__name__
        if self.n_members is not None and self.n_members != model.n_members:
            raise ValueError(
                f"{name} has n_members={self.n_members} but the env's reward model has {model.n_members} members; "
                "pass n_members=None to infer it, or wrap the env with the posterior this model was trained on"
            )
        for what, mine, its in (
            ("observation", env.observation_space, model.observation_space),
            ("action", env.action_space, model.action_space),
        ):
            if not spaces_equal(mine, its):
                raise ValueError(
                    f"{name} relabels stored transitions with the reward model, which takes {what}s from {its}, "
                    f"but the agent's env gives {mine}: a wrapper outside the RewardUncertaintyWrapper changes "
                    "them. Put observation/action wrappers inside the reward-uncertainty wrapper (VecNormalize "
                    "outside is fine)"
                )
        self.n_members = int(model.n_members)
        if self.member_probs is None:
            self.member_probs = np.asarray(model.member_probs, dtype=np.float64).tolist()
        refuse_double_standardisation(env, self.standardise_rewards)
        if self.standardise_rewards and getattr(model, "reward_loc", None) is None:
            raise ValueError(
                "standardise_rewards=True needs the reward model's label statistics (reward_loc), but it has none; "
                "fit the reward model on labels first, or pass standardise_rewards=False"
            )

    def _attach_posterior(self) -> None:
        """Give the replay buffer the env's posterior (it scores every sampled batch)."""
        if self.replay_buffer is None or not hasattr(self.replay_buffer, "attach"):
            return
        model = None if self.env is None else find_reward_model(self.env)
        # the wrapper's own standardisation applies to the member rewards it hands out; the buffer matches it
        wrapper_standardises = self.env is not None and bool(find_wrapper_attr(self.env, "standardise"))
        self.replay_buffer.attach(model, standardise=self.standardise_rewards or wrapper_standardises)

    def set_env(self, env: GymEnv, force_reset: bool = True) -> None:
        super().set_env(env, force_reset)  # type: ignore[misc]
        self._read_posterior(self.env)
        self._attach_posterior()

    def load_replay_buffer(self, path: Any, truncate_last_traj: bool = True) -> None:
        """SB3's, then the env's posterior is attached (a saved buffer holds transitions, not the posterior)."""
        super().load_replay_buffer(path, truncate_last_traj)  # type: ignore[misc]
        if not hasattr(self.replay_buffer, "attach"):
            raise TypeError(
                f"{path} holds a {type(self.replay_buffer).__name__}, which stores rewards instead of relabelling; "
                f"{type(self).__name__} needs a buffer saved by a risk agent"
            )
        self._attach_posterior()

    def _excluded_save_params(self) -> list[str]:
        # Rebuilt from the JSON-able ``risk``/``risk_kwargs`` in _setup_model.
        return [*super()._excluded_save_params(), "risk_measure", "_risk_probs"]  # type: ignore[misc]

    # ------------------------------------------------------------------ risk
    def current_risk_measure(self) -> risk_measures.RiskMeasure:
        """The risk measure at this point of training (annealed from the mean if asked)."""
        if self.risk_anneal_fraction <= 0.0:
            return self.risk_measure
        progress = self.num_timesteps / max(self._total_timesteps, 1)
        return self.risk_measure.annealed(progress / self.risk_anneal_fraction)

    @property
    def risk_probs(self) -> np.ndarray | None:
        """(K,) member probabilities, or None when they are uniform (the torch risk's faster path)."""
        cached = getattr(self, "_risk_probs", None)
        if cached is None or cached[0] is not self.member_probs:  # member_probs is replaced, never mutated
            probs = np.asarray(self.member_probs, dtype=np.float64)
            self._risk_probs = (self.member_probs, None if np.all(probs == probs[0]) else probs)
        return self._risk_probs[1]

    #: the ``risk/*`` statistics are computed from one update's batch in this many (they cost a numpy risk
    #: evaluation with weights; SAC updates every env step, and the logger keeps only the last value anyway)
    risk_log_interval: ClassVar[int] = 10

    def _risk_log_due(self) -> bool:
        """Whether the update just made should record the ``risk/*`` statistics (every ``risk_log_interval``)."""
        self._risk_updates += 1
        return (self._risk_updates - 1) % self.risk_log_interval == 0

    def _record_risk(self, member_values: np.ndarray, measure: risk_measures.RiskMeasure) -> None:
        """Log the per-state analogues of RiskPPO's ``risk/*`` tags, averaged over a batch of states.

        :param member_values: (K, B) the members' values at B states (at the action the policy takes).
        """
        probs = np.asarray(self.member_probs)
        values = np.asarray(member_values, dtype=np.float64)
        value, weights = measure(values, probs=probs)
        mean_value = probs @ values
        positive = np.clip(weights, 0.0, None)
        positive = positive / np.maximum(positive.sum(axis=0, keepdims=True), 1e-12)
        with np.errstate(divide="ignore", invalid="ignore"):
            entropy = -np.where(positive > 0, positive * np.log(positive), 0.0).sum(axis=0)
        self.logger.record("risk/value", float(value.mean()))
        self.logger.record("risk/mean_value", float(mean_value.mean()))
        self.logger.record("risk/J_min", float(values.min(axis=0).mean()))
        self.logger.record("risk/J_max", float(values.max(axis=0).mean()))
        self.logger.record("risk/J_std", float(np.sqrt(probs @ (values - mean_value) ** 2).mean()))
        self.logger.record("risk/weight_entropy", float(entropy.mean()) + 0.0)  # no "-0"
        for name, param in measure.params.items():
            self.logger.record(f"risk/{name}", param)

    def _record_member_rewards(self, rewards: np.ndarray) -> None:
        """Log the spread of the relabelled member rewards of a batch (B, K): ``risk/reward_std``."""
        probs = np.asarray(self.member_probs)
        rewards = np.asarray(rewards, dtype=np.float64)
        mean = rewards @ probs
        self.logger.record("risk/reward_std", float(np.sqrt(((rewards - mean[:, None]) ** 2) @ probs).mean()))
