"""Several evaluated runs side by side: seeds pooled, rich tables, comparison files.

Used by ``python evaluate.py RUN_A RUN_B ...`` (:mod:`ruagent.cli.evaluate`). Runs that
differ only in their training seed (same ``config_digest`` and evaluation env) are pooled:
each agent's metrics get intervals over per-seed means, the seed being the unit of
replication (Henderson et al., AAAI 2018; Agarwal et al., NeurIPS 2021).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ruagent import metrics
from ruagent.cli.eval_format import AGENT_METRICS, BAR_METRICS, EVAL_SCHEMA
from ruagent.io import atomic_write_text

__all__ = ["pool_seeds", "print_results", "write_comparison"]


def pool_seeds(results: Sequence[dict[str, Any]], seed: int = 0) -> list[dict[str, Any]]:
    """Agents' metrics pooled over runs that differ only in their training seed.

    Runs are grouped by ``config_digest`` and evaluation env; each group of two or more runs
    gives, per agent, intervals that resample the per-run (per-seed) means (unit ``seed``;
    :func:`ruagent.metrics.bootstrap_interval`).

    :return: one entry per group: ``{"runs": [...], "env": ..., "agents": {agent: {metric: interval}}}``.
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        key = json.dumps([result.get("config_digest"), result["env"]], sort_keys=True)
        groups.setdefault(key, []).append(result)
    pooled = []
    for members in groups.values():
        if len(members) < 2:
            continue
        agents: dict[str, dict[str, Any]] = {}
        for agent in sorted(set.intersection(*(set(r["agents"]) for r in members))):
            per_run = [r["agents"][agent]["per_episode"] for r in members]
            agents[agent] = {
                name: metrics.bootstrap_interval([run[name] for run in per_run], seed=seed).to_dict()
                if all(name in run for run in per_run) else None
                for name in AGENT_METRICS
            }
        pooled.append({"runs": [r["run"] for r in members], "env": members[0]["env"], "agents": agents})
    return pooled


# ---------------------------------------------------------------------- printing
def _cell(value: dict[str, Any] | None) -> str:
    return "–" if value is None else str(metrics.Interval(**value))


def _name_column(table: Table, header: str, names: Sequence[str]) -> None:
    """A first column wide enough for the longest run name: names are shown whole (folded on narrow
    terminals), never cut to an ellipsis, so runs that differ only at the end stay apart."""
    table.add_column(header, min_width=min(max([len(header), *map(len, names)]), 80), overflow="fold")


def print_results(
    results: Sequence[dict[str, Any]], pooled: Sequence[dict[str, Any]] = (), console: Console | None = None
) -> None:
    """Rich tables: one row per (run, agent), seeds pooled, the posterior of each run, transfer."""
    if console is None:
        console = Console()
        if not console.is_terminal:  # logs and pipes: wide enough that the tables do not wrap
            console.width = max(console.width, 140)
    several = len(results) > 1
    rows = [(f"{Path(result['run']).name}/{agent}" if several else agent, entry)
            for result in results for agent, entry in result["agents"].items()]
    table = Table(title="agents (estimate [95% bootstrap interval])", header_style="bold")
    _name_column(table, "run / agent" if several else "agent", [label for label, _ in rows])
    for name in AGENT_METRICS:
        table.add_column(name.replace("_", " "), justify="right")
    for label, entry in rows:
        table.add_row(label, *(_cell(entry["metrics"][name]) for name in AGENT_METRICS))
    console.print(table)
    for group in pooled:
        seeds = Table(title=f"pooled over {len(group['runs'])} seeds (interval over per-seed means)",
                      header_style="bold")
        seeds.add_column("agent")
        for name in AGENT_METRICS:
            seeds.add_column(name.replace("_", " "), justify="right")
        for agent, values in group["agents"].items():
            seeds.add_row(agent, *(_cell(values[name]) for name in AGENT_METRICS))
        console.print(seeds)
    posterior = Table(title="posterior", header_style="bold")
    _name_column(posterior, "run", [Path(result["run"]).name for result in results])
    for column in ("AUROC test-only", "AUROC hazard", "NLL held-out", "cov90 held-out", "NLL deploy",
                   "cov90 deploy"):
        posterior.add_column(column, justify="right")
    for result in results:
        p = result["posterior"]
        cal = [p["calibration"][s] or {} for s in ("heldout", "deployment")]
        posterior.add_row(Path(result["run"]).name, _cell(p["ood"]["test_only"]["auroc"]),
                          _cell(p["ood"]["hazard"]["auroc"]),
                          *(_cell(c.get(k)) for c in cal for k in ("nll", "coverage_90")))
    console.print(posterior)
    transfer = [(Path(r["run"]).name, a, v, t) for r in results for a, e in r["agents"].items()
                for v, t in e["transfer"].items()]
    if transfer:
        moved = Table(title="policy transfer", header_style="bold")
        _name_column(moved, "run", [name for name, *_ in transfer])
        for column in ("agent", "variant", "true return", "side-effect rate"):
            moved.add_column(column)
        for run_name, agent, variant, values in transfer:
            moved.add_row(run_name, agent, variant, _cell(values["true_return"]), _cell(values["side_effect_rate"]))
        console.print(moved)


def write_comparison(
    results: Sequence[dict[str, Any]], pooled: Sequence[dict[str, Any]], out: Path, plots: bool
) -> None:
    """``comparison.json`` (every run's eval.json plus the pooled seeds) and ``comparison.png`` in ``out``."""
    comparison = {"schema": EVAL_SCHEMA, "runs": list(results), "pooled_seeds": list(pooled)}
    atomic_write_text(out / "comparison.json", json.dumps(comparison, indent=2) + "\n")
    if plots:
        from ruagent.plots import plot_metric_bars

        bars = {f"{Path(r['run']).name}/{a}": e["metrics"] for r in results for a, e in r["agents"].items()}
        plot_metric_bars(bars, BAR_METRICS, out / "comparison.png", title="runs compared")
