"""An explicit, JSON-able description of gymnasium spaces.

Saved posteriors record the spaces they were fitted on in this form (never pickled), so
that loading can rebuild them and refuse an env whose spaces differ.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

__all__ = ["UnsupportedSpaceError", "space_from_dict", "space_to_dict", "spaces_equal"]


class UnsupportedSpaceError(TypeError):
    """A gymnasium space that ruagent cannot turn into a fixed-size vector."""

    def __init__(self, space: spaces.Space, where: str = "space") -> None:
        super().__init__(
            f"{where} {space!r} ({type(space).__name__}) is not supported: ruagent handles Box, Discrete, "
            "MultiDiscrete, MultiBinary and Dict/Tuple of those. Text, Graph and Sequence spaces, and custom "
            "spaces such as MiniGrid's MissionSpace, have no fixed-size encoding, so "
            "gymnasium.wrappers.FlattenObservation cannot flatten them either. Drop or encode that part with an "
            "observation wrapper: MiniGrid's ImgObsWrapper (keeps the image, drops the mission text), "
            "gymnasium.wrappers.FilterObservation(env, filter_keys=[...]) for the other keys of a Dict "
            "observation, or your own gymnasium.ObservationWrapper; or pass features=callable, a function "
            "(obs, action, next_obs) -> float array (B, D), to the reward model."
        )
        self.space = space


def _array(values: Any) -> list:
    return np.asarray(values).tolist()


def space_to_dict(space: spaces.Space) -> dict[str, Any]:
    """Describe ``space`` as plain JSON-able data (floats may be +-inf)."""
    if isinstance(space, spaces.Box):
        return {
            "type": "Box",
            "low": _array(space.low),
            "high": _array(space.high),
            "shape": list(space.shape),
            "dtype": str(space.dtype),
        }
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.MultiDiscrete):
        return {
            "type": "MultiDiscrete",
            "nvec": _array(space.nvec),
            "start": _array(space.start),
            "dtype": str(space.dtype),
        }
    if isinstance(space, spaces.MultiBinary):
        return {"type": "MultiBinary", "n": _array(space.n)}
    if isinstance(space, spaces.Dict):
        return {"type": "Dict", "spaces": {key: space_to_dict(sub) for key, sub in space.spaces.items()}}
    if isinstance(space, spaces.Tuple):
        return {"type": "Tuple", "spaces": [space_to_dict(sub) for sub in space.spaces]}
    raise UnsupportedSpaceError(space)


def space_from_dict(data: dict[str, Any]) -> spaces.Space:
    """Inverse of :func:`space_to_dict`."""
    kind = data.get("type")
    if kind == "Box":
        dtype = np.dtype(data["dtype"])
        return spaces.Box(
            low=np.asarray(data["low"], dtype=dtype),
            high=np.asarray(data["high"], dtype=dtype),
            shape=tuple(data["shape"]),
            dtype=dtype,
        )
    if kind == "Discrete":
        return spaces.Discrete(data["n"], start=data["start"])
    if kind == "MultiDiscrete":
        return spaces.MultiDiscrete(data["nvec"], dtype=np.dtype(data["dtype"]), start=data["start"])
    if kind == "MultiBinary":
        n = data["n"]
        return spaces.MultiBinary(n if isinstance(n, int) else list(n))
    if kind == "Dict":
        return spaces.Dict({key: space_from_dict(sub) for key, sub in data["spaces"].items()})
    if kind == "Tuple":
        return spaces.Tuple([space_from_dict(sub) for sub in data["spaces"]])
    raise ValueError(f"unknown space description type {kind!r}; the file may be corrupt or from a newer ruagent")


def spaces_equal(a: spaces.Space, b: spaces.Space) -> bool:
    """Structural equality that treats Box bounds by value (inf == inf) and ignores seeding."""
    try:
        return space_to_dict(a) == space_to_dict(b)
    except UnsupportedSpaceError:
        return a == b
