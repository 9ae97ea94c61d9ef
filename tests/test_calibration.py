"""ruagent.calibration: member intervals, coverage, the report, the reliability plot, the bench."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from matplotlib import image

import ruagent
from ruagent import metrics
from ruagent.calibration import (
    LEVELS,
    calibration_report,
    group_calibration,
    member_coverage,
    member_interval,
    plot_reliability,
)
from ruagent.calibration_testbeds import testbed_groups

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("level", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("k", [1, 2, 10, 33])
def test_member_interval_is_numpys_linear_quantile(level, k):
    members = np.random.default_rng(k).normal(size=(k, 57)).astype(np.float32)
    low, high = member_interval(members, level)
    expected = np.quantile(members.astype(np.float64), [(1 - level) / 2, (1 + level) / 2], axis=0)
    np.testing.assert_array_equal(low, expected[0])
    np.testing.assert_array_equal(high, expected[1])
    assert np.all(low <= high)
    # uniform member_probs give the same interval
    same = member_interval(members, level, np.full(k, 1.0 / k))
    np.testing.assert_array_equal(same[0], low)


def test_weighted_members_use_the_weighted_inverse_cdf():
    # two hypotheses, p = 0.97 / 0.03: the 90 % interval is the likely member alone
    members = np.array([[1.0, -2.0, 3.0], [-1.0, 2.0, 3.0]])
    low, high = member_interval(members, 0.9, np.array([0.97, 0.03]))
    np.testing.assert_array_equal(low, [1.0, -2.0, 3.0])
    np.testing.assert_array_equal(high, [1.0, -2.0, 3.0])
    low, high = member_interval(members, 0.95, np.array([0.97, 0.03]))  # q = 0.025, 0.975: both members
    np.testing.assert_array_equal(low, [-1.0, -2.0, 3.0])
    np.testing.assert_array_equal(high, [1.0, 2.0, 3.0])


def test_member_interval_rejects_bad_input():
    with pytest.raises(ValueError, match="level"):
        member_interval(np.zeros((3, 4)), 1.0)
    with pytest.raises(ValueError, match="shape"):
        member_interval(np.zeros(4), 0.5)


def _synthetic(scale: float, k: int = 200, b: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Truth ~ N(mu, 1) and K members ~ N(mu, scale²) around per-transition means mu."""
    rng = np.random.default_rng(seed)
    mu = rng.uniform(-5, 5, size=b)
    truth = mu + rng.standard_normal(b)
    members = mu + scale * rng.standard_normal((k, b))
    return truth, members


def test_a_calibrated_posterior_covers_at_the_nominal_rates():
    truth, members = _synthetic(scale=1.0)
    for level in LEVELS:
        coverage = member_coverage(truth, members, level).mean()
        assert abs(coverage - level) < 0.05, (level, coverage)
    assert 0.85 <= member_coverage(truth, members, 0.9).mean() <= 0.95
    report = group_calibration(truth, members)
    assert 0.45 <= report["coverage_50"] <= 0.55 and 0.85 <= report["coverage_90"] <= 0.95
    assert 0.85 <= report["gaussian_coverage_90"] <= 0.95
    # widths in reward units: 2·z·σ for σ = 1
    assert report["width_90"] == pytest.approx(2 * 1.6449, rel=0.05)
    assert report["width_50"] == pytest.approx(2 * 0.6745, rel=0.05)
    assert report["spread"]["mean"] == pytest.approx(1.0, rel=0.05)
    # NLL near the entropy of N(0, 1): ½·log(2πe) ≈ 1.419
    assert report["nll"] == pytest.approx(0.5 * np.log(2 * np.pi * np.e), abs=0.1)


def test_a_too_narrow_posterior_covers_far_less():
    truth, members = _synthetic(scale=0.2)
    assert member_coverage(truth, members, 0.9).mean() < 0.5
    report = group_calibration(truth, members)
    assert report["coverage_90"] < 0.5 and report["gaussian_coverage_90"] < 0.5
    assert report["spread"]["mean"] == pytest.approx(0.2, rel=0.05)
    assert report["nll"] > 5.0  # overconfidence is punished
    assert all(observed < nominal for observed, nominal in zip(report["reliability"]["member"], LEVELS))


def test_group_calibration_with_analytic_moments_and_intervals():
    truth, members = _synthetic(scale=0.2, k=20, b=300)
    mean = members.mean(axis=0)
    wide = np.full_like(mean, 1.0)  # an analytic predictive wider than the members' spread
    report = group_calibration(truth, members, mean, wide, intervals=True, seed=1)
    assert report["coverage_90"] < 0.5 < report["gaussian_coverage_90"]  # member and Gaussian intervals differ
    assert report["reward_std"]["mean"] == pytest.approx(1.0)
    np.testing.assert_allclose(
        report["nll"], metrics.gaussian_nll(truth, mean, wide, 1e-3).mean())
    for name in ("coverage_50", "coverage_90", "width_90", "nll", "gaussian_coverage_90"):
        interval = report["intervals"][name]
        assert interval["low"] <= report[name] <= interval["high"] and interval["n"] == 300
    empty = group_calibration(np.zeros(0), np.zeros((20, 0)))
    assert empty["n"] == 0 and empty["coverage_90"] is None


class _FixedPosterior:
    """A stand-in posterior: members = offset + spread · z_k, spread set per transition by obs."""

    family = "fixed"
    n_members = 50
    member_probs = np.full(50, 1 / 50)

    def predict_moments(self, obs, action, next_obs):
        spread = np.asarray(obs, dtype=np.float64)[:, 0]
        z = np.random.default_rng(0).standard_normal((self.n_members, 1))
        members = (z * spread).astype(np.float32)
        return members, members.mean(axis=0).astype(np.float64), members.std(axis=0).astype(np.float64)


def test_auroc_is_one_for_separated_spreads():
    rng = np.random.default_rng(0)
    low_spread = rng.uniform(0.01, 0.1, size=(100, 1))
    high_spread = rng.uniform(1.0, 2.0, size=(80, 1))
    groups = {
        "heldout": (low_spread, np.zeros(100), low_spread, np.zeros(100)),
        "hazard": (high_spread, np.zeros(80), high_spread, np.zeros(80)),
        "empty": (np.zeros((0, 1)), np.zeros(0), np.zeros((0, 1)), np.zeros(0)),
    }
    report = calibration_report(_FixedPosterior(), groups)
    assert report["groups"]["hazard"]["auroc_vs_reference"] == 1.0
    assert report["groups"]["heldout"]["auroc_vs_reference"] is None
    assert report["groups"]["empty"]["n"] == 0 and report["groups"]["empty"]["auroc_vs_reference"] is None
    swapped = calibration_report(_FixedPosterior(), groups, reference="hazard")
    assert swapped["groups"]["heldout"]["auroc_vs_reference"] == 0.0
    assert calibration_report(_FixedPosterior(), groups, reference=None)["reference"] is None
    with_intervals = calibration_report(_FixedPosterior(), groups, intervals=True)
    assert with_intervals["groups"]["hazard"]["auroc_vs_reference"]["estimate"] == 1.0


@pytest.fixture(scope="module")
def tiny_report():
    env = gym.make("ruagent/LavaWorld-v0", variant="train")
    labels = ruagent.collect_transitions(env, 200, seed=0)
    model = ruagent.BayesianLinearRewardModel(env.observation_space, env.action_space, n_members=8,
                                              features="env", seed=0)
    model.fit(labels, env=env)
    groups = testbed_groups("LavaWorld", seed=0, n_heldout=150, n_deployment=150, n_target=40)
    env.close()
    return calibration_report(model, groups), groups


def test_report_keys_and_shapes_on_a_fitted_model(tiny_report):
    report, groups = tiny_report
    assert report["schema"] == "ruagent.calibration/1" and report["family"] == "linear"
    assert report["n_members"] == 8 and report["reference"] == "heldout" and report["score"] == "reward_std"
    assert report["levels"] == list(LEVELS) and report["min_std"] == 1e-3
    assert set(report["groups"]) == {"heldout", "deployment", "hazard"}
    for name, group in report["groups"].items():
        assert group["n"] == len(groups[name]) > 0
        for key in ("coverage_50", "coverage_90", "gaussian_coverage_50", "gaussian_coverage_90"):
            assert 0.0 <= group[key] <= 1.0
        assert 0.0 <= group["width_50"] <= group["width_90"]
        assert np.isfinite(group["nll"]) and group["abs_error"] >= 0
        assert set(group["spread"]) == set(group["reward_std"]) == {"mean", "median"}
        assert len(group["reliability"]["member"]) == len(group["reliability"]["gaussian"]) == len(LEVELS)
        assert np.all(np.diff(group["reliability"]["member"]) >= 0)  # nested intervals
    assert 0.0 <= report["groups"]["hazard"]["auroc_vs_reference"] <= 1.0
    json.dumps(report)  # JSON-ready


def test_reliability_png_is_written(tiny_report, tmp_path):
    report, _ = tiny_report
    path = plot_reliability(report, tmp_path / "sub" / "reliability.png", title="test")
    assert path == tmp_path / "sub" / "reliability.png"
    pixels = image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels[..., :3].std() > 0.05


def _run_bench(tmp_path: Path, *extra: str) -> tuple[dict, dict]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "calibration.py"), "--quick", "--out", str(tmp_path),
                           *extra], capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    return summary, json.loads((tmp_path / "calibration.json").read_text())


def test_quick_bench_with_linear_posteriors_writes_valid_json(tmp_path):
    summary, written = _run_bench(tmp_path, "--models", "linear-transition", "linear-env")
    assert set(summary) == {"LavaWorld/linear-transition", "LavaWorld/linear-env", "CartPole/linear-transition"}
    assert written["summary"] == summary and written["config"]["seeds"] == [0] and written["wall_seconds"] > 0
    assert len(written["runs"]) == 3
    lava = summary["LavaWorld/linear-env"]
    assert lava["verdict"] in ("PASS", "FAIL") and 0.0 <= lava["hazard_coverage_90"] <= 1.0
    assert summary["CartPole/linear-transition"]["verdict"] is None
    assert "unreached_coverage_90" in summary["CartPole/linear-transition"]
    assert (tmp_path / "reliability_LavaWorld_linear-env.png").is_file()


@pytest.mark.slow
def test_quick_bench_runs_every_configuration(tmp_path):
    summary, written = _run_bench(tmp_path)
    assert written["config"]["models"] == ["ensemble-transition", "ensemble-env", "linear-transition", "linear-env"]
    assert set(summary) == {f"LavaWorld/{m}" for m in ("ensemble-transition", "ensemble-env", "linear-transition",
                                                      "linear-env")} | {"CartPole/ensemble-transition",
                                                                        "CartPole/linear-transition"}
    assert len(list(tmp_path.glob("reliability_*.png"))) == 6
