"""Figures for evaluate.py: metric bars with intervals, trajectory overlays, goodhart curves.

Figures are built on ``matplotlib.figure.Figure`` directly (the Agg canvas, no pyplot), so
plotting needs no display and never changes the user's global backend; they are written
atomically as PNG through :func:`ruagent.io.atomic_write`. Curves are read back from the TensorBoard
event files the callbacks wrote, with tensorboard's ``EventAccumulator``.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ruagent.io import atomic_write_bytes

__all__ = [
    "agent_centroids",
    "plot_goodhart_curves",
    "plot_metric_bars",
    "plot_trajectories",
    "read_scalars",
    "save_figure",
]

#: Bar labels longer than this (or more bars than :data:`MAX_TICK_LABELS`) move from the x axis to a legend.
MAX_TICK_LABEL_CHARS = 14
MAX_TICK_LABELS = 8

#: Scalar tags of the goodhart curve, in order of preference: periodic evaluation on the
#: deployment env, else the training episodes' running means.
GOODHART_TAGS = (("eval/true_return", "eval/proxy_return"), ("ruagent/true_return", "ruagent/proxy_return"))


def save_figure(figure: Figure, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Render ``figure`` to PNG at ``path`` atomically."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


# ---------------------------------------------------------------------- bars
def plot_metric_bars(
    results: Mapping[str, Mapping[str, Mapping[str, float] | None]],
    metrics: Sequence[str],
    path: str | os.PathLike,
    title: str | None = None,
) -> Path:
    """One panel per metric, one bar per agent, with its 95 % interval as an error bar.

    Short labels (agents) name the bars on the x axis; long or many labels (``run/agent`` when
    runs are compared) go to one legend below the panels instead, so they never overlap. Rates
    (metrics ending in ``_rate``) are drawn on [0, 1].

    :param results: agent label -> metric name -> interval dict (``estimate``, ``low``,
        ``high``; :meth:`ruagent.metrics.Interval.to_dict`), or None where not measured.
    :param metrics: metric names to draw, one panel each (in order).
    :param path: PNG file to write.
    """
    labels = list(results)
    if not labels or not metrics:
        raise ValueError("plot_metric_bars needs at least one agent and one metric")
    palette = colormaps["tab10" if len(labels) <= 10 else "tab20"]
    colours = palette(np.arange(len(labels)) % palette.N)
    in_legend = len(labels) > MAX_TICK_LABELS or max(len(label) for label in labels) > MAX_TICK_LABEL_CHARS
    height = 3.4 + (0.22 * len(labels) / max(1, min(len(metrics), 3)) + 0.3 if in_legend else 0.0)
    figure = Figure(figsize=(2.2 + 2.3 * len(metrics), height), layout="constrained")
    axes = figure.subplots(1, len(metrics), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        cells = [results[label].get(metric) for label in labels]
        estimate = np.array([np.nan if c is None else c["estimate"] for c in cells])
        low = np.array([np.nan if c is None else c["low"] for c in cells])
        high = np.array([np.nan if c is None else c["high"] for c in cells])
        x = np.arange(len(labels))
        ax.bar(x, np.nan_to_num(estimate), color=colours, edgecolor="black", linewidth=0.6)
        measured = ~np.isnan(estimate)
        ax.errorbar(
            x[measured], estimate[measured],
            yerr=np.vstack([estimate - low, high - estimate])[:, measured],
            fmt="none", ecolor="black", capsize=4, linewidth=1.2,
        )
        ax.axhline(0.0, color="grey", linewidth=0.6)
        if in_legend:
            ax.set_xticks(x, [str(i + 1) for i in x], fontsize=8)
        else:
            ax.set_xticks(x, labels, rotation=30, ha="right")
        if metric.endswith("_rate"):
            ax.set_ylim(0.0, 1.0)
        ax.set_title(metric.replace("_", " "), fontsize=10)
    if in_legend:
        handles = [Patch(facecolor=c, edgecolor="black", linewidth=0.6) for c in colours]
        figure.legend(handles, [f"{i + 1}: {label}" for i, label in enumerate(labels)], loc="outside lower center",
                      ncols=max(1, min(len(metrics), 3)), fontsize=8, frameon=False)
    figure.suptitle(title or "metrics with 95% bootstrap intervals", fontsize=11)
    return save_figure(figure, path)


# ---------------------------------------------------------------------- trajectories
def agent_centroids(frames: Sequence[np.ndarray], background: np.ndarray) -> np.ndarray:
    """(T, 2) pixel (x, y) centroids of what differs from ``background`` in each frame.

    Works for any ``rgb_array`` env whose only moving thing is the agent (gridworlds,
    CartPole); NaN where a frame equals the background (the agent sits where the
    background has it).

    :param frames: T frames (H, W, 3).
    :param background: (H, W, 3), e.g. the per-pixel median over many frames.
    """
    stack = np.asarray(frames, dtype=np.int16)
    assert stack.ndim == 4 and stack.shape[1:] == background.shape, (stack.shape, background.shape)
    moved = np.abs(stack - background.astype(np.int16)).sum(axis=-1) > 30  # (T, H, W); ignores colour dither
    ys, xs = np.mgrid[0 : background.shape[0], 0 : background.shape[1]]
    counts = moved.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        cx = (moved * xs).sum(axis=(1, 2)) / counts
        cy = (moved * ys).sum(axis=(1, 2)) / counts
    return np.stack([cx, cy], axis=1)


def plot_trajectories(
    episodes_frames: Mapping[str, Sequence[Sequence[np.ndarray]]],
    path: str | os.PathLike,
    title: str | None = None,
    positions: Mapping[str, Sequence[np.ndarray] | None] | None = None,
) -> Path:
    """Overlay each agent's trajectories on the env's map, one panel per agent.

    The map is the episode's first frame; the path runs from a circle (start) to a cross (end)
    through the agent's known pixel positions (``positions``, e.g. grid cells from
    :func:`ruagent.rollouts.run_episodes`), else through the centroids of what differs from
    the per-pixel median of that agent's frames (:func:`agent_centroids`; any rendered env).

    :param episodes_frames: agent label -> episodes -> rgb frames (H, W, 3) of one episode.
    :param path: PNG file to write.
    :param positions: agent label -> episodes -> (T, 2) pixel (x, y) of the agent, or None.
    """
    labels = [label for label, episodes in episodes_frames.items() if any(len(e) for e in episodes)]
    if not labels:
        raise ValueError("plot_trajectories got no frames; run the episodes with render=True")
    figure = Figure(figsize=(4.2 * len(labels), 4.6), layout="constrained")
    axes = figure.subplots(1, len(labels), squeeze=False)
    n_most = max(sum(1 for e in episodes_frames[label] if len(e)) for label in labels)
    # episode i has the same colour in every panel (the legend names them)
    episode_colours = colormaps["autumn"](np.linspace(0.0, 0.8, n_most))
    for ax, label in zip(axes[0], labels):
        episodes = [list(e) for e in episodes_frames[label] if len(e)]
        background = np.median(np.concatenate([np.asarray(e) for e in episodes]), axis=0).astype(np.uint8)
        ax.imshow(episodes[0][0])
        colours = episode_colours[: len(episodes)]
        known = (positions or {}).get(label)
        # Overlapping episodes are shifted apart by a few pixels so each stays visible.
        offsets = (np.arange(len(episodes)) - (len(episodes) - 1) / 2) * 3.0
        for index, (colour, frames) in enumerate(zip(colours, episodes)):
            if known is not None:
                centroids = np.asarray(known[index], dtype=np.float64) + offsets[index]
            else:
                centroids = agent_centroids(frames, background)
            centroids = centroids[~np.isnan(centroids).any(axis=1)]
            if len(centroids):
                ax.plot(centroids[:, 0], centroids[:, 1], "-", color=colour, linewidth=2.5, alpha=0.85)
                ax.plot(*centroids[0], "o", color=colour, markersize=9, markeredgecolor="black")
                ax.plot(*centroids[-1], "X", color=colour, markersize=10, markeredgecolor="black")
        ax.set_title(f"{label} ({len(episodes)} episode{'s' if len(episodes) > 1 else ''})", fontsize=10)
        ax.set_axis_off()
    handles = [Line2D([], [], color=colour, linewidth=2.5, label=f"episode {i + 1}")
               for i, colour in enumerate(episode_colours)]
    handles += [Line2D([], [], linestyle="none", marker="o", color="white", markeredgecolor="black", markersize=8,
                       label="start"),
                Line2D([], [], linestyle="none", marker="X", color="white", markeredgecolor="black", markersize=9,
                       label="end")]
    figure.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=9, frameon=False)
    figure.suptitle(title or "trajectories of the evaluation episodes", fontsize=11)
    return save_figure(figure, path)


# ---------------------------------------------------------------------- TensorBoard curves
def read_scalars(
    log_dir: str | os.PathLike, tags: Sequence[str] | None = None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Scalars from the TensorBoard event files in ``log_dir`` (one run folder, all its files).

    :param log_dir: folder holding ``events.out.tfevents.*`` files.
    :param tags: tags to read (missing ones are skipped); None reads every scalar tag.
    :return: tag -> (steps (N,) int64, values (N,) float64), in step order.
    :raises FileNotFoundError: if ``log_dir`` is not a folder.
    """
    from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

    if not Path(log_dir).is_dir():
        raise FileNotFoundError(f"no TensorBoard folder at {log_dir}; pass the folder that holds events.out.tfevents.*")
    accumulator = EventAccumulator(os.fspath(log_dir), size_guidance={SCALARS: 0})  # 0: keep every point
    accumulator.Reload()
    available = accumulator.Tags().get(SCALARS, [])
    wanted = available if tags is None else [tag for tag in tags if tag in available]
    curves = {}
    for tag in wanted:
        events = accumulator.Scalars(tag)
        steps = np.array([e.step for e in events], dtype=np.int64)
        values = np.array([e.value for e in events], dtype=np.float64)
        order = np.argsort(steps, kind="stable")
        curves[tag] = (steps[order], values[order])
    return curves


def plot_goodhart_curves(log_dirs: Mapping[str, str | os.PathLike], path: str | os.PathLike) -> Path | None:
    """True and proxy return against training steps, per agent, from TensorBoard event files.

    Reads ``eval/true_return`` and ``eval/proxy_return`` (:class:`ruagent.callbacks.GoodhartEvalCallback`),
    falling back to the training episodes' ``ruagent/*`` tags. True return is solid, proxy
    dashed, one colour per agent: goodharting shows as the curves parting.

    :param log_dirs: agent label -> TensorBoard folder of that agent (missing folders are skipped).
    :param path: PNG file to write.
    :return: the path, or None when no folder holds the tags (nothing to draw).
    """
    figure = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = figure.subplots()
    colours = colormaps["tab10"]
    drawn = 0
    for index, (label, log_dir) in enumerate(log_dirs.items()):
        if not Path(log_dir).is_dir():
            continue
        for true_tag, proxy_tag in GOODHART_TAGS:
            curves = read_scalars(log_dir, (true_tag, proxy_tag))
            if true_tag in curves and proxy_tag in curves:
                colour = colours(index % 10)
                ax.plot(*curves[true_tag], "-", color=colour, marker=".", label=f"{label}: true")
                ax.plot(*curves[proxy_tag], "--", color=colour, label=f"{label}: proxy")
                drawn += 1
                break
    if not drawn:
        return None
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episode return")
    ax.set_title("goodhart curve: true vs proxy (posterior-mean) return")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(figure, path)
