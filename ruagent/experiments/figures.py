"""Figures of the headline experiment, every one with 95 % intervals over seeds
(:mod:`ruagent.experiments.stats`).

- ``headline.png`` (the main figure): one row per (testbed, variant), one panel per metric
  (true return, side-effect rate, goodhart gap), one bar per agent with its interval.
- ``<testbed>-<variant>.png``: that testbed's bars for more metrics
  (:func:`ruagent.plots.plot_metric_bars`, the figure evaluate.py draws for one run).
- ``goodhart-<testbed>.png``: the goodhart curve per agent, true (solid) and proxy (dashed)
  return against training steps (the learning curves of every agent), IQM over seeds with a 95 %
  stratified bootstrap band (Gao, Schulman & Hilton, ICML 2023: goodharting shows as the curves parting).
- ``improvement.png``: probability of improvement of each agent over the mean agent (naive), for true
  return and for fewer side effects, with paired-bootstrap intervals over seeds (Agarwal et al. 2021).
- ``ood.png``: the posterior's OOD AUROC per shift.

Figures use matplotlib's object API (no pyplot state) and are written atomically by
:func:`ruagent.plots.save_figure`.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from ruagent import metrics
from ruagent.experiments import stats
from ruagent.experiments.agents import AGENTS
from ruagent.experiments.report import IMPROVEMENT_METRICS, TABLE_METRICS
from ruagent.plots import plot_metric_bars, save_figure

__all__ = ["draw_figures", "plot_improvement"]

MAIN_METRICS = ("true_return", "side_effect_rate", "goodhart_gap")
BAR_METRICS = ("true_return", "regret", "side_effect_rate", "goodhart_gap")


def _colours(agents: list[str]) -> dict[str, Any]:
    order = list(AGENTS) + sorted(set(agents) - set(AGENTS))
    palette = colormaps["tab10"]
    return {agent: palette(order.index(agent) % 10) for agent in agents}


def _bars(ax: Any, rows: list[dict], metric: str, colours: dict[str, Any]) -> None:
    """One bar per agent with its interval as an error bar (a missing metric leaves a gap)."""
    x = np.arange(len(rows))
    cells = [row["metrics"].get(metric) for row in rows]
    estimate = np.array([np.nan if c is None else c["estimate"] for c in cells])
    low = np.array([np.nan if c is None else c["low"] for c in cells])
    high = np.array([np.nan if c is None else c["high"] for c in cells])
    ax.bar(x, np.nan_to_num(estimate), color=[colours[row["agent"]] for row in rows], edgecolor="black",
           linewidth=0.5)
    measured = ~np.isnan(estimate)
    ax.errorbar(x[measured], estimate[measured], yerr=np.vstack([estimate - low, high - estimate])[:, measured],
                fmt="none", ecolor="black", capsize=3, linewidth=1.0)
    ax.axhline(0.0, color="grey", linewidth=0.5)
    ax.set_xticks(x, [row["agent"] for row in rows], rotation=45, ha="right", fontsize=8)


def plot_main(report: dict[str, Any], path: Path) -> Path:
    """The main figure: testbeds as rows, :data:`MAIN_METRICS` as columns."""
    groups: dict = defaultdict(list)
    for row in report["rows"]:
        groups[(row["testbed"], row["variant"])].append(row)
    colours = _colours(sorted({row["agent"] for row in report["rows"]}))
    figure = Figure(figsize=(3.6 * len(MAIN_METRICS), 2.5 * len(groups) + 0.6))
    axes = figure.subplots(len(groups), len(MAIN_METRICS), squeeze=False)
    for axes_row, ((testbed, variant), rows) in zip(axes, groups.items()):
        for ax, metric in zip(axes_row, MAIN_METRICS):
            _bars(ax, rows, metric, colours)
            ax.set_title(f"{testbed} ({variant}): {metric.replace('_', ' ')}", fontsize=9)
            if metric == "side_effect_rate":
                ax.set_ylim(0.0, 1.05)
    figure.suptitle("Headline: agents trained through the reward posterior, scored by the true reward "
                    "(IQM or rate over seeds, 95% intervals)", fontsize=10)
    figure.tight_layout(rect=(0.0, 0.0, 1.0, 0.98))
    return save_figure(figure, path)


def plot_goodhart(curves: dict[str, dict[int, list[dict]]], testbed: str, path: Path) -> Path | None:
    """Goodhart curves of one testbed: a panel per agent, mean over seeds with bootstrap bands.

    :param curves: agent -> seed -> rows ``{"step", "true_return", "proxy_return"}``.
    """
    ordered = [*AGENTS, *sorted(set(curves) - set(AGENTS))]
    agents = [a for a in ordered if a in curves and any(curves[a].values())]
    if not agents:
        return None
    columns = min(4, len(agents))
    n_rows = -(-len(agents) // columns)
    figure = Figure(figsize=(3.4 * columns, 2.7 * n_rows + 0.5))
    axes = figure.subplots(n_rows, columns, squeeze=False).ravel()
    for ax, agent in zip(axes, agents):
        for key, style in (("true_return", "-"), ("proxy_return", "--")):
            steps, est, low, high = _band(curves[agent], key)
            ax.plot(steps, est, style, color="C0" if key == "true_return" else "C3", label=key.split("_")[0])
            ax.fill_between(steps, low, high, color="C0" if key == "true_return" else "C3", alpha=0.2, linewidth=0)
        ax.set_title(agent, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes[len(agents):]:
        ax.set_axis_off()
    axes[0].legend(fontsize=7)
    figure.suptitle(f"{testbed}: learning curves (true solid, posterior-mean proxy dashed; IQM, 95% bootstrap "
                    "over seeds)",
                    fontsize=10)
    figure.supxlabel("environment steps", fontsize=9)
    figure.tight_layout()
    return save_figure(figure, path)


def _band(by_seed: dict[int, list[dict]], key: str) -> tuple[np.ndarray, ...]:
    """Steps evaluated by every seed, and the IQM over seeds with its stratified bootstrap interval at
    each (one seed: its value, no band)."""
    rows = [r for r in by_seed.values() if r]
    steps = sorted(set.intersection(*({row["step"] for row in r} for r in rows)))
    intervals = []
    for step in steps:
        values = [next(row[key] for row in r if row["step"] == step) for r in rows]
        intervals.append(stats.iqm_interval(values, n_resamples=1000) if len(values) > 1
                         else metrics.Interval(values[0], values[0], values[0], 1, "seed"))
    est, low, high = (np.array([getattr(i, a) for i in intervals]) for a in ("estimate", "low", "high"))
    return np.array(steps), est, low, high


def plot_improvement(report: dict[str, Any], path: Path) -> Path | None:
    """Probability of improvement over naive per agent and testbed (rliable's figure): a dot with its
    95 % interval per agent, one panel per (testbed, variant) and per improvement metric."""
    groups: dict = defaultdict(list)
    for row in report["rows"]:
        if any(row["metrics"].get(m) for m in IMPROVEMENT_METRICS):
            groups[(row["testbed"], row["variant"])].append(row)
    if not groups:
        return None
    figure = Figure(figsize=(4.2 * len(IMPROVEMENT_METRICS), 0.4 * max(len(r) for r in groups.values()) * len(groups)
                             + 1.2 * len(groups) + 0.6))
    axes = figure.subplots(len(groups), len(IMPROVEMENT_METRICS), squeeze=False)
    for axes_row, ((testbed, variant), rows) in zip(axes, groups.items()):
        for ax, metric in zip(axes_row, IMPROVEMENT_METRICS):
            cells = [row["metrics"].get(metric) for row in rows]
            y = np.arange(len(rows))
            for i, cell in enumerate(cells):
                if cell is not None:
                    ax.errorbar([cell["estimate"]], [i], xerr=[[cell["estimate"] - cell["low"]],
                                                                [cell["high"] - cell["estimate"]]],
                                fmt="o", color="C0", capsize=3, markersize=4)
            ax.axvline(0.5, color="grey", linestyle=":", linewidth=1)
            ax.set_xlim(-0.02, 1.02)
            ax.set_yticks(y, [row["agent"] for row in rows], fontsize=8)
            ax.set_title(f"{testbed} ({variant}): {TABLE_METRICS[metric]}", fontsize=8)
            ax.tick_params(axis="x", labelsize=7)
    figure.suptitle("Probability of improvement over the mean agent (naive), paired bootstrap over seeds (95%)",
                    fontsize=9)
    figure.tight_layout()
    return save_figure(figure, path)


def plot_ood(report: dict[str, Any], path: Path) -> Path | None:
    """The posterior's OOD AUROC (test-only and hazard transitions) per testbed and variant."""
    entries = report["ood"]
    if not entries:
        return None
    figure = Figure(figsize=(1.2 * len(entries) + 3.0, 3.4))
    ax = figure.subplots()
    x = np.arange(len(entries))
    for offset, kind, colour in ((-0.2, "test_only", "C0"), (0.2, "hazard", "C3")):
        cells = [entry.get(kind) for entry in entries]
        est = np.array([np.nan if c is None else c["estimate"] for c in cells])
        low = np.array([np.nan if c is None else c["low"] for c in cells])
        high = np.array([np.nan if c is None else c["high"] for c in cells])
        ax.bar(x + offset, np.nan_to_num(est), width=0.4, color=colour, label=kind.replace("_", "-"))
        ok = ~np.isnan(est)
        ax.errorbar(x[ok] + offset, est[ok], yerr=np.vstack([est - low, high - est])[:, ok], fmt="none",
                    ecolor="black", capsize=3)
    ax.axhline(0.5, color="grey", linestyle=":", linewidth=1)
    ax.set_ylim(0, 1.05)
    ax.set_xticks(x, [f"{e['testbed']}\n{e['variant']}" for e in entries], rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("AUROC of member-reward std")
    ax.legend(fontsize=8)
    ax.set_title("Does the posterior's uncertainty flag the shift? (0.5: no; 95% bootstrap)", fontsize=9)
    figure.tight_layout()
    return save_figure(figure, path)


def draw_figures(report: dict[str, Any], curves: dict[str, dict[str, dict[int, list[dict]]]],
                 folder: Path) -> list[Path]:
    """Every figure of the experiment into ``folder``; returns the paths written.

    :param curves: testbed -> agent -> seed -> goodhart-curve rows.
    """
    folder = Path(folder)
    written = [plot_main(report, folder / "headline.png")] if report["rows"] else []
    groups: dict = defaultdict(dict)
    for row in report["rows"]:
        groups[(row["testbed"], row["variant"])][row["agent"]] = row["metrics"]
    for (testbed, variant), by_agent in groups.items():
        written.append(plot_metric_bars(by_agent, BAR_METRICS, folder / f"{testbed}-{variant}.png",
                                        title=f"{testbed}, evaluated on {variant} (95% bootstrap intervals)"))
    for testbed, by_agent in curves.items():
        written.append(plot_goodhart(by_agent, testbed, folder / f"goodhart-{testbed}.png"))
    written.append(plot_improvement(report, folder / "improvement.png"))
    written.append(plot_ood(report, folder / "ood.png"))
    return [Path(p) for p in written if p is not None]
