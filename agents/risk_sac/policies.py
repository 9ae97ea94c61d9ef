"""SAC policies whose twin critics give one Q value per reward hypothesis.

Each of the ``n_critics`` critic networks (two by default: clipped double Q) ends in a linear
layer with K outputs instead of one, so a critic evaluates all K members' Q_k(s, a) with one
batched forward pass: ``critic(obs, actions)`` returns ``n_critics`` tensors of shape (B, K).
The K heads of a twin share its hidden layers (as RiskPPO's value heads share the critic
trunk); the twins share nothing but, optionally, the features extractor. With K = 1 the
networks, their initialisation and the random-number stream are exactly SB3's SAC.

``MlpPolicy``, ``CnnPolicy`` and ``MultiInputPolicy`` are the aliases
:class:`~ruagent.agents.RiskSAC` accepts.
"""

from __future__ import annotations

from typing import Any

import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import BaseModel, ContinuousCritic
from stable_baselines3.common.preprocessing import get_action_dim
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, create_mlp
from stable_baselines3.sac.policies import CnnPolicy as SACCnnPolicy
from stable_baselines3.sac.policies import MultiInputPolicy as SACMultiInputPolicy
from stable_baselines3.sac.policies import SACPolicy
from torch import nn

__all__ = [
    "CnnPolicy",
    "MemberContinuousCritic",
    "MlpPolicy",
    "MultiInputPolicy",
    "RiskSACCnnPolicy",
    "RiskSACMultiInputPolicy",
    "RiskSACPolicy",
]


class MemberContinuousCritic(ContinuousCritic):
    """SB3's ContinuousCritic with K outputs per critic network: Q_k(s, a) for every member k.

    :param n_members: K.

    The other parameters are SB3's. ``forward`` returns ``n_critics`` tensors of shape (B, K);
    ``q1_forward`` the first critic's (B, K).
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        net_arch: list[int],
        features_extractor: BaseFeaturesExtractor,
        features_dim: int,
        activation_fn: type[nn.Module] = nn.ReLU,
        normalize_images: bool = True,
        n_critics: int = 2,
        share_features_extractor: bool = True,
        n_members: int = 1,
    ):
        if int(n_members) < 1:
            raise ValueError(f"n_members must be >= 1, got {n_members}")
        # ContinuousCritic's own __init__ builds one-output networks; build K-output ones in its place,
        # in the same order (so that K = 1 draws the same initial weights as SAC).
        BaseModel.__init__(
            self, observation_space, action_space, features_extractor=features_extractor,
            normalize_images=normalize_images,
        )
        self.n_members = int(n_members)
        self.share_features_extractor = share_features_extractor
        self.n_critics = n_critics
        self.q_networks: list[nn.Module] = []
        in_dim = features_dim + get_action_dim(self.action_space)
        for idx in range(n_critics):
            q_net = nn.Sequential(*create_mlp(in_dim, self.n_members, net_arch, activation_fn))
            self.add_module(f"qf{idx}", q_net)
            self.q_networks.append(q_net)

    def member_q_values(self, obs: th.Tensor, actions: th.Tensor) -> th.Tensor:
        """(n_critics, B, K): every twin's Q value of every member."""
        return th.stack(self(obs, actions), dim=0)


class _MemberCritics:
    """Mixin for SB3's SACPolicy: critics (and their targets) with K member outputs.

    :param n_members: K, the number of reward hypotheses.
    """

    critic_kwargs: dict[str, Any]
    device: th.device

    def __init__(self, *args: Any, n_members: int = 1, **kwargs: Any) -> None:
        if int(n_members) < 1:
            raise ValueError(f"n_members must be >= 1, got {n_members}")
        self.n_members = int(n_members)  # read by make_critic, which the parent's __init__ calls
        super().__init__(*args, **kwargs)

    def make_critic(self, features_extractor: BaseFeaturesExtractor | None = None) -> MemberContinuousCritic:
        critic_kwargs = self._update_features_extractor(self.critic_kwargs, features_extractor)  # type: ignore[attr-defined]
        return MemberContinuousCritic(**critic_kwargs, n_members=self.n_members).to(self.device)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()  # type: ignore[misc]
        data.update(n_members=self.n_members)
        return data


class RiskSACPolicy(_MemberCritics, SACPolicy):
    """SB3's SACPolicy (MLP) whose critics return (B, K) member Q values per twin."""


class RiskSACCnnPolicy(_MemberCritics, SACCnnPolicy):
    """SB3's SAC CnnPolicy (NatureCNN features) with (B, K) member Q values per twin."""


class RiskSACMultiInputPolicy(_MemberCritics, SACMultiInputPolicy):
    """SB3's SAC MultiInputPolicy (Dict observations) with (B, K) member Q values per twin."""


MlpPolicy = RiskSACPolicy
CnnPolicy = RiskSACCnnPolicy
MultiInputPolicy = RiskSACMultiInputPolicy
