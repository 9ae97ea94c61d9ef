"""The layer both fitted families share: members are functions of a feature vector.

Features are the featuriser's encoding of (obs, action, next_obs), the env's
``reward_features`` (IRD's φ), or a user callable (:class:`ruagent.features.RewardInputs`).
The width D is known from the spaces, or (env features, callables) from the first batch;
subclasses build their parameters in :meth:`_build` once D is known.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from ruagent.features import RewardInputs
from ruagent.reward_models.base import RewardModel

__all__ = ["FeatureRewardModel"]


class FeatureRewardModel(RewardModel):
    """A :class:`RewardModel` whose K members map features (B, D) to rewards (K, B).

    :param features: ``"transition"`` (featuriser), ``"env"`` (the env's ``reward_features``,
        taken in :meth:`bind`) or a callable ``(obs, action, next_obs) -> (B, D)``.
    """

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        n_members: int,
        features: str | Callable = "transition",
        member_probs: np.ndarray | None = None,
        check_finite: bool = True,
    ) -> None:
        super().__init__(observation_space, action_space, n_members, member_probs, check_finite)
        self._inputs = RewardInputs(observation_space, action_space, features)
        self.in_dim: int | None = None

    @abc.abstractmethod
    def _build(self, in_dim: int) -> None:
        """Create the parameters for inputs of width ``in_dim`` (sets ``self.in_dim``)."""

    @abc.abstractmethod
    def _predict_features(self, features: np.ndarray) -> np.ndarray:
        """Raw features (B, D) float32 -> member rewards (K, B) float32."""

    def _build_if_width_known(self) -> None:
        if self._inputs.dim is not None:
            self._build(self._inputs.dim)

    def _ensure_built(self, in_dim: int) -> None:
        if self.in_dim is None:
            self._build(in_dim)
        elif in_dim != self.in_dim:
            raise ValueError(
                f"reward features have width {in_dim} but this {type(self).__name__} was built for width "
                f"{self.in_dim}; use the same features it was fitted with"
            )

    # ------------------------------------------------------------------ features
    def bind(self, env: gym.Env) -> None:
        """Check spaces against ``env`` and, with ``features="env"``, take its ``reward_features``."""
        super().bind(env)
        self._inputs.bind(env)

    def set_features(self, features: Callable) -> None:
        """Give the callable again to a model that was saved with ``features=callable``."""
        self._inputs.set_callable(features)

    @property
    def features_mode(self) -> str:
        """``"transition"``, ``"env"`` or ``"callable"``."""
        return self._inputs.mode

    def features(self, obs: Any, action: Any, next_obs: Any) -> np.ndarray:
        """The model's raw inputs for B transitions: float32 (B, D), before any normalisation."""
        features = self._inputs(obs, action, next_obs)
        self._ensure_built(features.shape[1])
        return features

    def _predict(self, obs: Any, action: Any, next_obs: Any, batch_size: int) -> np.ndarray:
        features = self.features(obs, action, next_obs)
        if features.shape[0] != batch_size:
            raise ValueError(f"reward features returned {features.shape[0]} rows for a batch of {batch_size}")
        return self._predict_features(features)

    def _predict_with_moments(
        self, obs: Any, action: Any, next_obs: Any, batch_size: int
    ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
        features = self.features(obs, action, next_obs)
        if features.shape[0] != batch_size:
            raise ValueError(f"reward features returned {features.shape[0]} rows for a batch of {batch_size}")
        return self._predict_features_with_moments(features)

    def _predict_features_with_moments(
        self, features: np.ndarray
    ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
        """Member rewards (K, B) and :meth:`_feature_moments`; a family that shares work between them overrides this."""
        return self._predict_features(features), self._feature_moments(features)

    def _feature_moments(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Analytic posterior (mean, std) (B,) of the reward at raw features (B, D); None: use the members'."""
        return None

    def set_reward_statistics(self, features: np.ndarray, member_rewards: np.ndarray | None = None) -> None:
        """Set ``reward_loc``/``reward_scale`` (K,) to each member's mean/std on label features (N, D).

        :param member_rewards: (K, N) the members' rewards on ``features``, when the caller has them already.
        """
        if member_rewards is None:
            member_rewards = self._predict_features(np.asarray(features, dtype=np.float32))
        assert member_rewards.shape == (self.n_members, len(features)), (member_rewards.shape, len(features))
        predictions = np.asarray(member_rewards, dtype=np.float64)
        self.reward_loc = predictions.mean(axis=1).astype(np.float32)
        self.reward_scale = np.maximum(predictions.std(axis=1), 1e-6).astype(np.float32)

    @classmethod
    def load(
        cls, path: Any, env: gym.Env | None = None, features: Callable | None = None
    ) -> FeatureRewardModel:
        """Load a saved model; ``features`` gives back a callable the file could only name."""
        model = super().load(path, env=env)
        if features is not None:
            model.set_features(features)
        return model
