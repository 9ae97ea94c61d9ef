"""ruagent.plots: figures open and have content; centroids and TensorBoard curves are exact."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib import image
from torch.utils.tensorboard import SummaryWriter

from ruagent.plots import agent_centroids, plot_goodhart_curves, plot_metric_bars, plot_trajectories, read_scalars


def has_content(path) -> bool:
    pixels = image.imread(path)
    return pixels.ndim == 3 and pixels[..., :3].std() > 0.05


def test_agent_centroids_track_a_moving_square():
    background = np.full((20, 30, 3), 200, dtype=np.uint8)
    frames = []
    for x in (2, 10, 20):
        frame = background.copy()
        frame[5:9, x : x + 4] = (255, 0, 0)  # a 4x4 square, centre (x + 1.5, 6.5)
        frames.append(frame)
    frames.append(background.copy())
    centroids = agent_centroids(frames, background)
    np.testing.assert_allclose(centroids[:3], [[3.5, 6.5], [11.5, 6.5], [21.5, 6.5]])
    assert np.isnan(centroids[3]).all()


def test_metric_bars_with_missing_cells(tmp_path):
    results = {
        "risk": {"true_return": {"estimate": 1.0, "low": 0.5, "high": 1.5}, "regret": None},
        "mean": {"true_return": {"estimate": -2.0, "low": -3.0, "high": -1.0},
                 "regret": {"estimate": 3.0, "low": 2.0, "high": 4.0}},
    }
    path = plot_metric_bars(results, ("true_return", "regret"), tmp_path / "bars.png")
    assert has_content(path)
    with pytest.raises(ValueError, match="at least one agent"):
        plot_metric_bars({}, ("true_return",), tmp_path / "empty.png")


def test_trajectory_overlay_on_a_gridworld_map(tmp_path):
    import gymnasium as gym

    import ruagent  # noqa: F401
    from ruagent.rollouts import run_episodes

    env = gym.make("ruagent/LavaWorld-v0", variant="test", render_mode="rgb_array")
    frames = run_episodes(env, None, 2, seed=0, render=True).frames
    assert has_content(plot_trajectories({"random": frames}, tmp_path / "trajectories.png"))
    with pytest.raises(ValueError, match="render=True"):
        plot_trajectories({"random": [[]]}, tmp_path / "none.png")


def test_goodhart_curves_read_back_what_was_written(tmp_path):
    writer = SummaryWriter(str(tmp_path / "agent_1"))
    steps = [100, 200, 300, 400]
    true, proxy = [1.0, 3.0, 2.0, 0.5], [1.0, 3.5, 5.0, 7.0]  # the goodhart shape: true rises then falls
    for step, t, p in zip(steps, true, proxy):
        writer.add_scalar("eval/true_return", t, step)
        writer.add_scalar("eval/proxy_return", p, step)
    writer.close()
    curves = read_scalars(tmp_path / "agent_1", ["eval/true_return", "eval/proxy_return", "absent/tag"])
    assert set(curves) == {"eval/true_return", "eval/proxy_return"}
    np.testing.assert_array_equal(curves["eval/true_return"][0], steps)
    np.testing.assert_allclose(curves["eval/proxy_return"][1], proxy)
    assert has_content(plot_goodhart_curves({"agent": tmp_path / "agent_1"}, tmp_path / "goodhart.png"))
    assert plot_goodhart_curves({"nothing": tmp_path / "empty"}, tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()
    with pytest.raises(FileNotFoundError, match="no TensorBoard folder"):
        read_scalars(tmp_path / "empty")
