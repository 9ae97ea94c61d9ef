"""The end of ``python train.py``: evaluate the run by the truth and print what it found.

The full report (every metric, the posterior's OOD AUROC and calibration, policy transfer,
plots) is ``eval.json`` and ``plots/`` from :func:`ruagent.cli.evaluate.evaluate_run`;
``python evaluate.py RUN_DIR`` prints all of it. Here: one short table, one row per agent.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from ruagent.cli.run_dir import RunDir

__all__ = ["SUMMARY_COLUMNS", "evaluate_and_summarise", "summary_table"]

#: eval.json metric -> column title of the summary table
SUMMARY_COLUMNS = {
    "true_return": "true return",
    "side_effect_rate": "side effects",
    "goodhart_gap": "goodhart gap",
    "regret": "regret",
}


def _number(x: float) -> str:
    return f"{0.0 if abs(x) < 1e-9 else x:.3g}"  # no "-8.9e-16" for a regret of zero


def _cell(value: dict[str, Any] | None) -> str:
    if value is None:
        return "–"
    if value["low"] == value["high"]:  # e.g. a deterministic policy on a deterministic map
        return _number(value["estimate"])
    return f"{_number(value['estimate'])} [{_number(value['low'])}, {_number(value['high'])}]"


def summary_table(result: dict[str, Any], order: list[str] | None = None) -> Table:
    """A rich table of the headline metrics per agent from an eval.json dict (agents in ``order`` first)."""
    table = Table(title=f"{result['env']['id']} {result['env']['kwargs'] or ''}", header_style="bold",
                  caption=f"{result['episodes']} episodes per agent; estimate [95% bootstrap interval]")
    table.add_column("agent")
    for title in SUMMARY_COLUMNS.values():
        table.add_column(title, justify="right")
    agents = sorted(result["agents"], key=lambda a: (order or []).index(a) if a in (order or []) else len(order or []))
    for agent in agents:
        table.add_row(agent, *(_cell(result["agents"][agent]["metrics"].get(name)) for name in SUMMARY_COLUMNS))
    return table


def evaluate_and_summarise(config: dict[str, Any], run: RunDir, console: Console | None = None) -> dict[str, Any]:
    """Run evaluate.py's evaluation on ``run`` (eval.json, plots) and print the summary table."""
    from ruagent.cli.evaluate import evaluate_run

    result = evaluate_run(run.path, episodes=config["eval"]["episodes"], seed=config["seed"],
                          progress_bar=config["progress_bar"])
    if console is None:
        console = Console(soft_wrap=True)
        if not console.is_terminal:  # logs and pipes: wide enough that the table does not wrap
            console.width = max(console.width, 120)
    from ruagent.cli.factory import agent_specs

    console.print(summary_table(result, order=[spec.name for spec in agent_specs(config)]))
    console.print(f"full report: python evaluate.py {run.path}   (eval.json, plots/ in the run folder)")
    return result
