"""Posteriors over reward functions: one protocol (:class:`RewardModel`), several families."""

from ruagent.reward_models.base import (
    RewardModel,
    RewardModelFileError,
    SpaceMismatchError,
    load_reward_model,
)

__all__ = ["RewardModel", "RewardModelFileError", "SpaceMismatchError", "load_reward_model"]
