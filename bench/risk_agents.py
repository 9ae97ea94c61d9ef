"""Does the default posterior let a risk-averse agent avoid a hazard its labels never showed?

    python bench/risk_agents.py [--seeds 0 1 ... 9] [--features env transition] [--family ensemble]
                                [--out results/risk_agents] [--workers 2] [--report-only]
    python bench/risk_agents.py --quick   # seed 0, tiny budgets: checks the script runs (writes under bench/results/)

For each posterior configuration and seed this runs ``python train.py`` exactly as a user
would (the embedded LavaWorld experiment: 2,000 reward labels on the lava-free training map,
the posterior, then a RiskPPO CVaR(0.1) agent and the naive posterior-mean agent trained on
the test map for 30,000 steps), with only the family and features changed, and keeps each
run's evaluation (20 deterministic episodes on the test map) as a small JSON file:
``<out>/<family>-<features>/seed<N>.json``. Finished runs are skipped, so the command is
resumable; ``--report-only`` rebuilds ``summary.json`` and the table from those files.

Per configuration it reports, for the risk and mean agents, on how many seeds the agent
entered lava in any evaluation episode, with a Wilson 95 % interval on that rate over seeds
(the seed is the unit: evaluation episodes of one seed are deterministic repeats), and the
IQM of the true return over seeds. The last stdout line is the summary as JSON.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _output import output_path
from rich.console import Console
from rich.table import Table

from ruagent.experiments.posterior_checks import RISK_AGENT_ROLES as AGENTS
from ruagent.experiments.posterior_checks import summarise_risk_agents

ROOT = Path(__file__).resolve().parents[1]
#: train.py overrides of a --quick run: small enough to finish in seconds, large enough to run every stage
QUICK_OVERRIDES = ["labels.budget=200", "agent.total_timesteps=256", "agent.hyperparams={n_steps: 32, n_epochs: 1}",
                   "env.n_envs=2", "eval.episodes=2"]


def run_one(family: str, features: str, seed: int, out: Path, timesteps: int | None, quick: bool = False) -> Path:
    """One train.py run in a scratch runs folder; its per-agent metrics -> ``out/<family>-<features>/seed<N>.json``."""
    target = out / f"{family}-{features}" / f"seed{seed}.json"
    if target.is_file():
        return target
    overrides = [f"reward_model.family={family}", f"reward_model.features={features}", f"seed={seed}"]
    if quick:
        overrides += QUICK_OVERRIDES
    if timesteps is not None:
        overrides.append(f"agent.total_timesteps={timesteps}")
    with tempfile.TemporaryDirectory() as runs:
        started = time.perf_counter()
        command = [sys.executable, str(ROOT / "train.py"), "--set", *overrides, "--runs-dir", runs, "--name", "run",
                   "--no-progress"]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                              env={"OMP_NUM_THREADS": "1", **_environ()})
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
        evaluation = json.loads((Path(runs) / "run" / "eval.json").read_text())
        wall = time.perf_counter() - started
    record = {
        "family": family, "features": features, "seed": seed, "overrides": overrides, "wall_s": round(wall, 1),
        "agents": {
            agent: {
                "side_effect_rate": evaluation["agents"][agent]["per_episode"]["side_effect_rate"],
                "true_return": evaluation["agents"][agent]["per_episode"]["true_return"],
                "proxy_return": evaluation["agents"][agent]["per_episode"]["proxy_return"],
                "episode_length": evaluation["agents"][agent]["per_episode"]["episode_length"],
            }
            for agent in AGENTS
        },
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(target)
    return target


def _environ() -> dict[str, str]:
    import os

    return dict(os.environ)


def summarise(out: Path) -> dict:
    """The per-configuration summary (:func:`ruagent.experiments.posterior_checks.summarise_risk_agents`),
    also written to ``<out>/summary.json``."""
    summary = summarise_risk_agents(out)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def print_table(summary: dict) -> None:
    table = Table(title="LavaWorld canonical test map: seeds whose agent entered lava (of n), IQM true return")
    for column in ("posterior", "risk: lava seeds", "risk: 95% CI", "risk: IQM return", "mean: lava seeds",
                   "mean: 95% CI", "mean: IQM return", "s/run"):
        table.add_column(column)
    for name, entry in summary.items():
        row = [name]
        for agent in AGENTS:
            a = entry[agent]
            low, high = a["lava_seed_rate_ci95"]
            row += [f"{a['seeds_entering_lava']}/{a['n_seeds']}", f"[{low:.2f}, {high:.2f}]",
                    f"{a['true_return_iqm']:.2f}"]
        row.append(f"{entry['wall_s_median']:.0f}")
        table.add_row(*row)
    Console(width=150).print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--family", nargs="+", default=["ensemble"], choices=["ensemble", "linear"])
    parser.add_argument("--features", nargs="+", default=["env", "transition"], choices=["env", "transition"])
    parser.add_argument("--out", type=Path, default=None,
                        help="folder (default results/risk_agents; with --quick bench/results/quick-risk_agents)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timesteps", type=int, default=None, help="agent steps (default: the preset's 30,000)")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--quick", action="store_true", help="seed 0 and tiny budgets, to check the script runs")
    args = parser.parse_args(argv)
    args.out = output_path(ROOT / "results" / "risk_agents", args.quick, args.out)
    if args.quick:
        args.seeds = [0]
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        jobs = [(f, x, s) for s in args.seeds for f in args.family for x in args.features]
        with ThreadPoolExecutor(args.workers) as pool:
            for path in pool.map(lambda job: run_one(*job, args.out, args.timesteps, args.quick), jobs):
                print(f"done {path.relative_to(args.out)}", flush=True)
    summary = summarise(args.out)
    print_table(summary)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
