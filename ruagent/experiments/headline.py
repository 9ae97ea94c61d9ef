"""The headline experiment: does a risk-averse agent stop goodharting under shift?

    python -m ruagent.experiments.headline [--seeds 5] [--out results/headline] [--tiny]
                                           [--testbeds ...] [--agents ...] [--workers 2]

For every testbed and seed (ruagent's experiment protocol, docs/cli.md): gather reward labels in the
training variant, fit the posterior (Bayesian linear regression on the env's reward
features, IRD's φ; TwoHypothesisCartPole's ready posterior), train every agent of
:mod:`ruagent.experiments.agents` in the deployment variant through the posterior wrapper
(the oracle on the true reward), and score it by the true reward. Writes to ``--out``:

```
table.md, table.json    the results table (every number with a 95 % bootstrap interval),
                        the posterior's OOD AUROC per shift, and the headline hypotheses, checked
figures/*.png           headline.png (main figure), per-testbed bars, goodhart curves, ood.png
runs/...                every job's model, posterior and per-episode results (runner.py)
headline.log            one line per finished job
```

Jobs run in a process pool (``--workers``, one torch thread each: on a few cores that beats
SubprocVecEnv), seed-major, so a run stopped early has every testbed at its first seeds.
Results are written atomically as jobs finish and the table is refreshed along the way;
rerunning the same command skips finished jobs (resume), and ``--report-only`` rebuilds the
table and figures from what exists. ``--tiny`` is the test suite's budget: it produces every
file in seconds and says nothing about the science.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
import traceback
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ruagent.experiments.agents import AGENTS
from ruagent.experiments.figures import draw_figures
from ruagent.experiments.report import aggregate, check_hopes, load_results, markdown_table
from ruagent.experiments.runner import Budget, Job, run_job
from ruagent.experiments.testbeds import TESTBEDS
from ruagent.io import atomic_write_text

__all__ = ["build_parser", "main", "plan_jobs", "run_headline", "write_report"]

REPORT_SCHEMA = "ruagent.headline/1"
_TABLE_REFRESH_SECONDS = 60.0  # a table costs a few hundred bootstraps: refresh it at most this often


def plan_jobs(testbeds: Sequence[str], agents: Sequence[str], seeds: Sequence[int]) -> list[Job]:
    """Posterior jobs first (cheap), then agents seed-major, oracle first within a testbed
    (regret needs it), so an interrupted run has complete early seeds."""
    posterior_jobs = [Job(t, s) for s in seeds for t in testbeds]
    ordered_agents = sorted(agents, key=lambda a: a != "oracle")
    return posterior_jobs + [Job(t, s, a) for s in seeds for t in testbeds for a in ordered_agents]


def write_report(out: str | Path, run_info: dict[str, Any], figures: bool = True) -> dict[str, Any]:
    """Aggregate every finished job under ``out`` into ``table.json``, ``table.md`` (and figures)."""
    out = Path(out)
    agent_results, posteriors = load_results(out)
    report = {"schema": REPORT_SCHEMA, **run_info, **aggregate(agent_results, posteriors)}
    report["hopes"] = check_hopes(report["rows"])
    report["figures"] = []
    if figures:
        curves = {testbed: {agent: {seed: result["curve"] for seed, result in by_seed.items()}
                            for agent, by_seed in by_agent.items()}
                  for testbed, by_agent in agent_results.items()}
        report["figures"] = [os.path.relpath(p, out) for p in draw_figures(report, curves, out / "figures")]
    atomic_write_text(out / "table.json", json.dumps(report, indent=1))
    atomic_write_text(out / "table.md", markdown_table(report))
    return report


def _machine(workers: int) -> str:
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores (os.cpu_count), "
            f"{platform.system()} {platform.release()}, Python {platform.python_version()}; "
            f"{workers} worker process(es), 1 torch thread each")


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def run_headline(
    out: str | Path = "results/headline",
    seeds: int = 5,
    testbeds: Sequence[str] | None = None,
    agents: Sequence[str] | None = None,
    tiny: bool = False,
    workers: int = 2,
    progress_bar: bool = True,
    command: str | None = None,
    total_timesteps: int | None = None,
) -> dict[str, Any]:
    """Run (or resume) the experiment and write its report; returns the report (table.json's content).

    :param out: output folder (created; finished jobs in it are reused).
    :param seeds: seeds 0..seeds-1 per testbed and agent.
    :param testbeds: keys of :data:`ruagent.experiments.testbeds.TESTBEDS` (all by default).
    :param agents: keys of :data:`ruagent.experiments.agents.AGENTS` (all by default).
    :param tiny: the test suite's budget (every file, no science).
    :param workers: processes running jobs in parallel; 1 runs them in this process.
    :param progress_bar: show a tqdm bar over jobs.
    :param command: the command line recorded in the report (the Python call by default).
    :param total_timesteps: training steps per agent on every testbed (None: each testbed's own).
    """
    testbeds, agents = list(testbeds or TESTBEDS), list(agents or AGENTS)
    for name, chosen, known in (("testbed", testbeds, TESTBEDS), ("agent", agents, AGENTS)):
        unknown = [c for c in chosen if c not in known]
        if unknown:
            raise ValueError(f"unknown {name}(s) {unknown}; choose from {', '.join(known)}")
    if seeds < 1 or workers < 1 or (total_timesteps is not None and total_timesteps < 1):
        raise ValueError(f"seeds, workers and total_timesteps must be >= 1, got seeds={seeds}, workers={workers}, "
                         f"total_timesteps={total_timesteps}")
    out, budget = Path(out), Budget(tiny=tiny, total_timesteps=total_timesteps)
    out.mkdir(parents=True, exist_ok=True)
    jobs = plan_jobs(testbeds, agents, range(seeds))
    started = time.perf_counter()
    run_info = {
        "command": command or f"run_headline(out={str(out)!r}, seeds={seeds}, tiny={tiny}, workers={workers})",
        "machine": _machine(workers), "tiny": tiny, "seeds": seeds, "testbeds": testbeds, "agents": agents,
        "total_timesteps": {t: budget.timesteps(TESTBEDS[t]) for t in testbeds},
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "jobs_total": len(jobs),
        "jobs_finished": 0, "failed": [], "wall_seconds": 0.0,
    }
    last_table = time.perf_counter()
    with open(out / "headline.log", "a", encoding="utf-8") as log, tqdm(
        total=len(jobs), desc="headline jobs", disable=not progress_bar, dynamic_ncols=True
    ) as bar:
        for job, error in _execute(jobs, out, budget, workers):
            run_info["jobs_finished"] += error is None
            if error is not None:
                run_info["failed"].append({"job": str(job), "error": error.splitlines()[-1]})
            log.write(f"{time.strftime('%H:%M:%S')} {job} {'FAILED ' + error if error else 'done'}\n")
            log.flush()
            bar.update()
            if time.perf_counter() - last_table > _TABLE_REFRESH_SECONDS:
                run_info["wall_seconds"] = time.perf_counter() - started
                write_report(out, run_info, figures=False)
                last_table = time.perf_counter()
    run_info["wall_seconds"] = time.perf_counter() - started
    return write_report(out, run_info, figures=True)


def _execute(jobs: list[Job], out: Path, budget: Budget, workers: int):
    """Yield ``(job, None)`` for each job as it finishes, ``(job, traceback)`` if it failed;
    a failed job never stops the others (a partial table beats none)."""
    if workers == 1:
        _init_worker()
        for job in jobs:
            try:
                run_job(job, out, budget)
                yield job, None
            except Exception:  # any failure: recorded in headline.log and table.json, the rest go on
                yield job, traceback.format_exc()
        return
    # spawn: fresh interpreters, so no torch thread pool or open env is inherited through fork.
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_worker) as pool:
        futures = {pool.submit(run_job, job, out, budget): job for job in jobs}
        for future in as_completed(futures):
            error = future.exception()
            yield futures[future], None if error is None else "".join(traceback.format_exception(error))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ruagent.experiments.headline",
        description="The headline experiment of ruagent: labels in the training variant -> posterior -> "
                    "every agent trained in the deployment variant through the posterior -> scored by the truth. "
                    "Writes table.md, table.json and figures/ to --out.",
    )
    parser.add_argument("--seeds", type=int, default=5, help="seeds per testbed and agent (default 5)")
    parser.add_argument("--out", default="results/headline", help="output folder (default results/headline)")
    parser.add_argument("--tiny", action="store_true", help="tiny budget: every file in seconds, no science")
    parser.add_argument("--testbeds", nargs="+", choices=list(TESTBEDS), metavar="TESTBED",
                        help=f"testbeds to run (default all: {', '.join(TESTBEDS)})")
    parser.add_argument("--agents", nargs="+", choices=list(AGENTS), metavar="AGENT",
                        help=f"agents to train (default all: {', '.join(AGENTS)})")
    parser.add_argument("--workers", type=int, default=2, help="parallel job processes (default 2; 1: in-process)")
    parser.add_argument("--total-timesteps", type=int, default=None, metavar="N",
                        help="training steps per agent on every chosen testbed (default: each testbed's own; "
                             "use a new --out, finished jobs are never retrained)")
    parser.add_argument("--report-only", action="store_true",
                        help="only rebuild table.md, table.json and figures from the jobs finished in --out")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = "python -m ruagent.experiments.headline " + shlex.join(sys.argv[1:] if argv is None else argv)
    if args.report_only:
        previous = Path(args.out, "table.json")
        if not previous.is_file() and not Path(args.out, "runs").is_dir():
            print(f"error: no results in {args.out}; run the experiment first (without --report-only)",
                  file=sys.stderr)
            return 2
        info = json.loads(previous.read_text()) if previous.is_file() else {}
        keep = ("command", "machine", "tiny", "seeds", "testbeds", "agents", "total_timesteps", "started", "jobs_total",
                "jobs_finished", "failed", "wall_seconds")
        report = write_report(args.out, {k: info.get(k) for k in keep} | {"command": info.get("command", command)})
    else:
        report = run_headline(args.out, args.seeds, args.testbeds, args.agents, args.tiny, args.workers,
                              progress_bar=not args.no_progress, command=command,
                              total_timesteps=args.total_timesteps)
    print(markdown_table(report))
    print(f"wrote {Path(args.out) / 'table.md'}, table.json and {len(report['figures'])} figures")
    return 1 if report.get("failed") else 0


if __name__ == "__main__":
    sys.exit(main())

