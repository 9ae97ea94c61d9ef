"""Testbed environments with a train/test distribution shift (installed as ``ruagent.envs``).

``import ruagent`` registers every testbed with gymnasium (ids in
:data:`ruagent.envs.registration.ENV_IDS`; see docs/envs.md). The classes below load
lazily, so importing this package (which ``import ruagent`` does) costs nothing until a
testbed is used.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> module (under ruagent.envs) that defines it
_LAZY = {
    "LavaWorld": "lava_world",
    "generate_lava_maps": "lava_world",
    "DistributionalShift": "distributional_shift",
    "TwoHypothesisCartPole": "two_hypothesis_cartpole",
    "TwoHypothesisCartPolePosterior": "two_hypothesis_cartpole",
    "PointNavigation": "navigation",
    "SpeedLimitCheetah": "speed_limit_cheetah",  # needs the mujoco extra
    "GridWorldEnv": "grid_env",
    "GridSolution": "gridworld",
    "value_iteration": "gridworld",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
