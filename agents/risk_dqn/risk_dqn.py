"""RiskDQN: DQN whose greedy action maximises a risk measure of the members' Q values.

The env is wrapped by :class:`ruagent.RewardUncertaintyWrapper` (or its VecEnv twin). RiskDQN's
Q-network has one output per (member, action), Q_k(s, a) for member k's reward, and

- scores every sampled batch with the *current* posterior (the replay buffer relabels: r_k for
  each member, one ``reward_model.predict`` call per batch), so a posterior refitted during
  training applies to the whole buffer;
- acts greedily on the risk over members at each state: π(s) = argmax_a ρ_k(Q_k(s, a)) for a
  risk measure ρ from :mod:`ruagent.risk` (ε-greedy while training, as DQN);
- trains every member on the value of that same policy: y_k = r_k + γ (1 − d) Q̄_k(s', a*),
  a* = argmax_a ρ_k(Q̄_k(s', a)) with the target network Q̄ — so the K heads evaluate one common
  policy, whose per-state risk the greedy step improves (a member's own max would evaluate K
  different policies instead).

The risk is **per state**: ρ of the K members' Q values at each state, not of the members'
episode returns as in :class:`~ruagent.agents.RiskPPO` (trajectory-level). Per-state CVaR is
time-inconsistent and more conservative than trajectory-level CVaR: it avoids an action whose
members disagree even when, over a whole episode, the disagreement would be acceptable. See
docs/offpolicy.md. With K = 1 and ρ = mean it is SB3's DQN, parameter for parameter.
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from stable_baselines3 import DQN
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback
from torch.nn import functional as F

from ruagent import risk as risk_measures
from ruagent.agents.offpolicy import RiskOffPolicyMixin
from ruagent.agents.risk_dqn.policies import CnnPolicy, MlpPolicy, MultiInputPolicy
from ruagent.agents.torch_risk import risk_value

__all__ = ["RiskDQN"]

SelfRiskDQN = TypeVar("SelfRiskDQN", bound="RiskDQN")


def _at_actions(member_q_values: th.Tensor, actions: th.Tensor) -> th.Tensor:
    """(B, K, |A|) member Q values at one action per state (B,) or (B, 1): (B, K)."""
    batch, k, _ = member_q_values.shape
    index = actions.reshape(batch, 1, 1).expand(batch, k, 1)
    return member_q_values.gather(2, index).squeeze(2)


class RiskDQN(RiskOffPolicyMixin, DQN):
    """DQN over K reward hypotheses, acting greedily on ``risk`` of the members' Q values per state.

    All of :class:`stable_baselines3.DQN`'s parameters apply, as keywords after ``policy`` and
    ``env`` (``n_steps`` must stay 1); the new ones:

    :param n_members: K. None infers it from the wrapped env's reward model.
    :param member_probs: (K,) posterior probabilities of the members; None takes the reward model's.
    :param risk: a risk-measure name from :data:`ruagent.risk.RISK_MEASURES` ("mean", "cvar",
        "worst", "mean_std", "entropic", "broil") or a :class:`ruagent.risk.RiskMeasure`. It is
        applied at every state to the K members' Q values of each action (per-state risk).
    :param risk_kwargs: the measure's parameters, e.g. ``{"alpha": 0.1}`` for cvar.
    :param risk_anneal_fraction: fraction of training over which the risk level moves linearly
        from the mean to the target; 0 uses the target throughout.
    :param standardise_rewards: shift member rewards to ``r_k − loc_k + Σ_j p_j loc_j`` with the
        reward model's current label-data means (read at every sampled batch). A wrapper built
        with ``standardise=True`` has the same effect (set it in one place).

    The relabelling assumes the agent's observations are those the posterior wrapper sees (no
    observation wrapper outside it; ``VecNormalize`` outside is fine). The reward model is not
    part of the saved model: save it beside the ``.zip`` and give the wrapper its path when you load.
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
        **dqn_kwargs: Any,
    ):
        super().__init__(policy, env, _init_setup_model=False, **dqn_kwargs)
        self._init_risk(n_members, member_probs, risk, risk_kwargs, risk_anneal_fraction, standardise_rewards)
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        self._prepare_risk_setup()
        # the policy acts on the risk too (greedy action), so it carries the measure as plain values
        self.policy_kwargs = {
            **self.policy_kwargs,
            "risk": self.risk,
            "risk_kwargs": dict(self.risk_kwargs),
            "member_probs": list(self.member_probs),
        }
        super()._setup_model()
        self._finish_risk_setup()

    # ------------------------------------------------------------------ training
    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        """DQN's update with K member heads: each member's TD target at the risk-greedy next action."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        measure = self.current_risk_measure()
        probs = self.risk_probs
        if measure is not self.policy.q_net.risk_measure:  # annealing: act on the current level from now on
            self.policy.set_risk_measure(measure)

        losses = []
        for _ in range(gradient_steps):
            replay_data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)
            member_rewards = replay_data.rewards  # (B, K), scored by the current posterior
            assert member_rewards.shape[1] == self.n_members, member_rewards.shape
            with th.no_grad():
                next_q_values = self.q_net_target(replay_data.next_observations)  # (B, K, |A|)
                next_actions = risk_value(measure, next_q_values.transpose(0, 1), probs).argmax(dim=1)
                next_q_values = _at_actions(next_q_values, next_actions)  # (B, K)
                target_q_values = member_rewards + (1 - replay_data.dones) * self.gamma * next_q_values

            member_q_values = self.q_net(replay_data.observations)  # (B, K, |A|)
            current_q_values = _at_actions(member_q_values, replay_data.actions.long())
            # mean over (B, K) = mean over members of each member's Huber loss
            loss = F.smooth_l1_loss(current_q_values, target_q_values)
            losses.append(loss.item())

            self.policy.optimizer.zero_grad()
            loss.backward()
            th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
            self.policy.optimizer.step()

        self._n_updates += gradient_steps
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/loss", np.mean(losses))
        if gradient_steps > 0 and self._risk_log_due():
            with th.no_grad():  # the members' values of the risk-greedy action at the batch's states
                q_values = member_q_values.detach()
                greedy = risk_value(measure, q_values.transpose(0, 1), probs).argmax(dim=1)
                self._record_risk(_at_actions(q_values, greedy).T.cpu().numpy(), measure)
            self._record_member_rewards(member_rewards.cpu().numpy())

    def learn(
        self: SelfRiskDQN,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 4,
        tb_log_name: str = "RiskDQN",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfRiskDQN:
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )
