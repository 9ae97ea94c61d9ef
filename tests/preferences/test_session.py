"""A labelling session saves atomically and resumes without losing a label."""

import io

import numpy as np
import pytest

from ruagent.preferences.labellers import HumanLabeller, SyntheticLabeller
from ruagent.preferences.segments import collect_segments, make_pairs
from ruagent.preferences.session import LabelLog

from .conftest import LinearRewardWalk


def _pairs(n, seed=0):
    return make_pairs(collect_segments(LinearRewardWalk(horizon=8), 10, 4, seed=seed), n, np.random.default_rng(seed))


def _scripted(answers):
    answers = iter(answers)
    return lambda prompt: next(answers)


def test_quit_saves_every_answer_and_resume_continues(tmp_path):
    path = tmp_path / "labels.npz"
    log = LabelLog(autosave=path, meta={"env": "walk"})
    first = _pairs(3, seed=0)
    log.ask(SyntheticLabeller(seed=0), first, query="random")
    second = _pairs(5, seed=1)
    labels = log.ask(HumanLabeller(_scripted(["1", "s", "=", "q"]), output=io.StringIO()), second, "disagreement", 64)
    assert log.quit and len(log) == 6 and log.n_labels == 5
    np.testing.assert_array_equal(labels[:3][[0, 2]], [1.0, 0.5])

    resumed = LabelLog.load(path)
    assert len(resumed) == 6 and resumed.n_labels == 5 and resumed.meta == {"env": "walk"}
    np.testing.assert_array_equal(resumed.labels, log.labels)  # NaN-aware: skips stay skips
    np.testing.assert_array_equal(resumed.pairs.obs, log.pairs.obs)
    np.testing.assert_array_equal(resumed.pairs.mask, log.pairs.mask)
    assert resumed.queries.tolist() == ["random"] * 3 + ["disagreement"] * 3
    assert resumed.timesteps.tolist() == [-1] * 3 + [64] * 3

    resumed.ask(SyntheticLabeller(seed=1), _pairs(2, seed=2))
    again = LabelLog.load(path)
    assert len(again) == 8 and again.n_labels == 7
    np.testing.assert_array_equal(again.labels[:6], log.labels)
    pairs, labels = again.labelled()
    assert len(pairs) == 7 and np.isfinite(labels).all()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no torn temp files left


def test_quit_before_any_answer_records_nothing(tmp_path):
    log = LabelLog(autosave=tmp_path / "l.npz")
    log.ask(HumanLabeller(_scripted(["q"]), output=io.StringIO()), _pairs(2))
    assert log.quit and len(log) == 0
    assert len(LabelLog.load(tmp_path / "l.npz")) == 0


def test_bad_labels_and_files_are_refused(tmp_path):
    log = LabelLog()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        log.record(_pairs(2), np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="2 pairs"):
        log.record(_pairs(2), np.array([1.0]))
    np.savez(tmp_path / "other.npz", __meta__=np.array('{"format": "x"}'))
    with pytest.raises(ValueError, match="not a ruagent preference-label file"):
        LabelLog.load(tmp_path / "other.npz")
    with pytest.raises(FileNotFoundError, match="resume"):
        LabelLog.load(tmp_path / "missing.npz")
