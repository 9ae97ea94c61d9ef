"""Priors in reward units, shared by every posterior family.

A posterior must know what it does not know *in reward units*: where no label constrains
the reward, its members should spread over rewards that could plausibly occur there.
Two quantities set that spread, and both families use the same ones:

``prior_reward_scale`` (σ_r)
    How large rewards can plausibly be where nothing is labelled. Declared by the user
    (the constructor argument of both families) or, when left ``None``, derived from the
    reward labels by :func:`default_prior_reward_scale`: the largest reward magnitude seen,
    ``max |y|`` — never the label standard deviation, which is tiny for near-constant
    rewards (CartPole's +1 a step has std 0) and says nothing about what unseen states pay.
    The default is announced once per fit by a one-line log record on the ``ruagent``
    logger, saying what was assumed.

Input normalisation with a floor
    Models see inputs standardised by the label data, ``x̃ = (x - loc) / scale``. A column
    that was constant in the labels (a one-hot never active, a hazard sensor that read 0
    throughout) has no label scale; dividing by 1 (or dropping it) would make it nearly
    invisible to the prior. :func:`input_normalisation` gives such columns
    ``CONSTANT_INPUT_SCALE``, so an unseen value moves ``x̃`` by ``value / CONSTANT_INPUT_SCALE``:
    a one-hot that switches on is two units away from everything labelled, as far as a
    two-standard-deviation move along a labelled column.
"""

from __future__ import annotations

import logging

import numpy as np

__all__ = [
    "CONSTANT_INPUT_SCALE",
    "DEFAULT_PREFERENCE_REWARD_SCALE",
    "default_prior_reward_scale",
    "input_normalisation",
    "resolve_prior_reward_scale",
]

logger = logging.getLogger("ruagent")

#: normalisation scale of an input column that was constant in the label data (raw units).
CONSTANT_INPUT_SCALE = 0.5
#: columns whose label std is below this are treated as constant.
_CONSTANT_STD = 1e-6
#: σ_r for preference labels, which carry no reward magnitude: Bradley–Terry's unit (a
#: reward difference of 1 over a segment is odds e : 1).
DEFAULT_PREFERENCE_REWARD_SCALE = 1.0


def default_prior_reward_scale(rewards: np.ndarray) -> float:
    """σ_r derived from reward labels alone: the largest reward magnitude seen, ``max |y|``.

    Falls back to 1.0 when every label is 0 (nothing says how large rewards are).
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    if rewards.size == 0:
        raise ValueError("no reward labels to derive a prior reward scale from; pass prior_reward_scale=")
    largest = float(np.max(np.abs(rewards)))
    return largest if largest > 0 else 1.0


def resolve_prior_reward_scale(declared: float | None, rewards: np.ndarray | None, owner: str) -> float:
    """The declared σ_r, or the label-derived default (announced on the ``ruagent`` logger).

    :param declared: the user's ``prior_reward_scale`` (None: derive it).
    :param rewards: (N,) reward labels, or None for preference data (then
        :data:`DEFAULT_PREFERENCE_REWARD_SCALE`).
    :param owner: the model's name, for the notice.
    """
    if declared is not None:
        return float(declared)
    if rewards is None:
        scale = DEFAULT_PREFERENCE_REWARD_SCALE
        logger.warning(
            "%s: prior_reward_scale not given; preferences carry no reward magnitude, assumed %.3g "
            "(Bradley-Terry units). Pass prior_reward_scale= to declare it.", owner, scale,
        )
    else:
        scale = default_prior_reward_scale(rewards)
        logger.warning(
            "%s: prior_reward_scale not given; assumed %.3g, the largest reward magnitude in the labels. "
            "Pass prior_reward_scale= to declare how large unlabelled rewards can be.", owner, scale,
        )
    return scale


def input_normalisation(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(loc, scale), each (D,) float64, standardising label features (N, D).

    Columns constant in the labels get scale :data:`CONSTANT_INPUT_SCALE` instead of their
    (zero) std, so that an input the labels never varied stays visible to the prior.
    """
    features = np.asarray(features, dtype=np.float64)
    assert features.ndim == 2, features.shape
    if len(features) == 0:
        raise ValueError("no label features to normalise by; fit on at least one labelled transition")
    std = features.std(axis=0)
    return features.mean(axis=0), np.where(std > _CONSTANT_STD, std, CONSTANT_INPUT_SCALE)
