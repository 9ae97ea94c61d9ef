"""Segments from rollouts: windows, padding, masks, returns; pairs."""

import gymnasium as gym
import numpy as np
import pytest

from ruagent.preferences.segments import (
    SegmentPairs,
    SegmentRecorder,
    Segments,
    candidate_pairs,
    collect_segments,
    make_pairs,
    member_segment_returns,
)

from .conftest import LinearRewardWalk


def test_recorder_cuts_episodes_into_padded_windows():
    recorder = SegmentRecorder(segment_length=4, n_envs=2)
    # env 0: episode of 6 steps; env 1: episode of 3 steps then 2 more steps
    for t in range(6):
        obs = np.array([[t, 0.0], [t, 1.0]])
        recorder.add(obs, np.array([t, 10 + t]), obs + 1, np.array([t, 10.0 + t]), np.array([t == 5, t == 2]))
    segments = recorder.pop()
    assert recorder.pop() is None
    # env 0 gives [0..3] and [4, 5]+pad; env 1 gives [0..2]+pad and [3..5] is still open
    assert len(segments) == 3
    lengths = segments.mask.sum(axis=1)
    assert sorted(lengths.tolist()) == [2, 3, 4]
    short = segments[np.flatnonzero(lengths == 2)]
    np.testing.assert_array_equal(short.actions[0], [4, 5, 5, 5])  # padded by repeating the last step
    np.testing.assert_allclose(short.env_returns(), [9.0])  # padding is masked out of the return
    assert segments.obs.shape == (3, 4, 2) and segments.env_rewards.dtype == np.float32


def test_collect_segments_shapes_and_truth():
    env = LinearRewardWalk(horizon=10)
    segments = collect_segments(env, n_segments=12, segment_length=4, seed=0)
    assert segments.obs.shape == (12, 4, 2) and segments.actions.shape == (12, 4)
    # every env reward is the true reward of the recorded next observation
    np.testing.assert_allclose(segments.env_rewards, segments.next_obs @ np.array([1.0, -0.5]), rtol=1e-5)
    # horizon 10 with T=4: windows of 4, 4, 2 per episode
    assert set(segments.mask.sum(axis=1).tolist()) == {2, 4}
    again = collect_segments(LinearRewardWalk(horizon=10), n_segments=12, segment_length=4, seed=0)
    np.testing.assert_array_equal(segments.obs, again.obs)  # seeded


def test_frames_are_kept_for_the_human_labeller():
    env = LinearRewardWalk(horizon=10, render_mode="ansi")
    segments = collect_segments(env, n_segments=3, segment_length=5, seed=0, record_frames=True)
    assert segments.frames.shape == (3, 5) and segments.frames.dtype.kind == "U"
    pairs = make_pairs(segments, 4, np.random.default_rng(0))
    assert pairs.frames.shape == (4, 2, 5)
    with pytest.raises(ValueError, match="render_mode"):
        collect_segments(LinearRewardWalk(), 2, 5, record_frames=True)


def test_pairs_never_compare_a_segment_with_itself():
    index = candidate_pairs(3, 1000, np.random.default_rng(0))
    assert index.shape == (1000, 2) and np.all(index[:, 0] != index[:, 1])
    assert set(index.ravel().tolist()) == {0, 1, 2}
    with pytest.raises(ValueError, match="at least 2"):
        candidate_pairs(1, 5, np.random.default_rng(0))


def test_member_returns_are_masked_sums_of_one_predict_call():
    class Linear:
        n_members = 2
        calls = 0

        def predict(self, obs, action, next_obs):
            Linear.calls += 1
            return np.stack([next_obs[:, 0], 2 * next_obs[:, 1]]).astype(np.float32)

    segments = collect_segments(LinearRewardWalk(horizon=7), 6, 5, seed=1)
    pairs = make_pairs(segments, 8, np.random.default_rng(1))
    returns = member_segment_returns(Linear(), pairs)
    assert returns.shape == (2, 8, 2) and Linear.calls == 1
    expected = np.where(pairs.mask, pairs.next_obs[..., 0], 0).sum(-1)
    np.testing.assert_allclose(returns[0], expected, rtol=1e-5)


def test_bad_inputs_are_refused():
    env = gym.make("CartPole-v1")
    env.observation_space = gym.spaces.Dict({"x": env.observation_space})
    with pytest.raises(TypeError, match="FlattenObservation"):
        collect_segments(env, 2, 5)
    with pytest.raises(ValueError, match="mask"):
        Segments(np.zeros((2, 3, 1)), np.zeros((2, 3)), np.zeros((2, 3, 1)), np.zeros((2, 3)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="leading shape"):
        SegmentPairs(
            np.zeros((2, 2, 3)), np.zeros((2, 2, 3)), np.zeros((2, 2, 3)), np.zeros((2, 3)), np.ones((2, 2, 3), bool)
        )
