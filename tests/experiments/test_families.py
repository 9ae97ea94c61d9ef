"""The per-family table of issue 15's tier 2: one row per testbed and posterior folder, naive against cvar."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ruagent.experiments import families
from ruagent.experiments.runner import Job


def _write(out: Path, posterior: str, testbed: str, agent: str, seed: int, side_effect: float, ret: float) -> None:
    path = Job(testbed, seed, agent).result_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    evaluation = {"test": {"true_return": [ret, ret], "proxy_return": [ret, ret], "goodhart_gap": [0.0, 0.0],
                           "side_effect": [side_effect, side_effect], "side_effect_steps": [side_effect / 10] * 2,
                           "episode_length": [12.0, 14.0]}}
    path.write_text(json.dumps({"schema": "ruagent.headline.job/1", "testbed": testbed, "seed": seed, "agent": agent,
                                "posterior": posterior, "timesteps": 100, "wall_seconds": 1.0, "curve": [],
                                "evaluation": evaluation}))


def test_one_row_per_testbed_and_posterior_with_the_folders_numbers(tmp_path: Path) -> None:
    linear, ensemble = tmp_path / "results" / "tier1", tmp_path / "results" / "tier2-ensemble-env"
    for seed in range(3):
        _write(linear, "linear-env", "lava-canonical", "naive", seed, 1.0, -98.0)
        _write(linear, "linear-env", "lava-canonical", "cvar", seed, 0.0, 1.1)
        _write(ensemble, "ensemble-env", "lava-canonical", "naive", seed, float(seed == 0), -30.0)
        _write(ensemble, "ensemble-env", "lava-canonical", "cvar", seed, 0.0, 1.1)
        _write(ensemble, "ensemble-env", "distributional-shift", "naive", seed, 0.0, 1.0)  # not a headline testbed
        _write(ensemble, "ensemble-env", "distributional-shift", "cvar", seed, 0.0, 1.0)
    (tmp_path / "results" / "tier2-ensemble-transition" / "runs" / "lava-canonical" / "seed0").mkdir(parents=True)
    assert families.default_folders(tmp_path) == [linear, ensemble]  # posteriors only: left out
    assert families.posterior_of(ensemble) == "ensemble-env"
    block = families.families_block([linear, ensemble], "cmd")
    rows = [line for line in block.splitlines() if line.startswith("| LavaWorld")]
    assert [row.split(" | ")[1] for row in rows] == ["linear-env", "ensemble-env"]
    assert rows[0].split(" | ")[3:5] == ["100% [43.9, 100]", "0% [0, 56.1]"]  # naive 3/3 seeds, cvar 0/3 (Wilson)
    assert rows[1].split(" | ")[3].startswith("33.3%")  # one of three seeds
    assert "13 [13, 13]" in rows[0]  # cvar's episode length beside its side effects
    assert "DistributionalShift" not in block  # policy transfer is out of the headline


def test_empty_folders_are_refused_with_what_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(ValueError, match="no agent results"):
        families.posterior_of(tmp_path)
    monkeypatch.chdir(tmp_path)  # no results/ here
    assert families.main([]) == 2 and "run the experiment first" in capsys.readouterr().err


def test_speed_limit_cheetah_has_its_own_rows_in_folder_order_with_time_over_the_limit(tmp_path: Path) -> None:
    linear, transition = (tmp_path / folder for folder in (families.CHEETAH_FOLDERS[0], families.CHEETAH_FOLDERS[2]))
    for seed in range(2):
        for out, posterior in ((linear, "linear-env"), (transition, "ensemble-transition")):
            _write(out, posterior, "speed-limit-cheetah", "naive", seed, 1.0, 100.0)
            _write(out, posterior, "speed-limit-cheetah", "cvar", seed, 1.0, 800.0)
        _write(linear, "linear-env", "lava-canonical", "naive", seed, 1.0, -98.0)  # another testbed: not this block
        _write(linear, "linear-env", "lava-canonical", "cvar", seed, 0.0, 1.1)
    assert families.cheetah_folders(tmp_path) == [linear, transition]  # ensemble-env has no results: left out
    block = families.families_block(families.cheetah_folders(tmp_path), "cmd", testbeds=("speed-limit-cheetah",))
    rows = [line for line in block.splitlines() if line.startswith("| SpeedLimitCheetah")]
    assert [row.split(" | ")[:2] for row in rows] == [["| SpeedLimitCheetah (MuJoCo)", "linear-env"],
                                                       ["| SpeedLimitCheetah (MuJoCo)", "ensemble-transition"]]
    assert rows[0].split(" | ")[3].startswith("10%")  # a time share (side_effect_steps), not every episode's 100 %
