"""Posteriors over reward functions: one protocol (:class:`RewardModel`), several families."""

from ruagent.reward_models.base import (
    RewardModel,
    RewardModelFileError,
    SpaceMismatchError,
    load_reward_model,
)
from ruagent.reward_models.ensemble import EnsembleRewardModel
from ruagent.reward_models.linear import BayesianLinearRewardModel

__all__ = [
    "BayesianLinearRewardModel",
    "EnsembleRewardModel",
    "RewardModel",
    "RewardModelFileError",
    "SpaceMismatchError",
    "load_reward_model",
]
