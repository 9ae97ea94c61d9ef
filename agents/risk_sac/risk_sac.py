"""RiskSAC: soft actor-critic whose actor maximises a risk measure of the members' Q values.

The env is wrapped by :class:`ruagent.RewardUncertaintyWrapper` (or its VecEnv twin). RiskSAC
keeps, per twin critic, one Q head per reward hypothesis, Q_k(s, a) for member k's reward, and

- scores every sampled batch with the *current* posterior (the replay buffer relabels: r_k for
  each member, one ``reward_model.predict`` call per batch), so a posterior refitted during
  training applies to the whole buffer;
- trains member k's heads on member k's soft TD target
  y_k = r_k + γ (1 − d) (min over twins of Q̄_k(s', a') − α log π(a'|s')), a' ~ π(·|s');
- trains the actor on E_s[α log π(a|s) − ρ_k(min over twins of Q_k(s, a))], a ~ π(·|s), for a
  risk measure ρ from :mod:`ruagent.risk` (computed differentiably in torch).

The risk is **per state**: ρ of the K members' Q values at each state, not of the members'
episode returns as in :class:`~ruagent.agents.RiskPPO` (trajectory-level). A per-state CVaR
composes risk over time (each step's choice is risk-averse about the members' values from there
on), which is time-inconsistent with a trajectory-level CVaR and more conservative than it: a
state where the members disagree is avoided even when the disagreement would average out over
the episode. See docs/offpolicy.md. With K = 1 and ρ = mean it is SB3's SAC, parameter for
parameter.
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from stable_baselines3 import SAC
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback
from stable_baselines3.common.utils import polyak_update
from torch.nn import functional as F

from ruagent import risk as risk_measures
from ruagent.agents.offpolicy import RiskOffPolicyMixin
from ruagent.agents.risk_sac.policies import CnnPolicy, MlpPolicy, MultiInputPolicy
from ruagent.agents.torch_risk import risk_value

__all__ = ["RiskSAC"]

SelfRiskSAC = TypeVar("SelfRiskSAC", bound="RiskSAC")


class RiskSAC(RiskOffPolicyMixin, SAC):
    """SAC over K reward hypotheses; the actor maximises ``risk`` of the members' Q values per state.

    All of :class:`stable_baselines3.SAC`'s parameters apply, as keywords after ``policy`` and
    ``env`` (``n_steps`` must stay 1); the new ones:

    :param n_members: K. None infers it from the wrapped env's reward model.
    :param member_probs: (K,) posterior probabilities of the members; None takes the reward model's.
    :param risk: a risk-measure name from :data:`ruagent.risk.RISK_MEASURES` ("mean", "cvar",
        "worst", "mean_std", "entropic", "broil") or a :class:`ruagent.risk.RiskMeasure`. It is
        applied at every state to the K members' Q values (per-state risk; see the module docstring).
    :param risk_kwargs: the measure's parameters, e.g. ``{"alpha": 0.1}`` for cvar.
    :param risk_anneal_fraction: fraction of training over which the risk level moves linearly
        from the mean to the target; 0 uses the target throughout.
    :param standardise_rewards: shift member rewards to ``r_k − loc_k + Σ_j p_j loc_j`` with the
        reward model's current label-data means (read at every sampled batch), so constant
        offsets between members carry no risk signal. A wrapper built with ``standardise=True``
        has the same effect (set it in one place).

    The relabelling assumes the agent's observations and actions are those the posterior wrapper
    sees (no observation or action wrapper outside it; ``VecNormalize`` outside is fine, SB3
    stores unnormalised observations). The reward model is not part of the saved model: save it
    beside the ``.zip`` and give the wrapper its path when you load.
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
        _init_setup_model: bool = True,
        **sac_kwargs: Any,
    ):
        super().__init__(policy, env, _init_setup_model=False, **sac_kwargs)
        self._init_risk(n_members, member_probs, risk, risk_kwargs, risk_anneal_fraction, standardise_rewards)
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        self._prepare_risk_setup()
        super()._setup_model()
        self._finish_risk_setup()

    # ------------------------------------------------------------------ training
    def train(self, gradient_steps: int, batch_size: int = 64) -> None:
        """SAC's update with K member Q heads per twin: per-member TD targets, actor on ρ over members."""
        self.policy.set_training_mode(True)
        optimizers = [self.actor.optimizer, self.critic.optimizer]
        if self.ent_coef_optimizer is not None:
            optimizers += [self.ent_coef_optimizer]
        self._update_learning_rate(optimizers)
        measure = self.current_risk_measure()
        probs = self.risk_probs

        ent_coef_losses, ent_coefs = [], []
        actor_losses, critic_losses = [], []
        for gradient_step in range(gradient_steps):
            replay_data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)
            member_rewards = replay_data.rewards  # (B, K), scored by the current posterior
            assert member_rewards.shape[1] == self.n_members, member_rewards.shape
            if self.use_sde:
                self.actor.reset_noise()

            actions_pi, log_prob = self.actor.action_log_prob(replay_data.observations)
            log_prob = log_prob.reshape(-1, 1)

            ent_coef_loss = None
            if self.ent_coef_optimizer is not None and self.log_ent_coef is not None:
                ent_coef = th.exp(self.log_ent_coef.detach())  # detached: only ent_coef_loss moves it
                ent_coef_loss = -(self.log_ent_coef * (log_prob + self.target_entropy).detach()).mean()
                ent_coef_losses.append(ent_coef_loss.item())
            else:
                ent_coef = self.ent_coef_tensor
            ent_coefs.append(ent_coef.item())
            if ent_coef_loss is not None and self.ent_coef_optimizer is not None:
                self.ent_coef_optimizer.zero_grad()
                ent_coef_loss.backward()
                self.ent_coef_optimizer.step()

            with th.no_grad():
                next_actions, next_log_prob = self.actor.action_log_prob(replay_data.next_observations)
                # (n_critics, B, K) -> clipped double Q for each member: (B, K)
                next_q_values = self.critic_target.member_q_values(replay_data.next_observations, next_actions)
                next_q_values, _ = th.min(next_q_values, dim=0)
                next_q_values = next_q_values - ent_coef * next_log_prob.reshape(-1, 1)
                target_q_values = member_rewards + (1 - replay_data.dones) * self.gamma * next_q_values

            current_q_values = self.critic(replay_data.observations, replay_data.actions)  # n_critics x (B, K)
            # mean over (B, K) = mean over members of each member's MSE
            critic_loss = 0.5 * sum(F.mse_loss(current_q, target_q_values) for current_q in current_q_values)
            assert isinstance(critic_loss, th.Tensor)
            critic_losses.append(critic_loss.item())
            self.critic.optimizer.zero_grad()
            critic_loss.backward()
            self.critic.optimizer.step()

            # the actor maximises ρ over members of each member's clipped double Q, state by state
            member_q_pi, _ = th.min(self.critic.member_q_values(replay_data.observations, actions_pi), dim=0)
            risk_q_pi = risk_value(measure, member_q_pi.T, probs).reshape(-1, 1)  # (B, 1)
            actor_loss = (ent_coef * log_prob - risk_q_pi).mean()
            actor_losses.append(actor_loss.item())
            self.actor.optimizer.zero_grad()
            actor_loss.backward()
            self.actor.optimizer.step()

            if gradient_step % self.target_update_interval == 0:
                polyak_update(self.critic.parameters(), self.critic_target.parameters(), self.tau)
                polyak_update(self.batch_norm_stats, self.batch_norm_stats_target, 1.0)

        self._n_updates += gradient_steps
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/ent_coef", np.mean(ent_coefs))
        self.logger.record("train/actor_loss", np.mean(actor_losses))
        self.logger.record("train/critic_loss", np.mean(critic_losses))
        if len(ent_coef_losses) > 0:
            self.logger.record("train/ent_coef_loss", np.mean(ent_coef_losses))
        if gradient_steps > 0 and self._risk_log_due():
            self._record_risk(member_q_pi.detach().T.cpu().numpy(), measure)
            self._record_member_rewards(member_rewards.cpu().numpy())

    def learn(
        self: SelfRiskSAC,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 4,
        tb_log_name: str = "RiskSAC",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfRiskSAC:
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )
