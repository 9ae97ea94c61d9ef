"""DQN policies whose Q-network gives one Q value per (reward hypothesis, action).

The Q-network's last layer has K·|A| outputs, one batched forward pass for all members:
``q_net(obs)`` returns member Q values of shape (B, K, |A|) (member-major: output k·|A| + a).
The greedy action maximises a risk measure ρ over the members at each state,
``argmax_a ρ(Q_1(s, a), …, Q_K(s, a))``: with :mod:`ruagent.risk` on the host when acting (a few
states per call, where a chain of tiny torch ops costs more), in torch
(:func:`ruagent.agents.torch_risk.risk_value`) for large batches and for the training targets.
The measure and the member probabilities are constructor parameters (plain JSON values), so
a policy saved and loaded on its own acts as the agent did. With K = 1 and ρ = mean the
networks, their initialisation and the greedy action are exactly SB3's DQN.

``MlpPolicy``, ``CnnPolicy`` and ``MultiInputPolicy`` are the aliases
:class:`~ruagent.agents.RiskDQN` accepts.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.torch_layers import create_mlp
from stable_baselines3.common.type_aliases import PyTorchObs
from stable_baselines3.dqn.policies import CnnPolicy as DQNCnnPolicy
from stable_baselines3.dqn.policies import DQNPolicy, QNetwork
from stable_baselines3.dqn.policies import MultiInputPolicy as DQNMultiInputPolicy
from torch import nn

from ruagent import risk as risk_measures
from ruagent.agents.torch_risk import risk_value

__all__ = [
    "CnnPolicy",
    "MemberQNetwork",
    "MlpPolicy",
    "MultiInputPolicy",
    "RiskDQNCnnPolicy",
    "RiskDQNMultiInputPolicy",
    "RiskDQNPolicy",
]


class MemberQNetwork(QNetwork):
    """SB3's QNetwork with K·|A| outputs: Q_k(s, a) for every member k and action a.

    :param n_members: K.
    :param risk: the measure the greedy action maximises over members (a :class:`ruagent.risk.RiskMeasure`).
    :param member_probs: (K,) member probabilities, or None for uniform members.

    ``forward`` returns (B, K, |A|); ``_predict`` the risk-greedy action (B,).
    """

    def __init__(
        self,
        *args: Any,
        n_members: int = 1,
        risk: risk_measures.RiskMeasure | None = None,
        member_probs: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.n_members = int(n_members)
        self.risk_measure = risk if risk is not None else risk_measures.make("mean")
        self.member_probs = member_probs
        n_actions = int(self.action_space.n)
        if self.n_members > 1:  # K = 1: SB3's network, untouched (same initial weights and random stream)
            self.q_net = nn.Sequential(
                *create_mlp(self.features_dim, self.n_members * n_actions, self.net_arch, self.activation_fn)
            )

    def forward(self, obs: PyTorchObs) -> th.Tensor:
        """Member Q values (B, K, |A|)."""
        q_values = self.q_net(self.extract_features(obs, self.features_extractor))
        return q_values.reshape(q_values.shape[0], self.n_members, int(self.action_space.n))

    def risk_q_values(self, member_q_values: th.Tensor, measure: risk_measures.RiskMeasure | None = None) -> th.Tensor:
        """ρ over members of (B, K, |A|) member Q values: (B, |A|)."""
        measure = self.risk_measure if measure is None else measure
        return risk_value(measure, member_q_values.transpose(0, 1), self.member_probs)

    def _predict(self, observation: PyTorchObs, deterministic: bool = True) -> th.Tensor:
        member_q_values = self(observation)
        if member_q_values.shape[0] > 64:
            return self.risk_q_values(member_q_values).argmax(dim=1).reshape(-1)
        # acting (a few states per env step): ruagent.risk on the host beats a chain of tiny torch ops
        values = member_q_values.detach().cpu().numpy()  # (B, K, |A|)
        batch, k, n_actions = values.shape
        risk = self.risk_measure.value(values.transpose(1, 0, 2).reshape(k, batch * n_actions), self.member_probs)
        actions = th.from_numpy(np.asarray(risk).reshape(batch, n_actions).argmax(axis=1))
        return actions if member_q_values.device.type == "cpu" else actions.to(member_q_values.device)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(n_members=self.n_members, risk=self.risk_measure, member_probs=self.member_probs)
        return data


class _MemberQNetworks:
    """Mixin for SB3's DQNPolicy: Q-networks (and the target) with K member outputs per action.

    :param n_members: K, the number of reward hypotheses.
    :param risk: name of the risk measure the greedy action maximises (:data:`ruagent.risk.RISK_MEASURES`).
    :param risk_kwargs: its parameters, e.g. ``{"alpha": 0.1}``.
    :param member_probs: (K,) member probabilities; None for uniform.
    """

    net_args: dict[str, Any]
    device: th.device

    def __init__(
        self,
        *args: Any,
        n_members: int = 1,
        risk: str = "mean",
        risk_kwargs: dict[str, float] | None = None,
        member_probs: list[float] | None = None,
        **kwargs: Any,
    ) -> None:
        if int(n_members) < 1:
            raise ValueError(f"n_members must be >= 1, got {n_members}")
        # read by make_q_net, which the parent's __init__ calls
        self.n_members = int(n_members)
        self.risk_measure = risk_measures.make(risk, **(risk_kwargs or {}))
        self.member_probs = None if member_probs is None else [float(p) for p in member_probs]
        super().__init__(*args, **kwargs)

    @property
    def _probs(self) -> np.ndarray | None:
        if self.member_probs is None:
            return None
        probs = np.asarray(self.member_probs, dtype=np.float64)
        probs = probs / probs.sum()
        return None if np.all(probs == probs[0]) else probs

    def make_q_net(self) -> MemberQNetwork:
        net_args = self._update_features_extractor(self.net_args, features_extractor=None)  # type: ignore[attr-defined]
        return MemberQNetwork(
            **net_args, n_members=self.n_members, risk=self.risk_measure, member_probs=self._probs
        ).to(self.device)

    def set_risk_measure(self, measure: risk_measures.RiskMeasure) -> None:
        """Act greedily on ``measure`` from now on (e.g. an annealed risk level); not saved."""
        self.q_net.risk_measure = measure  # type: ignore[attr-defined]
        self.q_net_target.risk_measure = measure  # type: ignore[attr-defined]

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()  # type: ignore[misc]
        data.update(
            n_members=self.n_members,
            risk=self.risk_measure.name,
            risk_kwargs=dict(self.risk_measure.params),
            member_probs=self.member_probs,
        )
        return data


class RiskDQNPolicy(_MemberQNetworks, DQNPolicy):
    """SB3's DQNPolicy (MLP) with K member Q values per action and a risk-greedy action."""


class RiskDQNCnnPolicy(_MemberQNetworks, DQNCnnPolicy):
    """SB3's DQN CnnPolicy (NatureCNN features) with K member Q values per action."""


class RiskDQNMultiInputPolicy(_MemberQNetworks, DQNMultiInputPolicy):
    """SB3's DQN MultiInputPolicy (Dict observations) with K member Q values per action."""


MlpPolicy = RiskDQNPolicy
CnnPolicy = RiskDQNCnnPolicy
MultiInputPolicy = RiskDQNMultiInputPolicy
