"""Labellers: the synthetic one's statistics match its temperature; the human one's commands."""

import io

import numpy as np
import pytest

from ruagent.preferences.labellers import HumanLabeller, LabellingQuit, SyntheticLabeller, make_labeller
from ruagent.preferences.segments import SegmentPairs, collect_segments, make_pairs

from .conftest import LinearRewardWalk


def _pairs_with_return_differences(delta: np.ndarray) -> SegmentPairs:
    """Pairs of 1-step segments whose true returns differ by ``delta``."""
    b = len(delta)
    rewards = np.stack([delta, np.zeros(b)], axis=1)[..., None].astype(np.float32)  # (B, 2, 1)
    zeros = np.zeros((b, 2, 1, 2), dtype=np.float32)
    return SegmentPairs(zeros, np.zeros((b, 2, 1)), zeros, rewards, np.ones((b, 2, 1), bool))


@pytest.mark.parametrize(("temperature", "error_rate"), [(0.5, 0.0), (2.0, 0.0), (1.0, 0.2)])
def test_synthetic_preference_rate_matches_boltzmann_rationality(temperature, error_rate):
    levels = np.array([-3.0, -1.0, -0.25, 0.0, 0.5, 2.0])
    n = 4000
    pairs = _pairs_with_return_differences(np.repeat(levels, n))
    labels = SyntheticLabeller(temperature, error_rate, seed=0).label(pairs).reshape(len(levels), n)
    rate = labels.mean(axis=1)
    expected = error_rate / 2 + (1 - error_rate) / (1 + np.exp(-levels / temperature))
    standard_error = np.sqrt(expected * (1 - expected) / n)
    np.testing.assert_array_less(np.abs(rate - expected), 4 * standard_error + 1e-9)


def test_temperatures_are_distinguishable_and_labeller_is_seeded():
    pairs = _pairs_with_return_differences(np.full(4000, 1.0))
    cold = SyntheticLabeller(0.25, seed=1).label(pairs).mean()
    hot = SyntheticLabeller(4.0, seed=1).label(pairs).mean()
    assert cold > 0.95 and 0.5 < hot < 0.6
    np.testing.assert_array_equal(SyntheticLabeller(seed=3).label(pairs), SyntheticLabeller(seed=3).label(pairs))
    with pytest.raises(ValueError, match="temperature"):
        SyntheticLabeller(0.0)
    with pytest.raises(ValueError, match="label_noise"):
        SyntheticLabeller(error_rate=1.5)


def _scripted(answers):
    answers = iter(answers)
    return lambda prompt: next(answers)


def test_human_answers_skip_and_undo():
    pairs = make_pairs(collect_segments(LinearRewardWalk(horizon=6), 6, 3, seed=0), 4, np.random.default_rng(0))
    out = io.StringIO()
    # pair 1: "1"; pair 2: "2" then undo, re-answer "="; pair 3: skip; pair 4: "?" (unknown) then "b"
    labeller = HumanLabeller(_scripted(["1", "2", "u", "=", "s", "?", "b"]), output=out)
    labels = labeller.label(pairs)
    np.testing.assert_array_equal(labels[[0, 1, 3]], [1.0, 0.5, 0.0])
    assert np.isnan(labels[2])
    text = out.getvalue()
    assert "pair 4 of 4" in text and "Undone" in text and "Unrecognised" in text and "observations" in text


def test_human_quit_carries_the_answers_so_far():
    pairs = make_pairs(collect_segments(LinearRewardWalk(horizon=6), 6, 3, seed=0), 3, np.random.default_rng(0))
    with pytest.raises(LabellingQuit) as stop:
        HumanLabeller(_scripted(["2", "q"]), output=io.StringIO()).label(pairs)
    np.testing.assert_array_equal(stop.value.labels[:1], [0.0])
    assert np.isnan(stop.value.labels[1:]).all()

    def interrupted(prompt):
        raise KeyboardInterrupt

    with pytest.raises(LabellingQuit):
        HumanLabeller(interrupted, output=io.StringIO()).label(pairs)


def test_human_sees_ansi_side_by_side_and_rgb_as_an_image(tmp_path):
    env = LinearRewardWalk(horizon=6, render_mode="ansi")
    pairs = make_pairs(collect_segments(env, 4, 3, seed=0, record_frames=True), 1, np.random.default_rng(0))
    out = io.StringIO()
    HumanLabeller(_scripted(["1"]), output=out).label(pairs)
    line = next(line for line in out.getvalue().splitlines() if line.startswith("first t=0"))
    assert "second t=0" in line  # both segments on one line: side by side

    env = LinearRewardWalk(horizon=6, render_mode="rgb_array")
    pairs = make_pairs(collect_segments(env, 4, 3, seed=0, record_frames=True), 2, np.random.default_rng(0))
    out = io.StringIO()
    HumanLabeller(_scripted(["1", "2"]), output=out, image_dir=tmp_path).label(pairs)
    images = sorted(tmp_path.glob("*.png"))
    assert len(images) == 2 and images[0].read_bytes()[:4] == b"\x89PNG"
    assert str(images[0].resolve()) in out.getvalue()


def test_make_labeller():
    assert isinstance(make_labeller("synthetic", seed=0, temperature=2.0), SyntheticLabeller)
    assert isinstance(make_labeller("human"), HumanLabeller)
    with pytest.raises(ValueError, match="synthetic"):
        make_labeller("oracle")


# ---------------------------------------------------------------------------- B-Pref's simulated teachers
def _pairs_with_rewards(first: np.ndarray, second: np.ndarray) -> SegmentPairs:
    """Pairs whose segments have the given per-step true rewards, (B, T) each."""
    rewards = np.stack([first, second], axis=1).astype(np.float32)  # (B, 2, T)
    b, _, t = rewards.shape
    zeros = np.zeros((b, 2, t, 2), dtype=np.float32)
    return SegmentPairs(zeros, np.zeros((b, 2, t)), zeros, rewards, np.ones((b, 2, t), bool))


def test_defaults_answer_as_the_plain_boltzmann_labeller():
    pairs = _pairs_with_return_differences(np.linspace(-2, 2, 500))
    plain = SyntheticLabeller(1.0, 0.1, seed=4)
    expected = (np.random.default_rng(4).random(500) < plain.probability(pairs)).astype(np.float32)
    np.testing.assert_array_equal(plain.label(pairs), expected)


def test_rational_teacher_picks_the_higher_return_and_calls_ties_equal():
    pairs = _pairs_with_return_differences(np.array([0.01, -0.01, 0.0, 5.0]))
    np.testing.assert_array_equal(SyntheticLabeller(rational=True, seed=0).label(pairs), [1.0, 0.0, 0.5, 1.0])


def test_myopic_teacher_weighs_recent_steps_most():
    # first: 1 at the start of 3 steps; second: 0.6 at the end
    pairs = _pairs_with_rewards(np.array([[1.0, 0.0, 0.0]]), np.array([[0.0, 0.0, 0.6]]))
    assert SyntheticLabeller(rational=True).label(pairs).tolist() == [1.0]
    myopic = SyntheticLabeller(rational=True, gamma=0.5)
    np.testing.assert_allclose(myopic.returns(pairs), [[0.25, 0.6]])
    assert myopic.label(pairs).tolist() == [0.0]
    # a masked tail (an episode ended inside the segment) does not count as steps after
    masked = SegmentPairs(pairs.obs, pairs.actions, pairs.next_obs, pairs.env_rewards,
                          np.array([[[True, False, False], [True, True, True]]]))
    np.testing.assert_allclose(myopic.returns(masked), [[1.0, 0.6]])


def test_mistakes_flip_the_rational_answer_at_their_rate():
    n = 8000
    pairs = _pairs_with_return_differences(np.full(n, 3.0))
    wrong = 1.0 - SyntheticLabeller(rational=True, mistake_rate=0.2, seed=0).label(pairs).mean()
    assert abs(wrong - 0.2) < 4 * np.sqrt(0.2 * 0.8 / n)


def test_skip_and_equal_thresholds():
    first = np.array([[0.2], [3.0], [3.0], [1.0]])
    second = np.array([[0.1], [2.95], [1.0], [0.0]])
    pairs = _pairs_with_rewards(first, second)
    labels = SyntheticLabeller(rational=True, skip_threshold=0.5, equal_threshold=0.1, seed=0).label(pairs)
    assert np.isnan(labels[0])  # neither return exceeds 0.5: skipped
    assert labels[1:].tolist() == [0.5, 1.0, 1.0]  # within 0.1: equal; else the better one
    assert np.isnan(SyntheticLabeller(rational=True, skip_threshold=1.0).label(pairs)[3])  # max(1, 0) <= 1: skipped


def test_b_pref_named_teachers():
    oracle = SyntheticLabeller.b_pref("oracle")
    assert oracle.rational and oracle.gamma == 1.0 and oracle.mistake_rate == 0.0 and oracle.skip_threshold is None
    assert SyntheticLabeller.b_pref("stoc").temperature == 1.0 and not SyntheticLabeller.b_pref("stoc").rational
    assert SyntheticLabeller.b_pref("mistake").mistake_rate == 0.1
    assert SyntheticLabeller.b_pref("myopic").gamma == 0.9
    assert SyntheticLabeller.b_pref("skip", segment_return=-40.0).skip_threshold == pytest.approx(4.0)
    assert SyntheticLabeller.b_pref("equal", segment_return=20.0).equal_threshold == pytest.approx(2.0)
    with pytest.raises(ValueError, match="myopic"):
        SyntheticLabeller.b_pref("lazy")
    for bad in ({"gamma": 0.0}, {"mistake_rate": 1.5}, {"equal_threshold": -1.0}):
        with pytest.raises(ValueError):
            SyntheticLabeller(**bad)
