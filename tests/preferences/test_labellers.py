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
