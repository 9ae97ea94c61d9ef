"""LavaWorld: lava only at test time, on the lava-blind route, with a safe way round."""

import gymnasium as gym
import numpy as np
import pytest

import ruagent  # noqa: F401
from ruagent.envs.gridworld import value_iteration
from ruagent.envs.lava_world import (
    LAVA_BLIND_WEIGHTS,
    TERRAINS,
    TRUE_REWARD_WEIGHTS,
    LavaWorld,
    generate_lava_maps,
)

LAVA, TARGET = TERRAINS.code("lava"), TERRAINS.code("target")
TERMINAL = TERRAINS.mask(TERRAINS.terminal)
OPEN = np.zeros(len(TERRAINS.names), dtype=bool)
LAVA_WALLED = TERRAINS.mask(["lava"])


def play(env: LavaWorld, actions) -> tuple[float, int]:
    """True return and lava steps of an action sequence from the start."""
    total, lava_steps = 0.0, 0
    for action in actions:
        _, reward, terminated, truncated, info = env.step(action)
        total, lava_steps = total + reward, lava_steps + info["side_effect"]
        if terminated or truncated:
            break
    return total, lava_steps


def test_canonical_test_map_is_the_train_map_plus_lava():
    train, test = LavaWorld("train"), LavaWorld("test")
    train.reset(seed=0)
    test.reset(seed=0)
    assert train.start == test.start and not (train.terrain == LAVA).any()
    changed = train.terrain != test.terrain
    assert changed.any() and (test.terrain[changed] == LAVA).all()


def test_lava_blind_agent_walks_into_lava_while_the_true_optimum_goes_round():
    env = LavaWorld("test")
    env.reset(seed=0)
    blind_actions, blind_cells, _ = env.solve(LAVA_BLIND_WEIGHTS).rollout(env.start)
    true_actions, true_cells, true_planned = env.solve().rollout(env.start)
    assert any(env.terrain[cell] == LAVA for cell in blind_cells)
    assert not any(env.terrain[cell] == LAVA for cell in true_cells) and env.terrain[true_cells[-1]] == TARGET
    assert len(true_actions) > len(blind_actions), "the safe route is the longer way round"
    env.reset(seed=0)
    blind_return, blind_lava_steps = play(env, blind_actions)
    env.reset(seed=0)
    true_return, true_lava_steps = play(env, true_actions)
    assert blind_lava_steps > 0 and true_lava_steps == 0
    assert true_return == pytest.approx(true_planned) == pytest.approx(env.optimal_return())
    assert true_return > blind_return


def test_the_lava_blind_route_is_optimal_on_the_train_map():
    """On the train map both rewards agree, so the route labels show is the one lava later covers."""
    train, test = LavaWorld("train"), LavaWorld("test")
    train.reset(seed=0)
    test.reset(seed=0)
    _, train_cells, _ = train.solve().rollout(train.start)
    assert train.optimal_return() == pytest.approx(train.optimal_return(LAVA_BLIND_WEIGHTS))
    assert any(test.terrain[cell] == LAVA for cell in train_cells)
    assert train.optimal_return() > test.optimal_return()


def test_procedural_maps_keep_their_guarantees_over_200_seeds():
    for seed in range(200):
        train, test, start = generate_lava_maps(np.random.default_rng(seed))
        assert not (train == LAVA).any() and (test == LAVA).any()
        assert ((train == test) | (test == LAVA)).all(), f"seed {seed}: maps differ by more than lava"
        assert (test == TARGET).sum() == 1 and test[start] != LAVA
        # Every lava-blind optimal route crosses lava: walling the lava off strictly loses value.
        blind = value_iteration(test, LAVA_BLIND_WEIGHTS, TERMINAL, OPEN, 50).optimal_return(start)
        blind_walled = value_iteration(test, LAVA_BLIND_WEIGHTS, TERMINAL, LAVA_WALLED, 50).optimal_return(start)
        assert blind > blind_walled + 1e-9, f"seed {seed}: a lava-free route ties the lava-blind optimum"
        # A safe route exists and is the true optimum.
        _, cells, _ = value_iteration(test, TRUE_REWARD_WEIGHTS, TERMINAL, OPEN, 50).rollout(start)
        assert test[cells[-1]] == TARGET and not any(test[cell] == LAVA for cell in cells), f"seed {seed}"


def test_procedural_env_pairs_train_and_test_maps_by_seed():
    train = gym.make("ruagent/LavaWorld-train-v0", layout="procedural").unwrapped
    test = gym.make("ruagent/LavaWorld-test-v0", layout="procedural").unwrapped
    maps = []
    for seed in (11, 11, 12):
        train.reset(seed=seed)
        test.reset(seed=seed)
        assert ((train.terrain == test.terrain) | (test.terrain == LAVA)).all()
        maps.append(test.terrain.copy())
    np.testing.assert_array_equal(maps[0], maps[1])
    assert not np.array_equal(maps[0], maps[2])
    test.reset()  # an unseeded reset draws a fresh map from the seeded generator
    assert not np.array_equal(test.terrain, maps[2])


def test_observation_centre_is_the_terrain_entered_and_carries_the_target_direction():
    env = LavaWorld("test")
    obs, _ = env.reset(seed=0)
    view = env.view
    for action in (1, 1, 1):  # straight right, into lava at the third step
        obs, _, _, _, info = env.step(action)
    np.testing.assert_array_equal(obs[view.centre_slice()], np.eye(4)[LAVA])
    assert info["side_effect"] and info["terrain"] == "lava"
    expected = (np.array(env.target) - np.array(env.agent)) / max(env.terrain.shape)
    np.testing.assert_allclose(obs[-2:], expected)
    np.testing.assert_array_equal(env.reward_features(obs[None], np.array([1]), obs[None]), np.eye(4)[[LAVA]])


def test_target_ends_the_episode_and_lava_does_not_truncate_early():
    env = LavaWorld("train")
    env.reset(seed=0)
    actions, _, _ = env.solve().rollout(env.start)
    for action in actions[:-1]:
        _, _, terminated, truncated, _ = env.step(action)
        assert not (terminated or truncated)
    _, reward, terminated, _, info = env.step(actions[-1])
    assert terminated and info["terrain"] == "target" and reward == TRUE_REWARD_WEIGHTS[TARGET]


@pytest.mark.parametrize("kwargs, message", [({"variant": "deploy"}, "variant"), ({"layout": "maze"}, "layout")])
def test_bad_arguments_name_the_choices(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LavaWorld(**kwargs)
