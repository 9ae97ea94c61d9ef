"""The posterior checks' summaries and README block, on small hand-made per-run files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ruagent.experiments.posterior_checks import (
    CALIBRATION_TARGETS,
    posteriors_block,
    summarise_calibration,
    summarise_risk_agents,
    summarise_uncertainty_cost,
)


def _group(coverage_90: float, width_90: float, auroc: float | None = None) -> dict:
    return {"coverage_50": coverage_90 / 2, "coverage_90": coverage_90, "width_50": width_90 / 2, "width_90": width_90,
            "gaussian_coverage_90": coverage_90, "nll": 0.0, "auroc_vs_reference": auroc,
            "spread": {"mean": width_90 / 4}}


def _calibration_run(testbed: str, model: str, seed: int, hazard_coverage: float, hazard_width: float = 10.0) -> dict:
    groups = {"heldout": _group(0.95, 0.1)}
    if testbed != "CartPole":
        groups["hazard"] = _group(hazard_coverage, hazard_width, auroc=1.0)
    else:
        groups["unreached"] = _group(0.9, 1.0, auroc=0.9)
    return {"testbed": testbed, "model": model, "seed": seed, "fit_seconds": 1.0, "prior_reward_scale": None,
            "report": {"groups": groups}}


def test_summarise_calibration_checks_the_targets_on_means_over_seeds() -> None:
    runs = [_calibration_run("LavaWorld", "linear-env", seed, coverage) for seed, coverage in ((0, 1.0), (1, 0.8))]
    runs += [_calibration_run("PointNavigation", "linear-env", seed, 0.2) for seed in (0, 1)]
    runs += [_calibration_run("LavaWorld", "ensemble-env", 0, 1.0, hazard_width=0.5)]  # too wide where labelled
    runs += [_calibration_run("CartPole", "linear-transition", 0, 0.0)]
    summary = summarise_calibration(runs)
    lava = summary["LavaWorld/linear-env"]
    assert lava["seeds"] == 2 and lava["hazard_coverage_90"] == pytest.approx(0.9)  # mean 0.9 >= 0.85: passes
    assert lava["verdict"] == "PASS" and lava["failed"] == []
    assert lava["width_ratio"] == pytest.approx(0.01)
    assert summary["PointNavigation/linear-env"]["failed"] == ["hazard_coverage_90"]
    assert summary["LavaWorld/ensemble-env"]["failed"] == ["width_ratio"]  # 0.1 / 0.5 > 0.1
    assert summary["CartPole/linear-transition"]["verdict"] is None  # no hazard, no targets
    assert set(CALIBRATION_TARGETS) == {"hazard_coverage_90", "heldout_coverage_90", "width_ratio", "auroc_hazard"}


def _write(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


def test_summarise_risk_agents_counts_seeds_that_enter_lava(tmp_path: Path) -> None:
    for seed in range(4):
        agents = {"risk": {"side_effect_rate": [0.0, 0.0], "true_return": [1.1, 1.1], "episode_length": [10, 10]},
                  "mean": {"side_effect_rate": [0.0, 1.0 if seed < 3 else 0.0], "true_return": [-98.1, -98.1],
                           "episode_length": [50, 50]}}
        _write(tmp_path / "linear-env" / f"seed{seed}.json", {"seed": seed, "wall_s": 10.0 + seed, "agents": agents})
    summary = summarise_risk_agents(tmp_path)["linear-env"]
    assert summary["seeds"] == [0, 1, 2, 3]
    assert summary["risk"]["seeds_entering_lava"] == 0 and summary["mean"]["seeds_entering_lava"] == 3
    low, high = summary["mean"]["lava_seed_rate_ci95"]
    assert 0.0 <= low < 0.75 < high <= 1.0
    assert summary["risk"]["true_return_iqm"] == pytest.approx(1.1)
    assert summary["wall_s_median"] == pytest.approx(11.5)


def test_summarise_uncertainty_cost_normalises_by_oracle_and_random(tmp_path: Path) -> None:
    for seed, cvar in ((0, 90.0), (1, 100.0), (2, 80.0)):
        for agent, value in (("cvar", cvar), ("oracle", 100.0), ("random", 0.0)):
            _write(tmp_path / "cartpole" / f"{agent}-seed{seed}.json", {"true_return": value})
    _write(tmp_path / "cartpole" / "cvar-seed3.json", {"true_return": 5.0})  # no oracle yet: not counted
    summary = summarise_uncertainty_cost(tmp_path)["cartpole"]
    assert [row["normalised"] for row in summary["per_seed"]] == pytest.approx([0.9, 1.0, 0.8])
    assert summary["normalised_iqm"] == pytest.approx(0.9)
    low, high = summary["ci95"]
    assert 0.8 <= low <= 0.9 <= high <= 1.0


def test_posteriors_block_renders_what_holds_and_what_fails(tmp_path: Path) -> None:
    runs = [_calibration_run("LavaWorld", "linear-env", 0, 1.0),
            _calibration_run("PointNavigation", "linear-env", 0, 0.2)]
    for run in runs:
        _write(tmp_path / "results" / "calibration" / "runs" / f"{run['testbed']}_{run['model']}_seed0.json", run)
    block = posteriors_block(tmp_path)
    lava = next(line for line in block.splitlines() if "LavaWorld |" in line)
    point = next(line for line in block.splitlines() if "PointNavigation |" in line)
    assert "**holds** for all 1 configurations" in lava
    assert "**fails** for 1 of 1 (linear-env: hazard coverage 0.2)" in point
    assert "risk agents" not in block and "uncertainty cost" not in block  # their folders are absent
