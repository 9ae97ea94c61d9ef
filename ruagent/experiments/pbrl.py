"""Preference-based RL on MuJoCo locomotion (issue 16), summarised from its per-run files.

``bench/pbrl_mujoco.py`` runs ``python train.py --config pbrl_mujoco --env <id> --seed <s>`` (PEBBLE's
setting: RiskSAC with ``risk="mean"`` over the posterior's members, the replay buffer relabelled by the
current posterior, at most 1,000 synthetic preferences, and the oracle SAC on the true reward at the same
budget) and keeps each run's evaluation as ``results/pbrl-mujoco/<env>/seed<N>.json``. This module turns
those files into B-Pref's metric, the agent's true return over the oracle's (Lee, Smith, Dragan & Abbeel,
NeurIPS 2021 Datasets and Benchmarks), per seed, with the IQM over seeds and a stratified-bootstrap
interval, and renders the README block ``pbrl`` (``python -m ruagent.experiments.render``).

The PbRL agent (RiskSAC, K critic heads) and the normaliser (SAC) differ in the learnt reward *and* in the
agent. ``bench/pbrl_mujoco.py --control`` trains the agent without the first difference (RiskSAC, the same
settings, every head on the true reward: ``results/pbrl-mujoco/<env>/control/seed<N>.json``), so the
summary splits B-Pref's ratio into PbRL / control (the learnt reward) and control / SAC (the agent).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ruagent.experiments.report import format_interval
from ruagent.experiments.stats import iqm_interval

__all__ = ["BLOCK", "FOLDER", "pbrl_block", "read_controls", "read_runs", "summarise_pbrl"]

#: the README block this module renders, and the folder (under the repository root) of its per-run files
BLOCK = "pbrl"
FOLDER = "results/pbrl-mujoco"
#: the agents of a run: the preference-based agent (train.py's risk agent) and SAC on the true reward
PBRL_AGENT, ORACLE_AGENT = "risk", "oracle"
#: the control: the PbRL agent's algorithm and settings, every critic head on the true reward
CONTROL_AGENT = "control"


def read_runs(folder: str | Path) -> dict[str, list[dict[str, Any]]]:
    """Env id -> its per-seed records (``<folder>/<env>/seed*.json``), in seed order."""
    runs: dict[str, list[dict[str, Any]]] = {}
    for env_folder in sorted(p for p in Path(folder).iterdir() if p.is_dir()):
        records = [json.loads(p.read_text(encoding="utf-8")) for p in env_folder.glob("seed*.json")]
        if records:
            runs[env_folder.name] = sorted(records, key=lambda r: r["seed"])
    return runs


def read_controls(folder: str | Path) -> dict[str, dict[int, dict[str, Any]]]:
    """Env id -> seed -> its control record (``<folder>/<env>/control/seed*.json``)."""
    controls: dict[str, dict[int, dict[str, Any]]] = {}
    for path in sorted(Path(folder).glob("*/control/seed*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        controls.setdefault(path.parent.parent.name, {})[int(record["seed"])] = record
    return controls


def _ratio_interval(numerator: np.ndarray, denominator: np.ndarray) -> dict[str, float] | None:
    positive = denominator > 0
    return iqm_interval(numerator[positive] / denominator[positive]).to_dict() if positive.any() else None


def summarise_pbrl(records: list[dict[str, Any]], controls: dict[int, dict[str, Any]] | None = None) -> dict[str, Any]:
    """One env's seeds -> the IQM intervals of the oracle's and the PbRL agent's true return and of their
    ratio (B-Pref's normalised return; a seed whose oracle return is not positive has no ratio and is
    listed under ``no_ratio_seeds``), the preferences answered, the steps and the run cost.

    ``controls`` (seed -> control record, :func:`read_controls`): on the seeds that have one, the control's
    return and the two factors of B-Pref's ratio, PbRL / control and control / SAC (None without controls).
    """
    oracle = np.asarray([np.mean(r["agents"][ORACLE_AGENT]["true_return"]) for r in records])
    agent = np.asarray([np.mean(r["agents"][PBRL_AGENT]["true_return"]) for r in records])
    positive = oracle > 0
    paired = [i for i, r in enumerate(records) if r["seed"] in (controls or {})]
    control = np.asarray([np.mean(controls[records[i]["seed"]]["agents"][CONTROL_AGENT]["true_return"])
                          for i in paired]) if controls else np.zeros(0)
    return {
        "control_seeds": [records[i]["seed"] for i in paired],
        "control_return": iqm_interval(control).to_dict() if paired else None,
        "pbrl_vs_control": _ratio_interval(agent[paired], control) if paired else None,
        "control_vs_oracle": _ratio_interval(control, oracle[paired]) if paired else None,
        "seeds": [r["seed"] for r in records],
        "oracle_return": iqm_interval(oracle).to_dict(),
        "pbrl_return": iqm_interval(agent).to_dict(),
        "normalised_return": iqm_interval(agent[positive] / oracle[positive]).to_dict() if positive.any() else None,
        "normalised_per_seed": [float(a / o) if o > 0 else None for a, o in zip(agent, oracle, strict=True)],
        "no_ratio_seeds": [r["seed"] for r, ok in zip(records, positive, strict=True) if not ok],
        "preferences": sorted({int(r["preferences"]) for r in records}),
        "timesteps": sorted({int(r["timesteps"]) for r in records}),
        "cpu_minutes_median": float(np.median([r["cpu_s"] for r in records]) / 60.0),
        "wall_minutes_median": float(np.median([r["wall_s"] for r in records]) / 60.0),
    }


def pbrl_block(root: str | Path = ".") -> str:
    """The README table: one row per env with per-run files under ``root/results/pbrl-mujoco``."""
    folder = Path(root, FOLDER)
    lines = [
        f"<!-- generated by `python -m ruagent.experiments.render` from {FOLDER}/*/seed*.json; do not edit by hand "
        "(tests/experiments/test_readme_results.py checks it) -->",
        "True return over 5 deterministic evaluation episodes per seed; IQM over seeds [95 % stratified bootstrap]; "
        "normalised: the PbRL agent's true return / SAC's on the true reward, same seed and budget (B-Pref's "
        "metric). Seeds fixed before running.",
        "",
        "Control: RiskSAC as the PbRL agent (K = 10 critic heads, same settings) with every head on the true "
        "reward (`python bench/pbrl_mujoco.py --control`), on the seeds that have one: PbRL / control is what the "
        "learnt reward does, control / SAC what the agent does.",
        "",
        "| env | seeds | steps per agent | preferences | SAC, true reward | PbRL: RiskSAC (mean), relabelled "
        "| normalised | control: RiskSAC (mean), true reward | PbRL / control | control / SAC "
        "| CPU min per run (median) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    runs = read_runs(folder) if folder.is_dir() else {}
    controls = read_controls(folder) if folder.is_dir() else {}
    for env_id, records in runs.items():
        s = summarise_pbrl(records, controls.get(env_id))
        if s["control_seeds"]:
            seeds = ", ".join(map(str, s["control_seeds"]))
            control_cells = (f"{format_interval(s['control_return'])} (seeds {seeds}) | "
                             f"{format_interval(s['pbrl_vs_control'])} | {format_interval(s['control_vs_oracle'])}")
        else:
            control_cells = "not run | — | —"
        normalised = format_interval(s["normalised_return"])
        if s["no_ratio_seeds"]:
            normalised += f" (no ratio on seeds {', '.join(map(str, s['no_ratio_seeds']))}: oracle return ≤ 0)"
        lines.append(
            f"| {env_id} | {', '.join(map(str, s['seeds']))} | {'/'.join(f'{t:,}' for t in s['timesteps'])} | "
            f"{'/'.join(map(str, s['preferences']))} | {format_interval(s['oracle_return'])} | "
            f"{format_interval(s['pbrl_return'])} | **{normalised}** | {control_cells} | "
            f"{s['cpu_minutes_median']:.0f} |")
    if not runs:
        lines.append("| (no run has finished yet) | | | | | | | | | | |")
    return "\n".join(lines)
