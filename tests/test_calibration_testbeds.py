"""Groups of transitions for calibration reports: side effects recorded, groups found, controllers work."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import ruagent  # noqa: F401  (registers the testbeds)
from ruagent.calibration_testbeds import CALIBRATION_TESTBEDS, collect_steps, testbed_groups


def test_collect_steps_records_side_effects_and_step_indices():
    env = gym.make("ruagent/LavaWorld-v0", variant="test")
    steps = collect_steps(env, 600, seed=3)
    assert len(steps) == 600 and steps.side_effect.any()
    hazard = steps.select(steps.side_effect)
    np.testing.assert_allclose(hazard.reward, -2.0)  # entering lava
    ends = steps.transitions.terminated | steps.transitions.truncated
    assert steps.step[0] == 0 and np.all(steps.step[1:][ends[:-1]] == 0)  # restarts after each episode end
    assert np.all(np.diff(steps.step)[~ends[:-1]] == 1)
    again = collect_steps(env, 600, seed=3)
    np.testing.assert_array_equal(again.transitions.reward, steps.transitions.reward)  # seeded


@pytest.mark.parametrize("name", ["PointNavigation", "DistributionalShift", "MountainCarContinuous", "Pendulum"])
def test_testbed_groups_find_their_transitions(name):
    groups = testbed_groups(name, seed=1, n_heldout=100, n_deployment=300, n_target=50)
    testbed = CALIBRATION_TESTBEDS[name]
    assert len(groups["heldout"]) == 100
    if testbed.hazard:
        assert set(groups) == {"heldout", "deployment", "hazard"} and len(groups["hazard"]) == 50
        assert len(groups["deployment"]) > 0
    else:
        assert set(groups) == {"heldout", "unreached"} and len(groups["unreached"]) == 50
    if name == "MountainCarContinuous":
        assert np.all(groups["unreached"].next_obs[:, 0] > 0.2)
        assert groups["heldout"].next_obs[:, 0].max() < 0.2  # the random policy never gets there
    if name == "Pendulum":
        upright = groups["unreached"].next_obs
        assert np.all(np.abs(np.arctan2(upright[:, 1], upright[:, 0])) < 0.5)


def test_cartpole_controller_balances():
    env = gym.make("CartPole-v1")
    act = CALIBRATION_TESTBEDS["CartPole"].scripted(env, np.random.default_rng(0))
    steps = collect_steps(env, 500, act, seed=0)
    assert not steps.transitions.terminated.any()  # 500 steps without the pole falling
