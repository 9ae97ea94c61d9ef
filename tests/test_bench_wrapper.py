"""bench/wrapper.py: its floor arm computes the same posterior the wrapper hands out."""

from __future__ import annotations

import sys

import numpy as np

from tests.helpers import ROOT, run_quick_bench

sys.path.insert(0, str(ROOT / "bench"))
import wrapper as bench_wrapper


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
    summary = run_quick_bench("wrapper.py", tmp_path / "wrapper.json")
    overheads = ("wrapper_mean_step_overhead_us", "wrapper_floor_step_overhead_us")
    for key in ("wrapper_vs_plain", "ppo_wrapper_vs_ppo", *overheads):
        assert summary[key] > 0, key
