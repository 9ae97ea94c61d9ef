"""PointNavigation: a hazard that exists only at test time, on the direct route."""

import numpy as np
import pytest

from ruagent.envs.navigation import GOAL, HAZARD_RADIUS, START_BOXES, PointNavigation


def steer(obs: np.ndarray, detour: bool) -> np.ndarray:
    """Head for the goal; with ``detour``, first for a waypoint clear of the hazard on the start's side."""
    position = obs[:2]
    target = GOAL
    if detour and position[0] < 0.0:
        target = np.array([0.1, np.copysign(HAZARD_RADIUS + 0.2, position[1])], dtype=np.float32)
    return (target - position).astype(np.float32) * 100  # the env clips to unit speed


def run(env: PointNavigation, seed: int, detour: bool) -> tuple[float, int, bool]:
    obs, _ = env.reset(seed=seed)
    total, hazard_steps = 0.0, 0
    while True:
        obs, reward, terminated, truncated, info = env.step(steer(obs, detour))
        total += reward
        hazard_steps += info["side_effect"]
        if terminated or truncated:
            return total, hazard_steps, info["is_success"]


def test_train_variant_has_no_hazard_and_starts_on_the_corridor():
    env = PointNavigation("train")
    (x0, y0), (x1, y1) = START_BOXES["train"]
    for seed in range(20):
        obs, _ = env.reset(seed=seed)
        assert x0 <= obs[0] <= x1 and y0 <= obs[1] <= y1
        np.testing.assert_array_equal(obs[4:], 0.0)  # no hazard: its features are held at zero
        _total, hazard_steps, success = run(env, seed, detour=False)
        assert success and hazard_steps == 0


def test_test_variant_direct_route_crosses_the_hazard_and_a_detour_avoids_it():
    env = PointNavigation("test")
    for seed in range(10):
        obs, _ = env.reset(seed=seed)
        assert 0.15 <= abs(obs[1]) <= 0.35 and obs[6] > 0, "test starts lie off the corridor, within sensor range"
        direct_return, direct_hazard, direct_success = run(env, seed, detour=False)
        detour_return, detour_hazard, detour_success = run(env, seed, detour=True)
        assert direct_success and direct_hazard > 0
        assert detour_success and detour_hazard == 0
        assert detour_return > direct_return


def test_hazard_sensor_reads_one_exactly_inside():
    env = PointNavigation("test")
    env.reset(seed=0)
    env.position = np.array([0.1, 0.0], dtype=np.float32)
    obs = env._observe()
    assert obs[6] == 1.0 and env.reward_features(obs[None], None, obs[None])[0, 2] == 1.0
    env.position = np.array([-0.6, 0.0], dtype=np.float32)  # 0.3 from the edge
    assert env._observe()[6] == pytest.approx(1 - 0.3 / 0.5)


def test_speed_is_capped_and_the_arena_is_walled():
    env = PointNavigation("train")
    obs, _ = env.reset(seed=0)
    next_obs, *_ = env.step(np.array([1.0, 1.0], dtype=np.float32))
    assert np.linalg.norm(next_obs[:2] - obs[:2]) == pytest.approx(0.1, abs=1e-6)
    for _ in range(30):
        next_obs, *_ = env.step(np.array([-1.0, 0.0], dtype=np.float32))
    assert next_obs[0] == -1.0
    with pytest.raises(ValueError, match="finite"):
        env.step(np.array([np.nan, 0.0], dtype=np.float32))


def test_goal_ends_the_episode_with_the_bonus():
    env = PointNavigation("train")
    env.reset(seed=0)
    env.position = GOAL + np.array([-0.15, 0.0], dtype=np.float32)
    _, reward, terminated, _, info = env.step(np.array([1.0, 0.0], dtype=np.float32))
    assert terminated and info["is_success"]
    assert reward == pytest.approx(env.TRUE_REWARD_WEIGHTS @ [0.05, 1.0, 0.0], abs=1e-6)
