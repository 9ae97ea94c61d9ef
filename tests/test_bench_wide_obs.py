"""bench/wide_obs.py --quick: runs, writes its JSON, and the data has the structure it claims."""

from tests.helpers import run_quick_bench


def test_quick_wide_observation_bench_writes_valid_json(tmp_path):
    summary = run_quick_bench("wide_obs.py", tmp_path / "wide_obs.json")
    assert summary["before"] is None
    after = summary["after"]
    assert after["feature_dim"] == 2 * 2835 + 7  # obs, one-hot action, next_obs
    # most columns never vary in the labels (the mission one-hots, the state channel), a few hundred do
    assert 50 < after["varied_columns"] < 500 and after["never_varied_dims"] > 5000
    assert after["epochs"] == [20] and after["cpu_s_median"] > 0 and 0 < after["heldout_mse"][0] < 1
