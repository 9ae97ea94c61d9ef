"""Registers the testbeds with gymnasium as ``ruagent/<Name>-v0`` (called by ``import ruagent``).

Entry points are strings, so registering imports nothing heavy. Each testbed has one id
taking a ``variant=`` kwarg (``gym.make("ruagent/LavaWorld-v0", variant="test")``) and one
id per variant with the variant fixed (``ruagent/LavaWorld-test-v0``), for configs and
tools (rl-zoo) that can name an id but not pass kwargs.

The grid testbeds and PointNavigation enforce their own step caps (the gridworld solver
plans for them), so they register no ``max_episode_steps``; TwoHypothesisCartPole gets
CartPole-v1's 500-step TimeLimit and SpeedLimitCheetah HalfCheetah-v5's 1,000 steps.
"""

from __future__ import annotations

import gymnasium as gym

__all__ = ["ENV_IDS", "EXTRAS", "register_envs"]

_PACKAGE = "ruagent.envs"

#: testbed name -> (entry point, its variants (the first is the default), max_episode_steps or None)
_TESTBEDS: dict[str, tuple[str, tuple[str, ...], int | None]] = {
    "LavaWorld": (f"{_PACKAGE}.lava_world:LavaWorld", ("train", "test"), None),
    "DistributionalShift": (f"{_PACKAGE}.distributional_shift:DistributionalShift", ("train", "test1", "test2"), None),
    "TwoHypothesisCartPole": (f"{_PACKAGE}.two_hypothesis_cartpole:TwoHypothesisCartPole", ("train", "test"), 500),
    "PointNavigation": (f"{_PACKAGE}.navigation:PointNavigation", ("train", "test"), None),
    "SpeedLimitCheetah": (f"{_PACKAGE}.speed_limit_cheetah:SpeedLimitCheetah", ("train", "test"), 1000),
}

#: testbed name -> the optional extra it needs (``pip install 'ruagent[<extra>]'``); its ids are
#: registered regardless, and making one without the extra raises DependencyNotInstalled naming it.
EXTRAS: dict[str, str] = {"SpeedLimitCheetah": "mujoco"}


def _env_ids() -> dict[str, tuple[str, dict, int | None]]:
    ids: dict[str, tuple[str, dict, int | None]] = {}
    for name, (entry_point, variants, max_steps) in _TESTBEDS.items():
        ids[f"ruagent/{name}-v0"] = (entry_point, {"variant": variants[0]}, max_steps)
        for variant in variants:
            ids[f"ruagent/{name}-{variant}-v0"] = (entry_point, {"variant": variant}, max_steps)
    return ids


#: id -> (entry point, default kwargs, max_episode_steps or None)
ENV_IDS: dict[str, tuple[str, dict, int | None]] = _env_ids()


def register_envs() -> None:
    """Register every testbed id once (idempotent)."""
    for env_id, (entry_point, kwargs, max_steps) in ENV_IDS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry_point, kwargs=kwargs, max_episode_steps=max_steps)
