"""Hypothesis strategies for random gymnasium spaces, batches of their values, and a tiny env.

Spaces cover what ruagent declares it supports (Box of random shapes, bounds that may be
infinite, float and integer dtypes; Discrete with start offsets; MultiDiscrete with starts;
MultiBinary of any shape; Dict/Tuple nested) and, mixed in, spaces it declares it does not
(Text, Sequence), for which the declared error is :class:`ruagent.spaces.UnsupportedSpaceError`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

__all__ = [
    "RandomSpaceEnv",
    "action_spaces_for_vec_env",
    "any_spaces",
    "batch_of",
    "is_supported",
    "observation_spaces_for_vec_env",
    "seeds",
    "supported_spaces",
]

seeds = st.integers(0, 2**32 - 1)
_shapes = st.lists(st.integers(1, 3), min_size=0, max_size=3).map(tuple)
_finite_bound = st.floats(-100.0, 100.0, allow_nan=False, allow_infinity=False, width=32)


@st.composite
def box_spaces(draw: st.DrawFn) -> spaces.Box:
    """Box of a random shape (scalar included); float bounds per element may be ±inf."""
    shape = draw(_shapes)
    if draw(st.booleans()):  # integer dtype: finite bounds only (gymnasium's rule)
        low = draw(hnp.arrays(np.int64, shape, elements=st.integers(-10, 10)))
        high = low + draw(hnp.arrays(np.int64, shape, elements=st.integers(0, 10)))
        return spaces.Box(low, high, shape=shape, dtype=np.int64)
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    low = draw(hnp.arrays(np.float64, shape, elements=st.one_of(st.just(-np.inf), _finite_bound)))
    high = draw(hnp.arrays(np.float64, shape, elements=st.one_of(st.just(np.inf), _finite_bound)))
    low, high = np.minimum(low, high), np.maximum(low, high)
    return spaces.Box(low.astype(dtype), high.astype(dtype), shape=shape, dtype=dtype)


@st.composite
def discrete_spaces(draw: st.DrawFn) -> spaces.Discrete:
    return spaces.Discrete(draw(st.integers(1, 5)), start=draw(st.integers(-3, 3)))


@st.composite
def multi_discrete_spaces(draw: st.DrawFn) -> spaces.MultiDiscrete:
    shape = draw(st.sampled_from([(1,), (2,), (3,), (2, 2)]))
    nvec = draw(hnp.arrays(np.int64, shape, elements=st.integers(1, 4)))
    start = draw(st.one_of(st.none(), hnp.arrays(np.int64, shape, elements=st.integers(-2, 2))))
    return spaces.MultiDiscrete(nvec, start=start)


multi_binary_spaces = st.one_of(
    st.integers(1, 4), st.lists(st.integers(1, 3), min_size=1, max_size=2)
).map(spaces.MultiBinary)

leaf_spaces = st.one_of(box_spaces(), discrete_spaces(), multi_discrete_spaces(), multi_binary_spaces)
unsupported_spaces = st.sampled_from(["text", "sequence"]).map(
    lambda kind: spaces.Text(4) if kind == "text" else spaces.Sequence(spaces.Discrete(2))
)


def _nest(children: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(
        st.dictionaries(st.sampled_from("abcde"), children, min_size=1, max_size=3).map(spaces.Dict),
        st.lists(children, min_size=1, max_size=3).map(spaces.Tuple),
    )


#: supported spaces, nested Dict/Tuple up to a few leaves.
supported_spaces = st.recursive(leaf_spaces, _nest, max_leaves=5)
#: mostly supported spaces; about one in eight holds an unsupported leaf somewhere.
any_spaces = st.recursive(
    st.one_of(leaf_spaces, leaf_spaces, leaf_spaces, unsupported_spaces), _nest, max_leaves=5
)
#: what SB3's VecEnvs store: a leaf, or a Dict/Tuple of leaves (SB3 refuses nesting).
observation_spaces_for_vec_env = st.one_of(
    leaf_spaces,
    st.dictionaries(st.sampled_from("abcde"), leaf_spaces, min_size=1, max_size=3).map(spaces.Dict),
    st.lists(leaf_spaces, min_size=1, max_size=3).map(spaces.Tuple),
)
#: SB3 VecEnvs index actions by env along axis 0, so actions must be a single array.
action_spaces_for_vec_env = leaf_spaces


def is_supported(space: gym.Space) -> bool:
    """Whether every leaf of ``space`` is one ruagent declares it supports."""
    if isinstance(space, spaces.Dict):
        return all(is_supported(sub) for sub in space.spaces.values())
    if isinstance(space, spaces.Tuple):
        return all(is_supported(sub) for sub in space.spaces)
    return isinstance(space, (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary))


def _stack(space: gym.Space, values: list) -> Any:
    if isinstance(space, spaces.Dict):
        return {key: _stack(sub, [value[key] for value in values]) for key, sub in space.spaces.items()}
    if isinstance(space, spaces.Tuple):
        return tuple(_stack(sub, [value[i] for value in values]) for i, sub in enumerate(space.spaces))
    return np.stack([np.asarray(value, dtype=space.dtype) for value in values])


def batch_of(space: gym.Space, batch_size: int, seed: int) -> tuple[Any, list]:
    """``(batched, rows)``: B seeded samples of ``space``, stacked along a leading axis (dicts and
    tuples of stacked arrays for Dict/Tuple), and the B unbatched samples."""
    space.seed(seed)
    rows = [space.sample() for _ in range(batch_size)]
    return _stack(space, rows), rows


class RandomSpaceEnv(gym.Env):
    """An env over arbitrary spaces: observations are seeded samples of its observation space,
    the reward a fixed function of the action's flattening, episodes ``horizon`` steps long."""

    metadata: ClassVar[dict] = {"render_modes": []}

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, horizon: int = 3) -> None:
        self.observation_space = observation_space
        self.action_space = action_space
        self.horizon = horizon

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        if seed is not None:
            self.observation_space.seed(seed)
        self._t = 0
        return self.observation_space.sample(), {}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        self._t += 1
        reward = float(np.tanh(spaces.flatten(self.action_space, action).astype(np.float64).sum()))
        return self.observation_space.sample(), reward, False, self._t >= self.horizon, {}
