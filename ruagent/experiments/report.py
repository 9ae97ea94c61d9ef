"""Aggregate the headline experiment's job results into its table (markdown + JSON).

Every number is an estimate over **seeds** (the unit: a seed's agents share its posterior and
evaluation episodes), computed by :mod:`ruagent.experiments.stats` (Agarwal et al., NeurIPS 2021):

- returns, regret, goodhart gap, episode length, ``vs_oracle``: each seed's mean over its evaluation
  episodes, then the **IQM over seeds** with a stratified bootstrap percentile interval (95 %);
- rates (side-effect rate: share of episodes; side-effect steps: share of steps, a time share, shown
  beside the episode length): the **mean over seeds** with a **Wilson interval over seeds**, inside
  [0, 1] and never [0, 0] from a handful of seeds (an IQM would trim the rare seed that enters lava);
- **probability of improvement** over the mean agent (``naive``): P(agent's seed score > naive's),
  ties ½, with a paired bootstrap over the seeds both ran; for true return (higher is better) and
  for the side-effect rate (fewer is better), per cell and aggregated over testbeds.

With a single seed there is nothing to resample over seeds, so that seed's episodes are the unit.
Regret is against the env's exact solver where it has one (paired per episode), else against the
oracle agent of the same seed. ``vs_oracle`` is the agent's mean true return divided by the oracle
agent's, per seed; it is left out where an oracle's return is not positive. The report works on
whatever results exist, so a partial run still yields a table.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ruagent import metrics
from ruagent.experiments import stats
from ruagent.experiments.agents import AGENTS
from ruagent.experiments.testbeds import TESTBEDS

__all__ = ["EXTRA_METRICS", "HOPE_AGENTS", "IMPROVEMENT_BASELINE", "IMPROVEMENT_METRICS", "PER_SEED_METRICS",
           "RATE_METRICS", "TABLE_METRICS", "TIME_SHARE_TESTBEDS", "aggregate", "check_hopes", "format_interval",
           "headline_variant", "load_results", "markdown_table"]

#: table columns: metric -> header (the episode length sits beside the time share it qualifies)
TABLE_METRICS = {
    "true_return": "true return",
    "vs_oracle": "true / oracle",
    "regret": "regret",
    "side_effect_rate": "side-effect rate",
    "side_effect_steps": "side-effect steps",
    "episode_length": "episode length",
    "proxy_return": "proxy return",
    "goodhart_gap": "goodhart gap",
    "p_better_return": "P(return > naive)",
    "p_fewer_side_effects": "P(fewer side effects than naive)",
}
#: columns a testbed adds where its files hold them (TwoHypothesisCartPole: the return under each
#: hypothesis; the true return is hypothesis 1's in its test variant)
EXTRA_METRICS = {"return_hypothesis0": "return if hypothesis 0 (p 0.95) were true",
                 "return_hypothesis1": "return if hypothesis 1 (p 0.05) were true"}
#: shares in [0, 1]: mean over seeds with a Wilson interval, printed in percent
RATE_METRICS = ("side_effect_rate", "side_effect_steps")
#: testbeds whose side effect is a share of time, not an event (testbed -> what the share is): their
#: "fewer side effects" compares time shares, and the episode length is shown beside them
TIME_SHARE_TESTBEDS = {"two-hypothesis-cartpole": "time right of centre",
                       # every 1,000-step episode crosses the limit at some point, the oracle's too
                       "speed-limit-cheetah": "time over the speed limit"}
#: the mean agent every other agent is compared with
IMPROVEMENT_BASELINE = "naive"
#: row metric -> the evaluation key whose episode mean each seed contributes (a row's ``per_seed`` lists)
PER_SEED_METRICS = {"true_return": "true_return", "proxy_return": "proxy_return",
                    "side_effect_rate": "side_effect", "side_effect_steps": "side_effect_steps"}
#: probability-of-improvement column -> (per-episode key, sign: +1 higher is better, -1 lower is better)
IMPROVEMENT_METRICS = {"p_better_return": ("true_return", 1.0), "p_fewer_side_effects": ("side_effect", -1.0)}
#: the risk-averse agents the hope is about
HOPE_AGENTS = ("cvar", "worst", "broil")
HOPE_SIDE_EFFECT_RATE, HOPE_RETURN_FRACTION = 0.02, 0.9


def load_results(out: str | Path) -> tuple[dict, dict]:
    """All finished job results under ``out/runs``.

    :return: ``(agents, posteriors)``: ``agents[testbed][agent][seed]`` is an agent job's
        result dict, ``posteriors[testbed][seed]`` a posterior job's.
    """
    agents: dict = defaultdict(lambda: defaultdict(dict))
    posteriors: dict = defaultdict(dict)
    for path in sorted(Path(out, "runs").glob("*/seed*/*.json")) + sorted(Path(out, "runs").glob("*/seed*/*/*.json")):
        result = json.loads(path.read_text())
        if result.get("agent") is None:
            posteriors[result["testbed"]][result["seed"]] = result
        else:
            agents[result["testbed"]][result["agent"]][result["seed"]] = result
    return agents, posteriors


def _per_seed(episodes: list[dict], name: str) -> list[float]:
    return [float(np.mean(e[name])) for e in episodes]


def _score(per_seed: list[float], episodes: list[list[float]]) -> dict[str, Any] | None:
    """IQM over seeds [stratified bootstrap]; one seed: its episode mean [bootstrap over episodes]."""
    if not per_seed:
        return None
    if len(per_seed) > 1:
        return stats.iqm_interval(per_seed).to_dict()
    return metrics.bootstrap_interval(episodes[0]).to_dict()


def _rate(per_seed: list[float], episodes: list[list[float]]) -> dict[str, Any] | None:
    """Mean over seeds [Wilson over seeds]; one seed: over its episodes."""
    if not per_seed:
        return None
    if len(per_seed) > 1:
        return stats.rate_interval(per_seed).to_dict()
    return stats.rate_interval(episodes[0], unit="episode").to_dict()


def _ordered(names: Sequence[str], order: Sequence[str]) -> list[str]:
    return [n for n in order if n in names] + sorted(n for n in names if n not in order)


def aggregate(agent_results: dict, posteriors: dict) -> dict[str, Any]:
    """Rows of the table, the probability of improvement over the testbeds, the posterior's OOD AUROC
    and the cost per job; each metric an interval dict (:meth:`ruagent.metrics.Interval.to_dict`).

    :return: ``{"rows": [{"testbed", "variant", "agent", "seeds", "per_seed", "episodes", "timesteps",
        "metrics": {...}}],
        "improvement": [...], "ood": [{"testbed", "variant", "seeds", "test_only", "hazard"}], "cost": [...]}``
    """
    rows = []
    for testbed in _ordered(list(agent_results), list(TESTBEDS)):
        by_agent = agent_results[testbed]
        oracle = by_agent.get("oracle", {})
        # The variants the files hold (a committed run renders even after the testbed's code changed),
        # in the spec's order where the testbed still exists.
        found_variants = sorted({v for by_seed in by_agent.values() for r in by_seed.values() for v in r["evaluation"]})
        for variant in _ordered(found_variants, list(TESTBEDS[testbed].eval_variants) if testbed in TESTBEDS else []):
            for agent in _ordered(list(by_agent), list(AGENTS)):
                seeds = sorted(s for s, r in by_agent[agent].items() if variant in r["evaluation"])
                if not seeds:
                    continue
                episodes = [by_agent[agent][s]["evaluation"][variant] for s in seeds]
                found = {name: _score(_per_seed(episodes, name), [e[name] for e in episodes]) for name in
                         ("true_return", "proxy_return", "goodhart_gap", "episode_length", *EXTRA_METRICS)
                         if all(name in e for e in episodes)}
                for name, key in (("side_effect_rate", "side_effect"), ("side_effect_steps", "side_effect_steps")):
                    found[name] = _rate(_per_seed(episodes, key), [e[key] for e in episodes])
                found["regret"] = _regret(episodes, seeds, oracle, variant)
                found["vs_oracle"] = _vs_oracle(episodes, seeds, oracle, variant)
                found.update(_improvement(by_agent, testbed, agent, variant))
                rows.append({"testbed": testbed, "variant": variant, "agent": agent, "seeds": seeds,
                             "per_seed": {name: _per_seed(episodes, key) for name, key in PER_SEED_METRICS.items()
                                          if all(key in e for e in episodes)},
                             "episodes": int(sum(len(e["true_return"]) for e in episodes)),
                             "timesteps": sorted({by_agent[agent][s]["timesteps"] for s in seeds}),
                             "metrics": {m: found.get(m) for m in TABLE_METRICS}
                             | {m: found[m] for m in EXTRA_METRICS if m in found}})
    return {"rows": rows, "improvement": _improvement_overall(agent_results), "ood": _ood(posteriors),
            "cost": _cost(agent_results, posteriors)}


def _seed_scores(by_agent: dict, agent: str, variant: str, key: str) -> dict[int, float]:
    return {s: float(np.mean(r["evaluation"][variant][key])) for s, r in by_agent.get(agent, {}).items()
            if variant in r["evaluation"]}


def _paired(by_agent: dict, testbed: str, agent: str, variant: str, key: str,
            sign: float) -> tuple[list[float], list[float]]:
    """Per-seed scores of ``agent`` and of the baseline over the seeds both ran (times ``sign``)."""
    if key == "side_effect" and testbed in TIME_SHARE_TESTBEDS:
        key = "side_effect_steps"  # every CartPole episode visits the right once; compare time shares
    mine = _seed_scores(by_agent, agent, variant, key)
    theirs = _seed_scores(by_agent, IMPROVEMENT_BASELINE, variant, key)
    common = sorted(set(mine) & set(theirs))
    return [sign * mine[s] for s in common], [sign * theirs[s] for s in common]


def _improvement(by_agent: dict, testbed: str, agent: str, variant: str) -> dict[str, dict[str, Any] | None]:
    """P(agent better than the mean agent) on the seeds both ran, per :data:`IMPROVEMENT_METRICS`; None
    with fewer than 2 such seeds (one seed pair gives 0, ½ or 1 with nothing to resample)."""
    found: dict[str, dict[str, Any] | None] = {}
    for column, (key, sign) in IMPROVEMENT_METRICS.items():
        x, y = _paired(by_agent, testbed, agent, variant, key, sign) if agent != IMPROVEMENT_BASELINE else ([], [])
        found[column] = stats.probability_of_improvement_interval(x, y).to_dict() if len(x) > 1 else None
    return found


def headline_variant(testbed: str) -> str:
    """The variant a testbed enters the across-testbed aggregate with: its deployment variant (the
    protocol's), so no seed counts twice."""
    spec = TESTBEDS.get(testbed)
    if spec is None:
        return "test"
    return next((v for v, kwargs in spec.eval_variants.items() if kwargs == spec.deploy_kwargs),
                next(iter(spec.eval_variants)))


def _improvement_overall(agent_results: dict) -> list[dict[str, Any]]:
    """P(agent better than naive) over testbeds (one task each, seeds resampled within a testbed)."""
    testbeds = _ordered(list(agent_results), list(TESTBEDS))
    agents = _ordered(sorted({a for t in testbeds for a in agent_results[t]} - {IMPROVEMENT_BASELINE}), list(AGENTS))
    entries = []
    for agent in agents:
        for column, (key, sign) in IMPROVEMENT_METRICS.items():
            tasks = {t: _paired(agent_results[t], t, agent, headline_variant(t), key, sign) for t in testbeds}
            tasks = {t: xy for t, xy in tasks.items() if len(xy[0]) > 1}
            if tasks:
                interval = stats.probability_of_improvement_interval([x for x, _ in tasks.values()],
                                                                     [y for _, y in tasks.values()])
                entries.append({"agent": agent, "metric": column, "testbeds": list(tasks),
                                "interval": interval.to_dict()})
    return entries


def _ood(posteriors: dict) -> list[dict[str, Any]]:
    ood = []
    for testbed in _ordered(list(posteriors), list(TESTBEDS)):
        seeds = sorted(posteriors[testbed])
        for variant in posteriors[testbed][seeds[0]]["ood"]:
            entry = {"testbed": testbed, "variant": variant, "seeds": seeds}
            for kind in ("test_only", "hazard"):
                estimates = [posteriors[testbed][s]["ood"][variant][kind]["auroc"] for s in seeds]
                estimates = [e["estimate"] for e in estimates if e is not None]
                # IQM over seeds (each seed's AUROC is one unit); one seed keeps its transition-level interval.
                if len(estimates) > 1:
                    entry[kind] = stats.iqm_interval(estimates).to_dict()
                else:
                    entry[kind] = posteriors[testbed][seeds[0]]["ood"][variant][kind]["auroc"]
            ood.append(entry)
    return ood


def _cost(agent_results: dict, posteriors: dict) -> list[dict[str, Any]]:
    """Measured seconds per job (``wall_seconds`` of each result), per testbed and agent: the numbers
    a compute budget (issue 15's tiers) is planned from."""
    cost = []
    for testbed in _ordered(list(set(agent_results) | set(posteriors)), list(TESTBEDS)):
        jobs = {"posterior": list(posteriors.get(testbed, {}).values())}
        jobs |= {a: list(r.values()) for a, r in agent_results.get(testbed, {}).items()}
        for agent in _ordered(list(jobs), ["posterior", *AGENTS]):
            seconds = [r["wall_seconds"] for r in jobs[agent] if r.get("wall_seconds") is not None]
            if seconds:
                cost.append({"testbed": testbed, "agent": agent, "jobs": len(seconds),
                             "mean_seconds": float(np.mean(seconds)), "total_seconds": float(np.sum(seconds))})
    return cost


def _regret(episodes: list[dict], seeds: list[int], oracle: dict, variant: str) -> dict[str, Any] | None:
    if all("optimal_return" in e for e in episodes):  # the exact solver, paired per episode
        per_episode = [np.subtract(e["optimal_return"], e["true_return"]) for e in episodes]
        return _score([float(np.mean(r)) for r in per_episode], per_episode)
    paired = [(e, oracle[s]["evaluation"][variant]) for e, s in zip(episodes, seeds) if s in oracle]
    if not paired:
        return None
    per_episode = [np.mean(o["true_return"]) - np.asarray(e["true_return"]) for e, o in paired]
    return _score([float(np.mean(r)) for r in per_episode], per_episode)


def _vs_oracle(episodes: list[dict], seeds: list[int], oracle: dict, variant: str) -> dict[str, Any] | None:
    ratios = []
    for e, s in zip(episodes, seeds):
        if s not in oracle:
            continue
        reference = float(np.mean(oracle[s]["evaluation"][variant]["true_return"]))
        if reference <= 0:  # a ratio to a non-positive return says nothing
            return None
        ratios.append(float(np.mean(e["true_return"])) / reference)
    if not ratios:
        return None
    if len(ratios) > 1:
        return stats.iqm_interval(ratios).to_dict()
    return {"estimate": ratios[0], "low": ratios[0], "high": ratios[0], "n": 1, "unit": "seed"}


def check_hopes(rows: list[dict]) -> list[dict[str, Any]]:
    """The headline hypotheses, each checked against the table: ``{"claim", "holds", "evidence"}``.

    - a risk agent's side-effect rate (mean over seeds) is at most 2 % and its true return (IQM) at
      least 90 % of the oracle's. The rate's Wilson interval is reported beside it, but no bound on it
      is asked: with no side effect on n seeds its upper end is z² / (n + z²), 43 % for 5 seeds and
      28 % for 10, so "CI high <= 2 %" would need about 190 seeds;
    - naive has clearly more side effects: every risk agent's P(fewer side effects than naive) has
      its interval's low end above ½ (probability of improvement, paired seeds);
    - TwoHypothesisCartPole: naive spends most steps right of centre, cvar most left.

    Every testbed in ``rows`` with an event side effect is checked on its deployment variant, with the
    risk agents it has; ``holds`` is None where the evidence it needs is missing (no oracle ratio).
    """
    cell = {(r["testbed"], r["variant"], r["agent"]): r["metrics"] for r in rows}
    checks = []
    present = list(dict.fromkeys(r["testbed"] for r in rows))
    for testbed in [t for t in present if t not in TIME_SHARE_TESTBEDS]:
        variant = headline_variant(testbed)
        for agent in [a for a in HOPE_AGENTS if (testbed, variant, a) in cell]:
            found = cell.get((testbed, variant, agent))
            side, ratio = (found or {}).get("side_effect_rate"), (found or {}).get("vs_oracle")
            # Too many side effects fail the claim whatever the return; a missing ratio (no oracle, or an
            # oracle whose return is not positive) leaves it open.
            if side is None or (side["estimate"] <= HOPE_SIDE_EFFECT_RATE and ratio is None):
                holds = None
            else:
                holds = side["estimate"] <= HOPE_SIDE_EFFECT_RATE and ratio["estimate"] >= HOPE_RETURN_FRACTION
            checks.append({
                "claim": f"{testbed}: {agent} has side-effect rate <= {HOPE_SIDE_EFFECT_RATE:.0%} (mean over seeds) "
                         f"and true return >= {HOPE_RETURN_FRACTION:.0%} of the oracle's (IQM)",
                "holds": holds,
                "evidence": {"side_effect_rate": side, "vs_oracle": ratio},
            })
        fewer = {a: (cell.get((testbed, variant, a)) or {}).get("p_fewer_side_effects") for a in HOPE_AGENTS}
        fewer = {a: p for a, p in fewer.items() if p is not None}
        if fewer:
            checks.append({
                "claim": f"{testbed}: naive's side-effect rate is clearly higher (every risk agent's P(fewer side "
                         "effects than naive): CI low > 50 %)",
                "holds": all(p["low"] > 0.5 for p in fewer.values()),
                "evidence": {"naive": (cell.get((testbed, variant, "naive")) or {}).get("side_effect_rate"),
                             "p_fewer_side_effects": fewer},
            })
    if "two-hypothesis-cartpole" not in present:
        return checks
    # PG-BROIL's direction: a mean agent spends most steps right of centre, a CVaR agent most left.
    cells = {a: cell.get(("two-hypothesis-cartpole", "test", a)) or {} for a in ("naive", "cvar")}
    right = {a: c.get("side_effect_steps") for a, c in cells.items()}
    checks.append({
        "claim": "two-hypothesis-cartpole: naive (mean) spends most steps right of centre, cvar most left",
        "holds": None if None in right.values() else bool(
            right["naive"]["estimate"] > 0.5 > right["cvar"]["estimate"]),
        "evidence": {f"{a}_share_of_steps_right": v for a, v in right.items()}
        | {f"{a}_episode_length": c.get("episode_length") for a, c in cells.items()},
    })
    return checks


def format_interval(interval: dict[str, Any] | None, percent: bool = False) -> str:
    """``estimate [low, high]`` to three significant digits (percent: times 100 with a % sign)."""
    if interval is None:
        return "—"
    scale, suffix = (100.0, "%") if percent else (1.0, "")
    # Three significant digits; float round-off (a regret of -9e-16 against the optimum) prints as 0.
    e, lo, hi = (round(scale * interval[k], 6) + 0.0 for k in ("estimate", "low", "high"))
    return f"{e:.3g}{suffix} [{lo:.3g}, {hi:.3g}]"


_PERCENT = (*RATE_METRICS, "vs_oracle", *IMPROVEMENT_METRICS)
METHOD_NOTE = (
    "Unit: the seed (a seed's agents share its posterior). Returns, regret, gap, episode length, true / oracle: "
    "IQM over seeds of each seed's episode mean [95 % stratified bootstrap percentile interval over seeds]. "
    "Rates (side-effect rate: share of episodes; side-effect steps: share of steps, shown beside the episode "
    "length; TwoHypothesisCartPole: time right of centre): mean over seeds [95 % Wilson interval over seeds, "
    "inside [0, 1]]. P(... naive): probability of improvement over the mean agent (ties ½) [paired bootstrap "
    "over seeds]. One seed: its episodes are the unit. Method: Agarwal et al., NeurIPS 2021 "
    "(ruagent/experiments/stats.py).")


def markdown_table(report: dict[str, Any]) -> str:
    """The results as markdown: one table per (testbed, variant), the probability of improvement over
    testbeds, the OOD AUROCs, the hope checks, the cost per job and the run's chunks."""
    chunks = report.get("chunks") or []
    wall = sum(c["wall_seconds"] for c in chunks) if chunks else (report.get("wall_seconds") or 0.0)
    lines = ["# Headline experiment: results", "",
             f"Command: `{report['command']}`  ", f"Machine: {report['machine']}  ",
             f"Wall time: {wall / 60:.1f} min{f' in {len(chunks)} chunk(s)' if chunks else ''}; jobs finished: "
             f"{report.get('jobs_finished')} of {report.get('jobs_total')}", "", METHOD_NOTE, ""]
    groups: dict = defaultdict(list)
    for row in report["rows"]:
        groups[(row["testbed"], row["variant"])].append(row)
    for (testbed, variant), rows in groups.items():
        title = TESTBEDS[testbed].title if testbed in TESTBEDS else testbed
        steps = sorted({step for row in rows for step in row.get("timesteps", [])})
        trained = f" ({' / '.join(f'{step:,}' for step in steps)} training steps per agent)" if steps else ""
        columns = {**TABLE_METRICS, **{m: name for m, name in EXTRA_METRICS.items()
                                       if any(m in row["metrics"] for row in rows)}}
        lines += [f"## {title} — evaluated on `{variant}`{trained}", "",
                  "| agent | seeds | " + " | ".join(columns.values()) + " |", "|" + "---|" * (len(columns) + 2)]
        for row in rows:
            cells = [format_interval(row["metrics"].get(m), percent=m in _PERCENT) for m in columns]
            lines.append(f"| {row['agent']} | {len(row['seeds'])} | " + " | ".join(cells) + " |")
        lines.append("")
    if report.get("improvement"):
        lines += ["## Probability of improvement over naive, across testbeds", "",
                  "Each testbed on its deployment variant is one task; seeds are resampled within it.", "",
                  "| agent | " + " | ".join(TABLE_METRICS[m] for m in IMPROVEMENT_METRICS) + " | testbeds |",
                  "|---|" + "---|" * (len(IMPROVEMENT_METRICS) + 1)]
        by_agent: dict = defaultdict(dict)
        for entry in report["improvement"]:
            by_agent[entry["agent"]][entry["metric"]] = entry
        for agent, found in by_agent.items():
            testbeds = sorted({t for e in found.values() for t in e["testbeds"]})
            cells = [format_interval((found.get(m) or {}).get("interval"), percent=True) for m in IMPROVEMENT_METRICS]
            lines.append(f"| {agent} | " + " | ".join(cells) + f" | {len(testbeds)} |")
        lines.append("")
    if report["ood"]:
        lines += ["## Posterior: OOD AUROC of member-reward std (deployment vs label transitions)", "",
                  "| testbed | variant | seeds | test-only transitions | hazard transitions |", "|---|---|---|---|---|"]
        for entry in report["ood"]:
            lines.append(f"| {entry['testbed']} | {entry['variant']} | {len(entry['seeds'])} | "
                         f"{format_interval(entry['test_only'])} | {format_interval(entry['hazard'])} |")
        lines.append("")
    if report["hopes"]:
        lines += ["## The headline hypotheses, checked", ""]
        verdict = {True: "holds", False: "**does not hold**", None: "not measured"}
        lines += [f"- {check['claim']}: {verdict[check['holds']]}" for check in report["hopes"]]
        lines.append("")
    if report.get("cost"):
        lines += ["## Cost: measured seconds per job", "", "| testbed | job | jobs | mean s | total min |",
                  "|---|---|---|---|---|"]
        lines += [f"| {c['testbed']} | {c['agent']} | {c['jobs']} | {c['mean_seconds']:.1f} | "
                  f"{c['total_seconds'] / 60:.1f} |" for c in report["cost"]]
        lines.append("")
    if chunks:
        lines += ["## Chunks (chunks.jsonl)", "",
                  "| chunk | started (UTC) | wall min | jobs run | jobs left | stopped |", "|---|---|---|---|---|---|"]
        lines += [f"| {c['chunk']} | {c['started']} | {c['wall_seconds'] / 60:.1f} | {c['jobs_run']} | "
                  f"{c['jobs_left']} | {c['stopped']} |" for c in chunks]
        lines.append("")
    lines += [f"Figures: {', '.join(f'`{p}`' for p in report['figures'])}" if report["figures"] else "", ""]
    return "\n".join(lines)
