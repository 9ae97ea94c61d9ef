"""bench/wrapper.py: its floor arm computes the same posterior the wrapper hands out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import wrapper as bench_wrapper  # noqa: E402


def test_floor_wrapper_gives_the_real_wrappers_mean_std_and_members():
    model = bench_wrapper.fitted_ensemble(n_members=3, n_labels=300, epochs=3, seed=0)
    floor, real = bench_wrapper.make_venv(model, "floor", seed=1), bench_wrapper.make_venv(model, "mean", seed=1)
    floor.reset(), real.reset()
    for action in np.random.default_rng(0).integers(0, 2, size=(30, bench_wrapper.N_ENVS)):
        _, floor_rewards, floor_dones, floor_infos = floor.step(action)
        _, real_rewards, real_dones, real_infos = real.step(action)
        np.testing.assert_array_equal(floor_dones, real_dones)
        live = ~real_dones  # the floor skips the terminal-observation swap, so finished envs differ
        np.testing.assert_allclose(floor_rewards[live], real_rewards[live], rtol=1e-6)
        for i in np.flatnonzero(live):
            for key in ("reward_mean", "reward_std", "env_reward"):
                np.testing.assert_allclose(floor_infos[i][key], real_infos[i][key], rtol=1e-6)
            np.testing.assert_array_equal(floor_infos[i]["reward_members"], real_infos[i]["reward_members"])


def test_quick_run_writes_the_json_it_prints(tmp_path):
    out = tmp_path / "wrapper.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "wrapper.py"), "--quick", "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert json.loads(out.read_text()) == summary
    overheads = ("wrapper_mean_step_overhead_us", "wrapper_floor_step_overhead_us")
    for key in ("wrapper_vs_plain", "ppo_wrapper_vs_ppo", *overheads):
        assert summary[key] > 0, key
