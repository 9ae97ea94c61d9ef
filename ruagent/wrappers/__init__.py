"""Wrappers that hide the env's reward and hand the agent rewards from a reward posterior.

:class:`RewardUncertaintyWrapper` (gymnasium) and :class:`VecRewardUncertaintyWrapper`
(SB3 VecEnv, one posterior call per step for all sub-envs) are thin skins over
:class:`~ruagent.wrappers.core.PosteriorRewardCore`.
"""

from ruagent.wrappers.core import (
    MODES,
    MissingMonitorWarning,
    OuterMonitorWarning,
    PosteriorRewardCore,
    PosteriorRewards,
)
from ruagent.wrappers.reward_uncertainty import RewardUncertaintyWrapper
from ruagent.wrappers.vec_reward_uncertainty import VecRewardUncertaintyWrapper

__all__ = [
    "MODES",
    "MissingMonitorWarning",
    "OuterMonitorWarning",
    "PosteriorRewardCore",
    "PosteriorRewards",
    "RewardUncertaintyWrapper",
    "VecRewardUncertaintyWrapper",
]
