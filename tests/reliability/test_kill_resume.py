"""SIGKILL train.py at random points, resume each time: no corrupt file, right step count, same config.

A tiny LavaWorld run (a few hundred labels, RiskPPO for TOTAL steps in rollouts of
N_STEPS x N_ENVS, a checkpoint every rollout) is killed ``n_cycles`` times. The first kill
lands at a random moment after the run folder exists (labels, posterior fit or training);
later ones, on resumed runs, at a random moment after start (imports, loading, training)
or at a random delay after a new checkpoint appeared (often inside the next write). After
every kill each file in the run folder must read back completely, and the config must be
the original one; finally a resume runs to the end and must stop at exactly the step count
of an uninterrupted run.

The default suite runs 3 cycles (about 30-60 s on 2 busy cores); the 10-cycle version is
``@pytest.mark.slow`` (``python -m pytest tests/reliability/test_kill_resume.py -m slow``).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from ruagent.cli.checkpoints import latest_checkpoint
from ruagent.data import Transitions
from ruagent.reward_models.base import load_reward_model

ROOT = Path(__file__).resolve().parents[2]
TOTAL, N_STEPS, N_ENVS = 2560, 32, 2
MAX_STEPS_PER_CYCLE = 3 * N_STEPS * N_ENVS  # 3 rollouts: 10 cycles use at most 30 of TOTAL's 40
ARGS = [
    "--name", "killed", "--no-progress", "--set", "labels.budget=200", f"agent.total_timesteps={TOTAL}",
    f"agent.hyperparams={{n_steps: {N_STEPS}, n_epochs: 1}}", f"env.n_envs={N_ENVS}",
    f"agent.checkpoint_freq={N_STEPS * N_ENVS}", "baselines=[]", "eval.enabled=false",
]
STARTUP_TIMEOUT = 120.0


def launch(cwd: Path, *args: str) -> subprocess.Popen:
    """Start train.py; its stderr goes to ``cwd/stderr.log`` (a pipe nobody reads could fill and stall it)."""
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}
    with open(cwd / "stderr.log", "w") as stderr:
        return subprocess.Popen(
            [sys.executable, str(ROOT / "train.py"), *args], cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=stderr
        )


def wait_for(condition, process: subprocess.Popen, what: str) -> bool:
    """Poll until ``condition()``; False if the process ended first."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not condition():
        if process.poll() is not None:
            return False
        assert time.monotonic() < deadline, f"no {what} within {STARTUP_TIMEOUT:.0f} s"
        time.sleep(0.02)
    return True


def checkpoint_steps(run: Path) -> int:
    found = latest_checkpoint(run / "agents/risk/checkpoints") if (run / "agents/risk/checkpoints").is_dir() else None
    return found[1] if found else 0


def model_steps(model_zip: Path) -> int:
    with zipfile.ZipFile(model_zip) as archive:
        assert archive.testzip() is None, f"{model_zip} has a damaged member"
        return int(json.loads(archive.read("data"))["num_timesteps"])


def assert_every_file_reads_back(run: Path, original_config: str) -> None:
    """Each file train.py writes is complete: parse or load it in full."""
    assert (run / "config.yaml").read_text() == original_config
    yaml.safe_load(original_config)
    if (run / "run.json").exists():
        json.loads((run / "run.json").read_text())
    for labels in (run / "labels").glob("*.npz"):
        Transitions.load(labels)
    if (run / "reward_model.pt").exists():
        load_reward_model(run / "reward_model.pt")
    for checkpoint in (run / "agents/risk/checkpoints").glob("step_*.zip"):
        assert model_steps(checkpoint) == int(checkpoint.stem.split("_")[1])
    # atomic_write's temporary files may remain after SIGKILL; they are hidden and never read
    leftovers = [p for p in run.rglob("*.tmp") if not p.name.startswith(".")]
    assert leftovers == [], leftovers


def kill_at_random_point(process: subprocess.Popen, run: Path, rng: np.random.Generator, first: bool) -> bool:
    """SIGKILL ``process`` at a random point; False if it finished on its own first.

    Each kill lets the run advance at most MAX_ROLLOUTS_PER_CYCLE checkpoints, so all cycles
    land before TOTAL steps however fast the machine is.
    """
    seen = checkpoint_steps(run)
    if first:  # a resume needs the run folder: kill after config.yaml is written
        alive = wait_for((run / "config.yaml").is_file, process, "config.yaml")
        delay = rng.uniform(0.0, 3.0)
    elif rng.random() < 0.5:
        alive, delay = True, rng.uniform(0.5, 6.0)  # anywhere: imports, loading, training
    else:
        alive = wait_for(lambda: checkpoint_steps(run) > seen, process, "new checkpoint")
        delay = rng.uniform(0.0, 0.4)  # often inside the next rollout's checkpoint write
    deadline = time.monotonic() + delay
    while alive and time.monotonic() < deadline and checkpoint_steps(run) < seen + MAX_STEPS_PER_CYCLE:
        alive = process.poll() is None
        time.sleep(0.01)
    if not alive or process.poll() is not None:
        process.wait()
        return False
    process.send_signal(signal.SIGKILL)
    process.wait()
    return True


@pytest.mark.parametrize("n_cycles", [3, pytest.param(10, marks=pytest.mark.slow)])
def test_sigkill_and_resume_cycles_lose_nothing_and_end_at_the_right_step(tmp_path, n_cycles):
    rng = np.random.default_rng(n_cycles)
    run = tmp_path / "runs" / "killed"
    original_config = None
    kills = 0
    for cycle in range(n_cycles):
        process = launch(tmp_path, *(ARGS if cycle == 0 else ["--resume", "runs/killed", "--no-progress"]))
        killed = kill_at_random_point(process, run, rng, first=cycle == 0)
        if not killed:
            assert process.returncode == 0, (tmp_path / "stderr.log").read_text()
            break
        kills += 1
        original_config = original_config or (run / "config.yaml").read_text()
        assert_every_file_reads_back(run, original_config)
    assert kills == n_cycles, f"only {kills} of {n_cycles} kills landed before the run finished; raise TOTAL"

    resumed = launch(tmp_path, "--resume", "runs/killed", "--no-progress")
    resumed.wait(timeout=300)

    assert resumed.returncode == 0, (tmp_path / "stderr.log").read_text()
    assert_every_file_reads_back(run, original_config)
    assert model_steps(run / "agents/risk/model.zip") == math.ceil(TOTAL / (N_STEPS * N_ENVS)) * N_STEPS * N_ENVS
    assert json.loads((run / "run.json").read_text())["status"] == "finished"
