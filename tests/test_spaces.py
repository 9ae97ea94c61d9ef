"""JSON space descriptions: round trips, equality, and errors."""

import json

import numpy as np
import pytest
from gymnasium import spaces

from ruagent.spaces import UnsupportedSpaceError, space_from_dict, space_to_dict, spaces_equal

ROUND_TRIP = [
    spaces.Box(-np.inf, np.inf, (3,)),
    spaces.Box(low=np.array([-1.0, 0.0]), high=np.array([1.0, np.inf]), dtype=np.float64),
    spaces.Box(0, 255, (4, 4, 3), dtype=np.uint8),
    spaces.Discrete(5, start=-2),
    spaces.MultiDiscrete([[2, 3], [4, 5]], start=[[0, 1], [-1, 0]]),
    spaces.MultiBinary(4),
    spaces.MultiBinary([2, 3]),
    spaces.Dict({"b": spaces.Discrete(2), "a": spaces.Tuple([spaces.Box(-1, 1, (2,)), spaces.MultiBinary(3)])}),
    spaces.Tuple([spaces.Discrete(32), spaces.Discrete(11), spaces.Discrete(2)]),  # Blackjack-v1
]


@pytest.mark.parametrize("space", ROUND_TRIP, ids=lambda s: type(s).__name__)
def test_round_trip_through_json(space):
    text = json.dumps(space_to_dict(space))
    rebuilt = space_from_dict(json.loads(text))
    assert rebuilt == space
    assert spaces_equal(rebuilt, space)
    assert type(rebuilt) is type(space)


def test_equality_ignores_seeding_but_not_structure():
    a, b = spaces.Box(-1, 1, (2,), seed=0), spaces.Box(-1, 1, (2,), seed=1)
    assert spaces_equal(a, b)
    assert not spaces_equal(a, spaces.Box(-1, 2, (2,)))
    assert not spaces_equal(a, spaces.Box(-1, 1, (2,), dtype=np.float64))
    assert not spaces_equal(spaces.Discrete(3), spaces.Discrete(3, start=1))
    assert not spaces_equal(spaces.Dict({"a": spaces.Discrete(2)}), spaces.Dict({"b": spaces.Discrete(2)}))


def test_unsupported_space_is_named_with_a_fix():
    with pytest.raises(UnsupportedSpaceError, match=r"Text.*observation wrapper"):
        space_to_dict(spaces.Text(4))
    assert spaces_equal(spaces.Text(4), spaces.Text(4))  # falls back to gymnasium equality


def test_unknown_description_is_refused():
    with pytest.raises(ValueError, match="unknown space description type 'Pixels'"):
        space_from_dict({"type": "Pixels"})
