"""Preference-based RL on MuJoCo: the bench's per-run file from a real (tiny) run, and the summary's arithmetic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ruagent.experiments.pbrl import pbrl_block, read_controls, read_runs, summarise_pbrl

ROOT = Path(__file__).resolve().parents[2]


def _record(seed: int, oracle: float, agent: float) -> dict:
    agents = {"oracle": {"true_return": [oracle, oracle], "episode_length": [1000] * 2},
              "risk": {"true_return": [agent - 1, agent + 1], "episode_length": [1000] * 2}}
    return {"env_id": "Hopper-v5", "seed": seed, "preferences": 1000, "timesteps": 50_000, "wall_s": 600.0,
            "cpu_s": 1200.0 + seed, "agents": agents}


def test_summary_is_bpref_normalised_return_and_skips_non_positive_oracles() -> None:
    summary = summarise_pbrl([_record(0, 1000.0, 500.0), _record(1, 2000.0, 1600.0), _record(2, -5.0, 100.0)])
    assert summary["normalised_per_seed"] == pytest.approx([0.5, 0.8, None])
    assert summary["no_ratio_seeds"] == [2]
    assert summary["normalised_return"]["n"] == 2 and 0.5 <= summary["normalised_return"]["estimate"] <= 0.8
    assert summary["preferences"] == [1000] and summary["timesteps"] == [50_000]
    assert summary["cpu_minutes_median"] == pytest.approx(1201.0 / 60.0)


def _control(seed: int, control: float) -> dict:
    return {"env_id": "Hopper-v5", "seed": seed, "timesteps": 50_000, "wall_s": 300.0, "cpu_s": 600.0,
            "agents": {"control": {"true_return": [control, control], "episode_length": [1000] * 2}}}


def test_summary_splits_the_ratio_with_the_control_on_the_seeds_that_have_one() -> None:
    records = [_record(0, 1000.0, 500.0), _record(1, 2000.0, 1600.0), _record(2, 1000.0, 900.0)]
    # PbRL / control on seeds 0 and 2: 500 / 250 = 2 and 900 / 300 = 3; control / SAC: 0.25 and 0.3
    summary = summarise_pbrl(records, {0: _control(0, 250.0), 2: _control(2, 300.0)})
    assert summary["control_seeds"] == [0, 2]
    assert summary["pbrl_vs_control"]["n"] == 2 and 2.0 <= summary["pbrl_vs_control"]["estimate"] <= 3.0
    assert 0.25 <= summary["control_vs_oracle"]["estimate"] <= 0.3
    assert summary["control_return"]["estimate"] == pytest.approx(275.0)
    without = summarise_pbrl(records)
    assert without["control_seeds"] == [] and without["pbrl_vs_control"] is None


def test_block_renders_one_row_per_env_from_the_files(tmp_path: Path) -> None:
    folder = tmp_path / "results" / "pbrl-mujoco" / "Hopper-v5"
    folder.mkdir(parents=True)
    for seed, (oracle, agent) in enumerate(((1000.0, 500.0), (1000.0, 700.0))):
        (folder / f"seed{seed}.json").write_text(json.dumps(_record(seed, oracle, agent)))
    assert list(read_runs(tmp_path / "results" / "pbrl-mujoco")) == ["Hopper-v5"]
    block = pbrl_block(tmp_path)
    row = next(line for line in block.splitlines() if line.startswith("| Hopper-v5"))
    assert "| 0, 1 | 50,000 | 1000 |" in row and "**0.6 [0.5, 0.7]**" in row
    assert "| not run | — | — |" in row
    assert "no run has finished" in pbrl_block(tmp_path / "elsewhere")
    (folder / "control").mkdir()
    (folder / "control" / "seed1.json").write_text(json.dumps(_control(1, 350.0)))
    assert list(read_controls(tmp_path / "results" / "pbrl-mujoco")["Hopper-v5"]) == [1]
    assert list(read_runs(tmp_path / "results" / "pbrl-mujoco")) == ["Hopper-v5"]  # controls are not runs
    row = next(line for line in pbrl_block(tmp_path).splitlines() if line.startswith("| Hopper-v5"))
    assert "| 350 [350, 350] (seeds 1) | 2 [2, 2] | 0.35 [0.35, 0.35] |" in row


def test_bench_writes_a_per_run_file_from_a_tiny_train_py_run(tmp_path: Path) -> None:
    pytest.importorskip("mujoco")
    out = tmp_path / "pbrl"
    # --quick: seed 0, 300 steps and train.py overrides that fit 12 preferences and SAC updates into them
    command = [sys.executable, str(ROOT / "bench" / "pbrl_mujoco.py"), "--quick", "--envs", "Hopper-v5", "--out",
               str(out)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "MPLBACKEND": "Agg"})
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((out / "Hopper-v5" / "seed0.json").read_text())
    assert record["preferences"] == 12 and record["timesteps"] == 300
    assert record["command"].startswith("python train.py --config pbrl_mujoco --env Hopper-v5 --seed 0")
    assert set(record["agents"]) == {"risk", "oracle"}
    assert len(record["agents"]["oracle"]["true_return"]) == 1 and record["cpu_s"] > 0
    assert json.loads(done.stdout.strip().splitlines()[-1])["Hopper-v5"]["seeds"] == [0]


def test_bench_control_trains_risksac_heads_on_the_true_reward(tmp_path: Path) -> None:
    pytest.importorskip("mujoco")
    out = tmp_path / "pbrl"
    command = [sys.executable, str(ROOT / "bench" / "pbrl_mujoco.py"), "--control", "--envs", "Hopper-v5", "--seeds",
               "0", "--timesteps", "200", "--out", str(out), "--set", "eval.episodes=1",
               "agent.hyperparams={buffer_size: 1000, learning_starts: 50}"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "MPLBACKEND": "Agg"})
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((out / "Hopper-v5" / "control" / "seed0.json").read_text())
    assert record["timesteps"] == 200 and record["command"].startswith("python bench/pbrl_mujoco.py --control")
    assert "10 critic heads" in record["what"] and "member_rewards='env'" in record["what"]
    assert len(record["agents"]["control"]["true_return"]) == 1 and record["cpu_s"] > 0
