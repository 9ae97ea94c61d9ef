"""Actor-critic policies whose critic has one value head per reward hypothesis.

The actor is SB3's. The critic's trunk (``mlp_extractor``'s value branch) is shared by all
K members and ends in one ``nn.Linear(latent_dim_vf, K)``, so the K values are one batched
matmul: ``forward``/``evaluate_actions``/``predict_values`` return values of shape (B, K).
Sharing the trunk is the default because members of a reward posterior differ mostly in
a few directions of feature space; the heads learn those directions. With K = 1 the
networks, their initialisation and the random-number stream are exactly SB3's, which is
what lets RiskPPO reproduce PPO bit for bit.

With ``member_value_arch=[h1, ...]`` each member instead gets its own hidden layers after
the shared trunk, still one batched computation (``torch.baddbmm`` over a (K, ·, ·) weight
stack, as in batched deep ensembles); with ``net_arch=dict(pi=[...], vf=[])`` as well, the K
critics share nothing but the features extractor.

``MlpPolicy``, ``CnnPolicy`` and ``MultiInputPolicy`` are the aliases
:class:`~ruagent.agents.RiskPPO` accepts, as in sb3-contrib.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.policies import (
    ActorCriticCnnPolicy,
    ActorCriticPolicy,
    MultiInputActorCriticPolicy,
)
from stable_baselines3.common.type_aliases import Schedule
from torch import nn

__all__ = [
    "BatchedValueHeads",
    "CnnPolicy",
    "MlpPolicy",
    "MultiInputPolicy",
    "RiskActorCriticCnnPolicy",
    "RiskActorCriticPolicy",
    "RiskMultiInputActorCriticPolicy",
]


class BatchedValueHeads(nn.Module):
    """K independent MLP value heads, evaluated as one batched computation.

    :param in_dim: D, the size of the critic latent the heads read.
    :param hidden_sizes: hidden layer sizes of every head.
    :param n_members: K.
    :param activation_fn: activation class between layers (the policy's).

    ``forward`` maps a (B, D) latent to (B, K) values. Weights are initialised orthogonally
    per member with SB3's gains (√2 hidden, 1 output).
    """

    def __init__(
        self, in_dim: int, hidden_sizes: Sequence[int], n_members: int, activation_fn: type[nn.Module]
    ) -> None:
        super().__init__()
        sizes = [int(in_dim), *(int(h) for h in hidden_sizes), 1]
        self.n_members = int(n_members)
        self.weights = nn.ParameterList(th.empty(self.n_members, a, b) for a, b in itertools.pairwise(sizes))
        self.biases = nn.ParameterList(th.zeros(self.n_members, 1, b) for b in sizes[1:])
        self.activation = activation_fn()
        for layer, weight in enumerate(self.weights):
            gain = 1.0 if layer == len(self.weights) - 1 else np.sqrt(2)
            for member_weight in weight.data:  # initialisation only; the forward pass is batched
                nn.init.orthogonal_(member_weight, gain=gain)

    def forward(self, latent: th.Tensor) -> th.Tensor:
        assert latent.ndim == 2, latent.shape
        hidden = latent.unsqueeze(0).expand(self.n_members, -1, -1)  # (K, B, D)
        for layer, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            hidden = th.baddbmm(bias, hidden, weight)  # (K, B, out)
            if layer < len(self.weights) - 1:
                hidden = self.activation(hidden)
        values = hidden.squeeze(-1).T  # (B, K)
        assert values.shape == (latent.shape[0], self.n_members), values.shape
        return values


class _MemberValueHeads:
    """Mixin for an SB3 actor-critic policy: ``n_members`` value outputs instead of one.

    :param n_members: K, the number of reward hypotheses (value heads).
    :param member_value_arch: hidden sizes of a per-member MLP head after the shared critic
        trunk (:class:`BatchedValueHeads`); None (default) gives one linear layer with K outputs.
    """

    def __init__(
        self, *args: Any, n_members: int = 1, member_value_arch: Sequence[int] | None = None, **kwargs: Any
    ) -> None:
        if int(n_members) < 1:
            raise ValueError(f"n_members must be >= 1, got {n_members}")
        # Read by _build, which the parent's __init__ calls.
        self.n_members = int(n_members)
        self.member_value_arch = None if member_value_arch is None else [int(h) for h in member_value_arch]
        super().__init__(*args, **kwargs)

    def _build(self, lr_schedule: Schedule) -> None:
        super()._build(lr_schedule)
        latent_dim_vf = self.mlp_extractor.latent_dim_vf
        if self.member_value_arch is not None:
            self.value_net = BatchedValueHeads(
                latent_dim_vf, self.member_value_arch, self.n_members, self.activation_fn
            )
        elif self.n_members == 1:
            return  # SB3's single head, untouched: same initialisation and RNG draws as PPO.
        else:
            self.value_net = nn.Linear(latent_dim_vf, self.n_members)
            if self.ortho_init:
                self.value_net.apply(partial(self.init_weights, gain=1))  # SB3's gain for the value head
        # The optimiser was built over the old head's parameters; rebuild it over the new ones.
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(n_members=self.n_members, member_value_arch=self.member_value_arch)
        return data


class RiskActorCriticPolicy(_MemberValueHeads, ActorCriticPolicy):
    """SB3's ActorCriticPolicy (MLP) with K value heads on a shared critic trunk; values are (B, K)."""


class RiskActorCriticCnnPolicy(_MemberValueHeads, ActorCriticCnnPolicy):
    """SB3's ActorCriticCnnPolicy (NatureCNN features) with K value heads; values are (B, K)."""


class RiskMultiInputActorCriticPolicy(_MemberValueHeads, MultiInputActorCriticPolicy):
    """SB3's MultiInputActorCriticPolicy (Dict observations) with K value heads; values are (B, K)."""


MlpPolicy = RiskActorCriticPolicy
CnnPolicy = RiskActorCriticCnnPolicy
MultiInputPolicy = RiskMultiInputActorCriticPolicy
