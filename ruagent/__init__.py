"""ruagent: reinforcement learning under reward uncertainty.

A posterior over reward functions (a batched deep ensemble or a conjugate Bayesian linear
model), a Gymnasium / SB3 wrapper that hands the agent posterior rewards instead of the
env's, and risk-averse SB3 agents that optimise a risk measure over reward hypotheses.

``import ruagent`` registers the testbed environments as ``ruagent/<Name>-v0``. The public
classes are imported lazily (torch and SB3 load on first use, not at import).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ruagent.envs.registration import register_envs

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "RewardUncertaintyWrapper": "ruagent.wrappers",
    "VecRewardUncertaintyWrapper": "ruagent.wrappers",
    "RewardModel": "ruagent.reward_models",
    "EnsembleRewardModel": "ruagent.reward_models",
    "BayesianLinearRewardModel": "ruagent.reward_models",
    "load_reward_model": "ruagent.reward_models",
    "collect_transitions": "ruagent.data",
    "Transitions": "ruagent.data",
}
_SUBMODULES = {"risk", "agents", "envs", "callbacks", "reward_models", "wrappers", "data", "preferences"}

__all__ = [*_LAZY, *sorted(_SUBMODULES), "__version__"]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from ruagent import agents, envs, risk  # noqa: F401
    from ruagent.data import Transitions, collect_transitions  # noqa: F401
    from ruagent.reward_models import (  # noqa: F401
        BayesianLinearRewardModel,
        EnsembleRewardModel,
        RewardModel,
        load_reward_model,
    )
    from ruagent.wrappers import RewardUncertaintyWrapper, VecRewardUncertaintyWrapper  # noqa: F401


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"ruagent.{name}")
    raise AttributeError(f"module 'ruagent' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


register_envs()
