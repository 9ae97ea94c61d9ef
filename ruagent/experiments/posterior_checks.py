"""README "Posteriors that know what they don't know": the three checks, summarised from their per-run files.

    python -m ruagent.experiments.render      # rewrites this block with the others (no training)

The checks and the bench scripts that run them (each writes one small file per run under ``results/``):

* **calibration** (``bench/calibration.py`` → ``results/calibration/runs/*.json``; the same with a declared
  ``prior_reward_scale`` → ``results/calibration-declared/``): does the 90 % member interval cover the
  true reward of never-labelled hazard steps while staying sharp where labels are?
  :data:`CALIBRATION_TARGETS`, checked on the means over seeds per (testbed, configuration).
* **risk agents** (``bench/risk_agents.py`` → ``results/risk_agents/<family>-<features>/seed*.json``):
  does ``python train.py``'s CVaR agent avoid the lava that its labels never showed, where the mean
  agent walks in? Seeds entering lava, with a Wilson interval over seeds, and the IQM true return.
* **uncertainty cost** (``bench/uncertainty_cost.py`` → ``results/uncertainty_cost/<env>/*-seed*.json``):
  is calibration bought with blanket uncertainty? A CVaR agent's true return on tasks without
  hazards, normalised by the same algorithm on the true reward.

The summaries here are the ones the bench scripts print and store (they import them), so the README
block, the scripts' tables and their ``summary.json`` files agree by construction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ruagent.experiments.stats import iqm, iqm_interval, wilson_interval

__all__ = [
    "BLOCK",
    "CALIBRATION_TARGETS",
    "calibration_runs",
    "posteriors_block",
    "summarise_calibration",
    "summarise_risk_agents",
    "summarise_uncertainty_cost",
]

#: the README block this module renders
BLOCK = "posteriors"
#: calibration targets on the hazard testbeds (means over seeds): 90 % interval coverage of hazard and
#: held-out rewards, held-out width / hazard width, AUROC of the member std (hazard against held-out)
CALIBRATION_TARGETS = {"hazard_coverage_90": 0.85, "heldout_coverage_90": 0.80, "width_ratio": 0.1,
                       "auroc_hazard": 0.95}
#: the agents of ``bench/risk_agents.py``'s per-seed files: train.py's risk agent and its mean agent
RISK_AGENT_ROLES = ("risk", "mean")
_CALIBRATION_METRICS = ("coverage_50", "coverage_90", "width_50", "width_90", "gaussian_coverage_90", "nll",
                        "auroc_vs_reference")


# ----------------------------------------------------------------------------------------- calibration
def calibration_runs(folder: str | Path) -> list[dict[str, Any]]:
    """The per-run records of a ``bench/calibration.py`` output folder (``runs/*.json``), in name order."""
    return [json.loads(path.read_text(encoding="utf-8")) for path in sorted(Path(folder, "runs").glob("*.json"))]


def _group_value(report: dict[str, Any], group: str, key: str) -> float | None:
    entry = report["groups"].get(group)
    return None if entry is None or entry.get(key) is None else float(entry[key])


def summarise_calibration(runs: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``"<testbed>/<configuration>"`` -> the means over seeds of each group's figures, the fit time and, on
    hazard testbeds, the held-out / hazard width ratio, the failed targets and a ``PASS``/``FAIL`` verdict."""
    from ruagent.calibration_testbeds import CALIBRATION_TESTBEDS

    runs = list(runs)
    summary: dict[str, dict[str, Any]] = {}
    for key in dict.fromkeys(f"{r['testbed']}/{r['model']}" for r in runs):
        mine = [r for r in runs if f"{r['testbed']}/{r['model']}" == key]
        reports = [r["report"] for r in mine]
        testbed = CALIBRATION_TESTBEDS[mine[0]["testbed"]]
        figures: dict[str, Any] = {"seeds": len(reports)}
        for group in reports[0]["groups"]:
            for metric in _CALIBRATION_METRICS:
                values = [v for v in (_group_value(report, group, metric) for report in reports) if v is not None]
                figures[f"{group}_{metric}"] = round(float(np.mean(values)), 4) if values else None
            spreads = [r["groups"][group]["spread"]["mean"] for r in reports if r["groups"][group]["spread"]]
            figures[f"{group}_spread_mean"] = round(float(np.mean(spreads)), 4) if spreads else None
        figures["fit_seconds"] = round(float(np.mean([r["fit_seconds"] for r in mine])), 2)
        if testbed.hazard:
            hazard_width = figures.get("hazard_width_90")
            ratio = figures["heldout_width_90"] / hazard_width if hazard_width else float("inf")
            figures["width_ratio"] = round(ratio, 4)
            checks = {
                "hazard_coverage_90": (figures.get("hazard_coverage_90") or 0.0)
                >= CALIBRATION_TARGETS["hazard_coverage_90"],
                "heldout_coverage_90": figures["heldout_coverage_90"] >= CALIBRATION_TARGETS["heldout_coverage_90"],
                "width_ratio": ratio <= CALIBRATION_TARGETS["width_ratio"],
                "auroc_hazard": (figures.get("hazard_auroc_vs_reference") or 0.0)
                >= CALIBRATION_TARGETS["auroc_hazard"],
            }
            figures["failed"] = [name for name, ok in checks.items() if not ok]
            figures["verdict"] = "FAIL" if figures["failed"] else "PASS"
        else:
            figures["verdict"] = None
        if testbed.note:
            figures["note"] = testbed.note
        summary[key] = figures
    return summary


# ----------------------------------------------------------------------------------------- risk agents
def summarise_risk_agents(folder: str | Path) -> dict[str, dict[str, Any]]:
    """``"<family>-<features>"`` -> per role (``risk``, ``mean``): seeds whose agent entered lava in any
    evaluation episode (the seed is the unit: one seed's evaluation episodes are deterministic repeats),
    a Wilson 95 % interval on that rate, the IQM over seeds of the true return, and the mean episode length."""
    summary: dict[str, dict[str, Any]] = {}
    for config in sorted(p for p in Path(folder).iterdir() if p.is_dir()):
        records = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(config.glob("seed*.json"))]
        if not records:
            continue
        records.sort(key=lambda r: r["seed"])
        entry: dict[str, Any] = {"seeds": [r["seed"] for r in records]}
        for role in RISK_AGENT_ROLES:
            entered = sum(int(np.max(r["agents"][role]["side_effect_rate"]) > 0) for r in records)
            returns = [float(np.mean(r["agents"][role]["true_return"])) for r in records]
            entry[role] = {
                "seeds_entering_lava": int(entered),
                "n_seeds": len(records),
                "lava_seed_rate_ci95": list(wilson_interval(entered, len(records))),
                "true_return_iqm": float(iqm(returns)),
                "true_return_per_seed": returns,
                "episode_length_mean": float(np.mean([np.mean(r["agents"][role]["episode_length"])
                                                      for r in records])),
            }
        entry["wall_s_median"] = float(np.median([r["wall_s"] for r in records]))
        summary[config.name] = entry
    return summary


# ------------------------------------------------------------------------------------ uncertainty cost
def summarise_uncertainty_cost(folder: str | Path) -> dict[str, dict[str, Any]]:
    """``<env>`` -> the IQM over seeds of the CVaR agent's normalised score (R − R_random) / (R_oracle −
    R_random) with a 95 % percentile-bootstrap interval over seeds (:func:`~ruagent.experiments.stats.iqm_interval`),
    and the per-seed returns. A seed counts once its ``cvar``, ``oracle`` and ``random`` files are all there."""
    summary: dict[str, dict[str, Any]] = {}
    for env_folder in sorted(p for p in Path(folder).iterdir() if p.is_dir()):
        seeds = sorted({int(p.stem.split("seed")[1]) for p in env_folder.glob("cvar-seed*.json")})
        rows = []
        for seed in seeds:
            paths = {a: env_folder / f"{a}-seed{seed}.json" for a in ("cvar", "oracle", "random")}
            if not all(p.is_file() for p in paths.values()):
                continue
            r = {a: float(json.loads(p.read_text(encoding="utf-8"))["true_return"]) for a, p in paths.items()}
            rows.append({"seed": seed, **r, "normalised": (r["cvar"] - r["random"]) / (r["oracle"] - r["random"])})
        if not rows:
            continue
        interval = iqm_interval(np.asarray([row["normalised"] for row in rows]))
        summary[env_folder.name] = {"normalised_iqm": interval.estimate, "ci95": [interval.low, interval.high],
                                    "per_seed": rows}
    return summary


# ---------------------------------------------------------------------------------------- README block
def _span(values: list[float], digits: int = 2) -> str:
    low, high = min(values), max(values)
    if round(low, digits) == round(high, digits):
        return f"{low:.{digits}f}"
    return f"{low:.{digits}f} to {high:.{digits}f}"


#: how a failed calibration check reads in the README, and the figure it failed on
_CHECK_FIGURES = {"hazard_coverage_90": ("hazard coverage", "hazard_coverage_90"),
                  "heldout_coverage_90": ("held-out coverage", "heldout_coverage_90"),
                  "width_ratio": ("width ratio", "width_ratio"),
                  "auroc_hazard": ("AUROC", "hazard_auroc_vs_reference")}


def _calibration_rows(summary: dict[str, dict[str, Any]], source: str, command: str) -> list[str]:
    from ruagent.calibration_testbeds import CALIBRATION_TESTBEDS

    by_testbed: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in CALIBRATION_TESTBEDS}
    for key, figures in summary.items():
        testbed, config = key.split("/")
        if figures.get("verdict") is not None:  # hazard testbeds only: the others have no targets
            by_testbed[testbed][config] = figures
    rows = []
    for testbed, configs in by_testbed.items():
        if not configs:
            continue
        failed = {config: f["failed"] for config, f in configs.items() if f["failed"]}
        if not failed:
            verdict = f"**holds** for all {len(configs)} configurations"
        else:
            verdict = f"**fails** for {len(failed)} of {len(configs)} (" + "; ".join(
                f"{config}: " + ", ".join(f"{_CHECK_FIGURES[c][0]} {configs[config][_CHECK_FIGURES[c][1]] or 0.0:.3g}"
                                          for c in checks) for config, checks in failed.items()) + ")"
        seeds = sorted({f["seeds"] for f in configs.values()})
        rows.append(
            f"| {testbed} | {verdict}; over the configurations: hazard coverage "
            f"{_span([f['hazard_coverage_90'] or 0.0 for f in configs.values()])}, held-out "
            f"{_span([f['heldout_coverage_90'] for f in configs.values()])}, width ratio "
            f"{_span([f['width_ratio'] for f in configs.values()], 3)}, AUROC "
            f"{_span([f['hazard_auroc_vs_reference'] or 0.0 for f in configs.values()])} "
            f"({'/'.join(map(str, seeds))} seeds)"
            + next((f". {f['note'][0].upper()}{f['note'][1:]}" for f in configs.values() if f.get("note")), "")
            + f" | `{command}`, [{source}/runs/]({source}/runs/) |")
    return rows


def posteriors_block(root: str | Path = ".") -> str:
    """The README block: one row per calibration testbed (default and declared prior scale), one per posterior
    configuration of the risk-agent check, one per env of the uncertainty-cost check; every figure computed
    from the per-run files under ``root/results`` (missing folders are left out)."""
    results = Path(root, "results")
    lines = [
        "<!-- generated by `python -m ruagent.experiments.render` from results/calibration/runs/, "
        "results/calibration-declared/runs/, results/risk_agents/*/ and results/uncertainty_cost/*/; do not "
        "edit by hand (tests/experiments/test_readme_results.py checks it) -->",
        "Calibration targets, on the means over seeds: 90 % member interval covers ≥ "
        f"{CALIBRATION_TARGETS['hazard_coverage_90']:.0%} of never-labelled hazard rewards and ≥ "
        f"{CALIBRATION_TARGETS['heldout_coverage_90']:.0%} of held-out ones, held-out width ≤ "
        f"{CALIBRATION_TARGETS['width_ratio']:g} × hazard width, AUROC of the member std (hazard vs held-out) ≥ "
        f"{CALIBRATION_TARGETS['auroc_hazard']:g}. Configurations: ensemble / linear × transition / env features.",
        "",
        "| check | result | command, per-run files |",
        "|---|---|---|",
    ]
    for folder, command in (("calibration", "python bench/calibration.py --seeds 0 1 2 3 4"),
                            ("calibration-declared", "python bench/calibration.py --seeds 0 1 2 3 4 --testbeds "
                                                     "PointNavigation --prior-reward-scale 0.5 --out "
                                                     "results/calibration-declared")):
        runs = calibration_runs(results / folder) if (results / folder / "runs").is_dir() else []
        if not runs:
            continue
        scales = sorted({str(r.get("prior_reward_scale")) for r in runs})
        label = "label-derived prior scale" if scales == ["None"] else f"declared prior_reward_scale {'/'.join(scales)}"
        for row in _calibration_rows(summarise_calibration(runs), f"results/{folder}", command):
            lines.append(row.replace("| ", f"| calibration ({label}): ", 1))
    if (results / "risk_agents").is_dir():
        for config, entry in summarise_risk_agents(results / "risk_agents").items():
            cells = []
            for role, name in (("risk", "CVaR agent"), ("mean", "mean agent")):
                a = entry[role]
                low, high = a["lava_seed_rate_ci95"]
                cells.append(f"{name} {a['seeds_entering_lava']} / {a['n_seeds']} seeds in lava [{low:.2f}, "
                             f"{high:.2f}], IQM return {a['true_return_iqm']:.2f}, episode length "
                             f"{a['episode_length_mean']:.1f}")
            lines.append(f"| risk agents, LavaWorld canonical, `{config}` posterior: does train.py's CVaR agent avoid "
                         f"never-labelled lava? | {'; '.join(cells)} (optimum 1.1) | `python bench/risk_agents.py "
                         f"--family ensemble linear`, [results/risk_agents/{config}/](results/risk_agents/{config}/) |")
    if (results / "uncertainty_cost").is_dir():
        for env, entry in summarise_uncertainty_cost(results / "uncertainty_cost").items():
            low, high = entry["ci95"]
            oracle = [row["oracle"] for row in entry["per_seed"]]
            lines.append(f"| uncertainty cost, {env}: CVaR agent through the default ensemble / the same algorithm "
                         f"on the true reward (target ≥ 0.9) | **{entry['normalised_iqm']:.3f}** [{low:.3f}, "
                         f"{high:.3f}] (IQM over {len(entry['per_seed'])} seeds, percentile bootstrap; oracle return "
                         f"{_span(oracle, 1)} over seeds) | `python bench/uncertainty_cost.py`, "
                         f"[results/uncertainty_cost/{env}/](results/uncertainty_cost/{env}/) |")
    return "\n".join(lines)
