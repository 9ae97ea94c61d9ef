"""RiskPPO: PPO that optimises a risk measure of the policy's value over reward hypotheses.

The env is wrapped by :class:`ruagent.RewardUncertaintyWrapper` (or its VecEnv twin), which
puts the K member rewards of every transition in ``info["reward_members"]``. RiskPPO keeps
K value heads V_k, runs GAE per member (A_k, R_k), estimates each member's policy value J_k
and follows the gradient of ρ(J_1..J_K) for a risk measure ρ from :mod:`ruagent.risk`:

    ∇ρ = Σ_k (∂ρ/∂J_k) ∇J_k,  so the PPO advantage is A = Σ_k w_k A_k with w = ∂ρ/∂J.

This is the trajectory-level risk of PG-BROIL (Javed, Brown, Sharma, Zhu, Balakrishna,
Petrik, Dragan & Goldberg, "Policy Gradient Bayesian Robust Optimization for Imitation
Learning", ICML 2021), here with PPO's clipped surrogate (Schulman et al., 2017) and any of
ruagent's risk measures. The risk level can be annealed from the mean to the target over
the first part of training, as CeSoR recommends (Greenberg, Chow, Ghavamzadeh & Mannor,
"Efficient Risk-Averse Reinforcement Learning", NeurIPS 2022). With K = 1 and ρ = mean it
is PPO, parameter for parameter.
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback
from stable_baselines3.common.utils import explained_variance, obs_as_tensor
from stable_baselines3.common.vec_env import VecEnv
from torch.nn import functional as F

from ruagent import risk as risk_measures
from ruagent.agents.risk_ppo.buffers import DictRiskRolloutBuffer, RiskRolloutBuffer
from ruagent.agents.risk_ppo.policies import CnnPolicy, MlpPolicy, MultiInputPolicy
from ruagent.reward_models.base import align_member_offsets

__all__ = ["RiskPPO"]

SelfRiskPPO = TypeVar("SelfRiskPPO", bound="RiskPPO")

_WRAP_HINT = (
    "wrap the env with ruagent.RewardUncertaintyWrapper(env, reward_model) or the VecEnv with "
    "ruagent.VecRewardUncertaintyWrapper(venv, reward_model)"
)


def find_wrapper_attr(env: VecEnv, name: str) -> Any | None:
    """Attribute ``name`` of the posterior wrapper behind ``env`` (the VecEnv skin or a sub-env's), or None."""
    try:
        return getattr(env, name)  # VecRewardUncertaintyWrapper, found through VecEnvWrapper chains
    except AttributeError:
        pass
    if env.has_attr(name):
        return env.get_attr(name, indices=[0])[0]
    return None


def normalised_member_probs(member_probs: Any, n_members: int) -> list[float]:
    """The K member probabilities as a list summing to 1 (uniform for None); a clear error for bad ones."""
    if member_probs is None:
        return np.full(n_members, 1.0 / n_members).tolist()
    probs = np.asarray(member_probs, dtype=np.float64)
    if probs.shape != (n_members,) or not np.isfinite(probs).all() or (probs < 0).any() or probs.sum() <= 0:
        raise ValueError(
            f"member_probs must be {n_members} non-negative finite numbers (one per member), "
            f"got {member_probs!r}; pass None to take the reward model's"
        )
    return (probs / probs.sum()).tolist()


def refuse_double_standardisation(env: VecEnv, standardise_rewards: bool) -> None:
    """An agent that aligns member rewards itself must not sit on a wrapper that already does."""
    if standardise_rewards and find_wrapper_attr(env, "standardise"):
        raise ValueError(
            "standardise_rewards=True, but the wrapper already standardises member rewards (standardise=True); "
            "standardise in one place: pass standardise_rewards=False here, or standardise=False to the wrapper"
        )


def find_reward_model(env: VecEnv) -> Any | None:
    """The reward posterior behind ``env``, or None."""
    return find_wrapper_attr(env, "reward_model")


class RiskPPO(PPO):
    """PPO over K reward hypotheses, optimising ``risk`` of the members' policy values.

    All of :class:`stable_baselines3.PPO`'s parameters apply, as keywords after ``policy`` and
    ``env`` (so a positional PPO argument cannot land in a RiskPPO one); the new ones:

    :param n_members: K. None infers it from the wrapped env's reward model
        (``env.reward_model`` or ``env.get_attr("reward_model")``).
    :param member_probs: (K,) posterior probabilities of the members; None takes the reward
        model's ``member_probs`` (uniform if there is no model).
    :param risk: a risk-measure name from :data:`ruagent.risk.RISK_MEASURES` ("mean",
        "cvar", "worst", "mean_std", "entropic", "broil") or a :class:`ruagent.risk.RiskMeasure`.
    :param risk_kwargs: the measure's parameters, e.g. ``{"alpha": 0.05}`` for cvar.
    :param risk_anneal_fraction: fraction of training over which the risk level moves
        linearly from the mean (risk-neutral) to the target; 0 uses the target throughout.
    :param standardise_rewards: shift member rewards to ``r_k − loc_k + Σ_j p_j loc_j`` with the
        reward model's label-data means (``reward_loc``), so constant offsets between members
        carry no risk signal, while the common level (a survival reward) and the spread in
        reward units stay (:meth:`ruagent.RewardModel.standardise`); read again at every
        rollout, so a posterior refitted during training is aligned by its own statistics.
    :param objective_estimate: how J_k is estimated from a rollout: ``"return"`` (default),
        the mean TD(λ) return R_k over episode-start states, or ``"value"``, the mean critic
        value V_k there (over all states when no episode starts in the rollout). See
        :meth:`RiskRolloutBuffer.start_values` for why returns are the default.

    The reward model is not part of the saved model: save it beside the ``.zip``
    (``reward_model.save(path)``) and pass it, or its path, to the wrapper when you load.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": MlpPolicy,
        "CnnPolicy": CnnPolicy,
        "MultiInputPolicy": MultiInputPolicy,
    }

    def __init__(
        self,
        policy: str | type[MlpPolicy],
        env: GymEnv | str,
        *,
        n_members: int | None = None,
        member_probs: Any = None,
        risk: str | risk_measures.RiskMeasure = "cvar",
        risk_kwargs: dict[str, float] | None = None,
        risk_anneal_fraction: float = 0.0,
        standardise_rewards: bool = False,
        objective_estimate: str = "return",
        _init_setup_model: bool = True,
        **ppo_kwargs: Any,
    ):
        super().__init__(policy, env, _init_setup_model=False, **ppo_kwargs)
        measure = risk_measures.make(risk, **(risk_kwargs or {}))  # validates name and parameters now
        if not 0.0 <= float(risk_anneal_fraction) <= 1.0:
            raise ValueError(f"risk_anneal_fraction must be in [0, 1], got {risk_anneal_fraction}")
        if objective_estimate not in ("return", "value"):
            raise ValueError(f"objective_estimate must be 'return' or 'value', got {objective_estimate!r}")
        # Plain JSON-able attributes, so SB3's save stores them without pickling objects.
        self.risk = measure.name
        self.risk_kwargs = dict(measure.params)
        self.risk_anneal_fraction = float(risk_anneal_fraction)
        self.standardise_rewards = bool(standardise_rewards)
        self.objective_estimate = objective_estimate
        self.n_members = None if n_members is None else int(n_members)
        self.member_probs = None if member_probs is None else np.asarray(member_probs, dtype=np.float64).tolist()
        self.reward_loc: list[float] | None = None
        self.reward_scale: list[float] | None = None
        if _init_setup_model:
            self._setup_model()

    # ------------------------------------------------------------------ setup
    def _setup_model(self) -> None:
        if self.env is not None:
            self._read_posterior(self.env)
        if self.n_members is None:
            raise ValueError(f"RiskPPO could not infer n_members (K): pass n_members=K, or {_WRAP_HINT}")
        self.member_probs = normalised_member_probs(self.member_probs, self.n_members)
        if self.standardise_rewards and self.reward_loc is None:
            raise ValueError(
                "standardise_rewards=True needs the reward model's label statistics (reward_loc, reward_scale), "
                "but none were found; fit the reward model on labels first, or pass standardise_rewards=False"
            )
        if self.rollout_buffer_class is None:
            dict_obs = isinstance(self.observation_space, spaces.Dict)
            self.rollout_buffer_class = DictRiskRolloutBuffer if dict_obs else RiskRolloutBuffer
        if not issubclass(self.rollout_buffer_class, (RiskRolloutBuffer, DictRiskRolloutBuffer)):
            raise TypeError(
                f"RiskPPO needs a rollout buffer that stores member rewards, got {self.rollout_buffer_class.__name__}; "
                "use ruagent.agents.risk_ppo.buffers.RiskRolloutBuffer (or leave rollout_buffer_class=None)"
            )
        self.rollout_buffer_kwargs = {**self.rollout_buffer_kwargs, "n_members": self.n_members}
        self.policy_kwargs = {**self.policy_kwargs, "n_members": self.n_members}
        super()._setup_model()
        self.risk_measure = risk_measures.make(self.risk, **self.risk_kwargs)

    def _read_posterior(self, env: VecEnv) -> None:
        """Fill K, member probabilities and label statistics from the env's reward model; check K."""
        model = find_reward_model(env)
        if model is None:
            return
        if self.n_members is not None and self.n_members != model.n_members:
            raise ValueError(
                f"RiskPPO has n_members={self.n_members} but the env's reward model has {model.n_members} members; "
                "pass n_members=None to infer it, or wrap the env with the posterior this model was trained on"
            )
        self.n_members = int(model.n_members)
        if self.member_probs is None:
            self.member_probs = np.asarray(model.member_probs, dtype=np.float64).tolist()
        refuse_double_standardisation(env, self.standardise_rewards)
        if self.standardise_rewards:
            self._take_label_statistics(model)

    def _take_label_statistics(self, model: Any) -> None:
        """Standardise by the reward model's current label statistics (if it has any).

        Read at setup and again at every rollout: a posterior refitted during training (e.g. by
        :class:`~ruagent.preferences.PreferenceLearningCallback`) has new ones.
        """
        if model is not None and getattr(model, "reward_loc", None) is not None:
            self.reward_loc = np.asarray(model.reward_loc, dtype=np.float64).tolist()
            self.reward_scale = np.asarray(model.reward_scale, dtype=np.float64).tolist()

    def set_env(self, env: GymEnv, force_reset: bool = True) -> None:
        super().set_env(env, force_reset)
        self._read_posterior(self.env)

    def _excluded_save_params(self) -> list[str]:
        # Rebuilt from the JSON-able ``risk``/``risk_kwargs`` in _setup_model.
        return [*super()._excluded_save_params(), "risk_measure"]

    # ------------------------------------------------------------------ rollouts
    def _member_rewards(self, infos: list[dict[str, Any]]) -> np.ndarray:
        """(n_envs, K) float32 member rewards of the step just taken, standardised if asked."""
        try:
            members = np.stack([np.asarray(info["reward_members"], dtype=np.float32) for info in infos])
        except KeyError:
            raise ValueError(
                "RiskPPO needs the K member rewards in info['reward_members'] on every step, but the env did not "
                f"provide them; {_WRAP_HINT}"
            ) from None
        if members.shape != (len(infos), self.n_members):
            raise ValueError(
                f"info['reward_members'] has shape {members.shape[1:]} per env but RiskPPO was built for "
                f"n_members={self.n_members}; use the reward model this agent was built with"
            )
        if self.standardise_rewards:
            members = align_member_offsets(members.T, self.reward_loc, self.member_probs).T
        return members

    def _bootstrap_truncated(self, member_rewards: np.ndarray, dones: np.ndarray, infos: list[dict]) -> None:
        """Add γ·V_k(terminal obs) to the member rewards of time-limit truncations (SB3 issue #633), in place."""
        truncated = [
            idx
            for idx, done in enumerate(dones)
            if done and infos[idx].get("terminal_observation") is not None and infos[idx].get("TimeLimit.truncated")
        ]
        if not truncated:
            return
        terminal = [infos[idx]["terminal_observation"] for idx in truncated]
        if isinstance(self.observation_space, spaces.Dict):
            batch = {key: np.stack([obs[key] for obs in terminal]) for key in self.observation_space.spaces}
        else:
            batch = np.stack(terminal)
        with th.no_grad():
            terminal_values = self.policy.predict_values(self.policy.obs_to_tensor(batch)[0]).cpu().numpy()
        assert terminal_values.shape == (len(truncated), self.n_members), terminal_values.shape
        member_rewards[truncated] += self.gamma * terminal_values

    def collect_rollouts(
        self,
        env: VecEnv,
        callback: BaseCallback,
        rollout_buffer: RiskRolloutBuffer,
        n_rollout_steps: int,
    ) -> bool:
        """SB3's rollout loop, storing ``info["reward_members"]`` and K values per step; then risk weights."""
        assert self._last_obs is not None, "No previous observation was provided"
        self.policy.set_training_mode(False)
        n_steps = 0
        rollout_buffer.reset()
        if self.use_sde:
            self.policy.reset_noise(env.num_envs)
        callback.on_rollout_start()
        if self.standardise_rewards:
            self._take_label_statistics(find_reward_model(env))

        while n_steps < n_rollout_steps:
            if self.use_sde and self.sde_sample_freq > 0 and n_steps % self.sde_sample_freq == 0:
                self.policy.reset_noise(env.num_envs)
            with th.no_grad():
                obs_tensor = obs_as_tensor(self._last_obs, self.device)
                actions, values, log_probs = self.policy(obs_tensor)  # values: (n_envs, K)
            actions = actions.cpu().numpy()
            clipped_actions = actions
            if isinstance(self.action_space, spaces.Box):
                if self.policy.squash_output:
                    clipped_actions = self.policy.unscale_action(clipped_actions)
                else:
                    clipped_actions = np.clip(actions, self.action_space.low, self.action_space.high)

            new_obs, rewards, dones, infos = env.step(clipped_actions)
            self.num_timesteps += env.num_envs
            callback.update_locals(locals())
            if not callback.on_step():
                return False
            self._update_info_buffer(infos, dones)
            n_steps += 1
            if isinstance(self.action_space, spaces.Discrete):
                actions = actions.reshape(-1, 1)

            member_rewards = self._member_rewards(infos)
            self._bootstrap_truncated(member_rewards, dones, infos)
            rollout_buffer.add(
                self._last_obs,
                actions,
                rewards,
                self._last_episode_starts,
                values,
                log_probs,
                member_rewards=member_rewards,
            )
            self._last_obs = new_obs
            self._last_episode_starts = dones

        with th.no_grad():
            values = self.policy.predict_values(obs_as_tensor(new_obs, self.device))
        rollout_buffer.compute_returns_and_advantage(last_values=values, dones=dones)
        self._weight_members(rollout_buffer)
        callback.update_locals(locals())
        callback.on_rollout_end()
        return True

    def current_risk_measure(self) -> risk_measures.RiskMeasure:
        """The risk measure at this point of training (annealed from the mean if asked)."""
        if self.risk_anneal_fraction <= 0.0:
            return self.risk_measure
        progress = self.num_timesteps / max(self._total_timesteps, 1)
        return self.risk_measure.annealed(progress / self.risk_anneal_fraction)

    def _weight_members(self, rollout_buffer: RiskRolloutBuffer) -> None:
        """Risk weights w = ∂ρ/∂J at this rollout's J estimate; scalarise the buffer; log."""
        probs = np.asarray(self.member_probs)
        member_values = rollout_buffer.start_values(self.objective_estimate)
        assert member_values.shape == (self.n_members,), member_values.shape
        measure = self.current_risk_measure()
        value, weights = measure(member_values, probs=probs)
        rollout_buffer.combine(weights)

        mean_value = float(probs @ member_values)
        positive = np.clip(weights, 0.0, None) / max(np.clip(weights, 0.0, None).sum(), 1e-12)
        nonzero = positive[positive > 0]
        self.logger.record("risk/value", float(value))
        self.logger.record("risk/mean_value", mean_value)
        self.logger.record("risk/J_min", float(member_values.min()))
        self.logger.record("risk/J_max", float(member_values.max()))
        self.logger.record("risk/J_std", float(np.sqrt(probs @ (member_values - mean_value) ** 2)))
        self.logger.record("risk/weight_entropy", float(-(nonzero * np.log(nonzero)).sum()) + 0.0)  # no "-0"
        for name, param in measure.params.items():
            self.logger.record(f"risk/{name}", param)

    # ------------------------------------------------------------------ training
    def train(self) -> None:
        """PPO's update with K value heads: policy loss on Σ_k w_k A_k, value loss = mean_k MSE(V_k, R_k)."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        clip_range = self.clip_range(self._current_progress_remaining)
        if self.clip_range_vf is not None:
            clip_range_vf = self.clip_range_vf(self._current_progress_remaining)

        entropy_losses, pg_losses, value_losses, clip_fractions = [], [], [], []
        continue_training = True
        for epoch in range(self.n_epochs):
            approx_kl_divs = []
            for rollout_data in self.rollout_buffer.get(self.batch_size):
                actions = rollout_data.actions
                if isinstance(self.action_space, spaces.Discrete):
                    actions = rollout_data.actions.long().flatten()
                values, log_prob, entropy = self.policy.evaluate_actions(rollout_data.observations, actions)
                assert values.shape == rollout_data.returns.shape, (values.shape, rollout_data.returns.shape)

                advantages = rollout_data.advantages
                if self.normalize_advantage and len(advantages) > 1:
                    advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
                ratio = th.exp(log_prob - rollout_data.old_log_prob)
                policy_loss_1 = advantages * ratio
                policy_loss_2 = advantages * th.clamp(ratio, 1 - clip_range, 1 + clip_range)
                policy_loss = -th.min(policy_loss_1, policy_loss_2).mean()
                pg_losses.append(policy_loss.item())
                clip_fractions.append(th.mean((th.abs(ratio - 1) > clip_range).float()).item())

                if self.clip_range_vf is None:
                    values_pred = values
                else:  # clip each member's value change, as PPO clips its one value
                    values_pred = rollout_data.old_values + th.clamp(
                        values - rollout_data.old_values, -clip_range_vf, clip_range_vf
                    )
                # Mean over (B, K) = mean over members of each member's MSE (all have B samples).
                value_loss = F.mse_loss(rollout_data.returns, values_pred)
                value_losses.append(value_loss.item())

                entropy_loss = -th.mean(-log_prob) if entropy is None else -th.mean(entropy)
                entropy_losses.append(entropy_loss.item())
                loss = policy_loss + self.ent_coef * entropy_loss + self.vf_coef * value_loss

                with th.no_grad():  # approximate reverse KL for early stopping (SB3 issue #417)
                    log_ratio = log_prob - rollout_data.old_log_prob
                    approx_kl_div = th.mean((th.exp(log_ratio) - 1) - log_ratio).cpu().numpy()
                    approx_kl_divs.append(approx_kl_div)
                if self.target_kl is not None and approx_kl_div > 1.5 * self.target_kl:
                    continue_training = False
                    if self.verbose >= 1:
                        print(f"Early stopping at step {epoch} due to reaching max kl: {approx_kl_div:.2f}")
                    break

                self.policy.optimizer.zero_grad()
                loss.backward()
                th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
                self.policy.optimizer.step()

            self._n_updates += 1
            if not continue_training:
                break

        explained_var = explained_variance(
            self.rollout_buffer.member_values.flatten(), self.rollout_buffer.member_returns.flatten()
        )
        self.logger.record("train/entropy_loss", np.mean(entropy_losses))
        self.logger.record("train/policy_gradient_loss", np.mean(pg_losses))
        self.logger.record("train/value_loss", np.mean(value_losses))
        self.logger.record("train/approx_kl", np.mean(approx_kl_divs))
        self.logger.record("train/clip_fraction", np.mean(clip_fractions))
        self.logger.record("train/loss", loss.item())
        self.logger.record("train/explained_variance", explained_var)
        if hasattr(self.policy, "log_std"):
            self.logger.record("train/std", th.exp(self.policy.log_std).mean().item())
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/clip_range", clip_range)
        if self.clip_range_vf is not None:
            self.logger.record("train/clip_range_vf", clip_range_vf)

    def learn(
        self: SelfRiskPPO,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "RiskPPO",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfRiskPPO:
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )
