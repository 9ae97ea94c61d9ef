"""bench/wide_obs.py --quick: runs, writes its JSON, and the data has the structure it claims."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_wide_observation_bench_writes_valid_json(tmp_path):
    out = tmp_path / "wide_obs.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "wide_obs.py"), "--quick", "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert json.loads(out.read_text()) == summary and summary["before"] is None
    after = summary["after"]
    assert after["feature_dim"] == 2 * 2835 + 7  # obs, one-hot action, next_obs
    # most columns never vary in the labels (the mission one-hots, the state channel), a few hundred do
    assert 50 < after["varied_columns"] < 500 and after["never_varied_dims"] > 5000
    assert after["epochs"] == [20] and after["cpu_s_median"] > 0 and 0 < after["heldout_mse"][0] < 1
