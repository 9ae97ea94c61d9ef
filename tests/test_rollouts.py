"""ruagent.rollouts: per-episode bookkeeping of truth, proxy, side effects and the oracle."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import ruagent  # noqa: F401  (registers the testbeds)
from ruagent.envs.two_hypothesis_cartpole import TwoHypothesisCartPolePosterior
from ruagent.rollouts import run_episodes, stack_observations


def test_episode_sums_match_a_manual_rollout():
    env = gym.make("ruagent/TwoHypothesisCartPole-v0", variant="test")
    posterior = TwoHypothesisCartPolePosterior()
    episodes = run_episodes(env, None, 4, reward_model=posterior, seed=7)
    # Replay by hand with the same seeds: same actions, rewards and side effects.
    env.action_space.seed(7)
    manual_returns, manual_lengths, manual_side_effects = [], [], []
    for episode in range(4):
        env.reset(seed=7 if episode == 0 else None)
        total, length, side_effect, done = 0.0, 0, False, False
        while not done:
            _, reward, terminated, truncated, info = env.step(env.action_space.sample())
            total, length, done = total + reward, length + 1, terminated or truncated
            side_effect |= info["side_effect"]
        manual_returns.append(total)
        manual_lengths.append(length)
        manual_side_effects.append(float(side_effect))
    np.testing.assert_allclose(episodes.true_returns(), manual_returns)
    np.testing.assert_array_equal(episodes.lengths(), manual_lengths)
    np.testing.assert_array_equal(episodes.side_effect_episodes(), manual_side_effects)
    # Proxy: the posterior mean (0.95·r0 + 0.05·r1) of every transition, summed per episode.
    members = posterior.predict(episodes.obs, episodes.actions, episodes.next_obs)
    np.testing.assert_array_equal(episodes.member_rewards, members)
    per_step_mean = posterior.member_probs @ members
    np.testing.assert_allclose(episodes.proxy_returns(), np.bincount(episodes.episode_ids, per_step_mean))
    np.testing.assert_allclose(episodes.goodhart_gaps(), episodes.proxy_returns() - episodes.true_returns())
    assert episodes.optimal_returns is None and episodes.frames is None


def test_solver_gives_the_optimal_return_of_each_episode():
    # DistributionalShift: optimal true returns 42 (train), 40 (test 1), 44 (test 2); docs/envs.md.
    for variant, optimum in (("train", 42.0), ("test1", 40.0), ("test2", 44.0)):
        env = gym.make("ruagent/DistributionalShift-v0", variant=variant)
        episodes = run_episodes(env, None, 3, seed=0, solve_optimal=True)
        np.testing.assert_array_equal(episodes.optimal_returns, optimum)
        assert np.all(episodes.optimal_returns >= episodes.true_returns())


def test_policies_seeding_and_rendering():
    env = gym.make("ruagent/LavaWorld-v0", variant="test", render_mode="rgb_array")
    first = run_episodes(env, None, 2, seed=3, render=True)
    again = run_episodes(env, None, 2, seed=3)
    np.testing.assert_array_equal(first.actions, again.actions)
    assert [len(f) for f in first.frames] == list(first.lengths() + 1)  # reset frame + one per step
    # Grid envs also give the agent's cell centre in pixels, starting at the start cell.
    assert [len(p) for p in first.positions] == list(first.lengths() + 1)
    grid = env.unwrapped
    cell = first.frames[0][0].shape[0] / grid.terrain.shape[0]
    np.testing.assert_allclose(first.positions[0][0], [(grid.start[1] + 0.5) * cell, (grid.start[0] + 0.5) * cell])
    always_right = run_episodes(env, lambda obs: 1, 1, seed=0)
    assert set(always_right.actions.tolist()) == {1}
    with pytest.raises(ValueError, match="n_episodes"):
        run_episodes(env, None, 0)
    with pytest.raises(TypeError, match="policy must be"):
        run_episodes(env, "greedy", 1)
    with pytest.raises(ValueError, match="without a reward model"):
        again.proxy_returns()


def test_stack_observations_keeps_dict_and_tuple_structure():
    items = [{"a": np.array([i, i]), "b": (np.float32(i), np.array([[i]]))} for i in range(3)]
    stacked = stack_observations(items)
    assert stacked["a"].shape == (3, 2) and stacked["b"][0].shape == (3,) and stacked["b"][1].shape == (3, 1, 1)
    np.testing.assert_array_equal(stacked["b"][1][:, 0, 0], [0, 1, 2])
