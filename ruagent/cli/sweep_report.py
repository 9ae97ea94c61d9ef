"""The end of a sweep: every trial's evaluation pooled over seeds into one table and figures.

Trials that differ only in their training seed are pooled by
:func:`ruagent.cli.compare.pool_seeds` (intervals over per-seed means, the seed being the
unit of replication: Henderson et al., AAAI 2018; Agarwal et al., NeurIPS 2021); a grid point
with a single seed keeps its own per-episode interval. Written to the sweep folder::

    results.json      schema ruagent.sweep/1: trials (params, run folder, status, error) and groups
    results.csv       one row per (group, agent, metric): estimate, low, high, n, unit
    table.txt         the table printed at the end
    comparison.json   every run's eval.json and the pooled seeds (evaluate.py --out format)
    comparison.png    one bar per run and agent
    plots/sweep.png   one bar per grid point (seeds pooled) and agent, 95 % intervals
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ruagent import metrics
from ruagent.cli.compare import pool_seeds, write_comparison
from ruagent.cli.eval_format import AGENT_METRICS, BAR_METRICS
from ruagent.cli.run_dir import RunDir
from ruagent.cli.summary import SUMMARY_COLUMNS
from ruagent.cli.trial_names import params_label
from ruagent.io import atomic_write_text

__all__ = ["SWEEP_SCHEMA", "write_report"]

SWEEP_SCHEMA = "ruagent.sweep/1"


def _status(trial: Any, earlier: Collection[str], errors: Mapping[str, str]) -> dict[str, Any]:
    entry = {"name": trial.name, "params": trial.params, "run": str(trial.run_dir)}
    if trial.name in errors:
        return {**entry, "status": "failed", "error": errors[trial.name]}
    if not RunDir(trial.run_dir).is_finished():
        return {**entry, "status": "incomplete"}
    return {**entry, "status": "finished earlier" if trial.name in earlier else "finished"}


def _groups(trials: Sequence[Any], results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Trials pooled over seeds (pool_seeds), plus every run that has no other seed as a group of one.

    Each group: ``label`` (the grid values its trials share, seed left out), ``runs``,
    ``agents`` ({agent: {metric: interval}}), in grid order.
    """
    by_run = {str(t.run_dir): t for t in trials}
    pooled = {tuple(group["runs"]): group["agents"] for group in pool_seeds(results)}
    seen: set[str] = set()
    groups = []
    for result in results:
        if result["run"] in seen:
            continue
        runs = next((key for key in pooled if result["run"] in key), (result["run"],))
        seen.update(runs)
        members = [by_run[run].params for run in runs]
        shared = {axis: value for axis, value in members[0].items()
                  if axis != "seed" and all(member.get(axis) == value for member in members)}
        agents = pooled.get(runs) or {agent: entry["metrics"] for agent, entry in result["agents"].items()}
        groups.append({"label": _group_label(shared), "params": shared, "runs": list(runs), "agents": agents})
    return groups


def _group_label(params: Mapping[str, Any]) -> str:
    return params_label(params, separator=" ") or "all"


def _cell(value: Mapping[str, Any] | None) -> str:
    return "–" if value is None else str(metrics.Interval(**value))


def _table(groups: Sequence[dict[str, Any]], statuses: Sequence[dict[str, Any]]) -> Table:
    done = sum(s["status"].startswith("finished") for s in statuses)
    table = Table(title="sweep: agents per grid point, seeds pooled (estimate [95% bootstrap interval])",
                  caption=f"{done} of {len(statuses)} trials finished; interval unit: seed where a grid point "
                          "has several seeds, else episode", header_style="bold")
    for column in ("grid point", "agent", "seeds", *SUMMARY_COLUMNS.values()):
        table.add_column(column, justify="left" if column in ("grid point", "agent") else "right")
    for group in groups:
        for agent, values in group["agents"].items():
            table.add_row(group["label"], agent, str(len(group["runs"])),
                          *(_cell(values.get(name)) for name in SUMMARY_COLUMNS))
    return table


def _csv(groups: Sequence[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["grid_point", "agent", "seeds", "metric", "estimate", "low", "high", "n", "unit"])
    for group in groups:
        for agent, values in group["agents"].items():
            for name in AGENT_METRICS:
                interval = values.get(name)
                if interval is not None:
                    writer.writerow([group["label"], agent, len(group["runs"]), name, interval["estimate"],
                                     interval["low"], interval["high"], interval["n"], interval["unit"]])
    return buffer.getvalue()


def write_report(
    trials: Sequence[Any], earlier: Collection[str], errors: Mapping[str, str], sweep_dir: Path, console: Console,
) -> dict[str, Any]:
    """Pool the finished trials' ``eval.json`` over seeds, print the table, write the files listed above.

    :param trials: every :class:`ruagent.cli.sweep.Trial` of the sweep, in grid order.
    :param earlier: names of trials that had finished before this launch (not rerun).
    :param errors: trial name -> error of trials that failed in this launch (after their retries).
    :return: the content of ``results.json``.
    """
    statuses = [_status(trial, earlier, errors) for trial in trials]
    # "run" says where the run folder is now (a sweep folder may have moved since its trials ran)
    results = [{**json.loads((Path(s["run"]) / "eval.json").read_text(encoding="utf-8")), "run": s["run"]}
               for s in statuses if s["status"].startswith("finished")]
    groups = _groups(trials, results)
    table = _table(groups, statuses)
    recorder = Console(record=True, width=200, file=io.StringIO())
    recorder.print(table)
    atomic_write_text(sweep_dir / "table.txt", recorder.export_text())
    atomic_write_text(sweep_dir / "results.csv", _csv(groups))
    plots = []
    if results:
        from ruagent.plots import plot_metric_bars

        write_comparison(results, pool_seeds(results), sweep_dir, plots=True)
        bars = {f"{group['label']}/{agent}": values for group in groups for agent, values in group["agents"].items()}
        plots = [str(sweep_dir / "comparison.png"),
                 str(plot_metric_bars(bars, BAR_METRICS, sweep_dir / "plots" / "sweep.png",
                                      title=f"sweep {sweep_dir.name}: seeds pooled"))]
    report = {"schema": SWEEP_SCHEMA, "sweep": str(sweep_dir), "trials": statuses, "groups": groups,
              "table": str(sweep_dir / "table.txt"), "plots": plots}
    atomic_write_text(sweep_dir / "results.json", json.dumps(report, indent=2) + "\n")
    out = Console(soft_wrap=True)
    if not out.is_terminal:  # logs and pipes: wide enough that the table does not wrap
        out.width = max(out.width, 160)
    out.print(table)
    console.print(f"sweep folder: {sweep_dir}  (results.json, results.csv, table.txt, comparison.json, plots/)")
    return report
