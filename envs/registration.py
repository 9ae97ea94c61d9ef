"""Registers the testbeds with gymnasium as ``ruagent/<Name>-v0`` (called by ``import ruagent``).

Entry points are strings, so registering imports nothing heavy.
"""

from __future__ import annotations

import gymnasium as gym

__all__ = ["ENV_IDS", "register_envs"]

#: id -> (entry point, default kwargs, max_episode_steps or None)
ENV_IDS: dict[str, tuple[str, dict, int | None]] = {}


def register_envs() -> None:
    """Register every testbed id once (idempotent)."""
    for env_id, (entry_point, kwargs, max_steps) in ENV_IDS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry_point, kwargs=kwargs, max_episode_steps=max_steps)
