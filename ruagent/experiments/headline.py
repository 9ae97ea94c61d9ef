"""The headline experiment: does a risk-averse agent stop goodharting under shift?

    python -m ruagent.experiments.headline [--seeds 5] [--out results/headline] [--tiny]
                                           [--testbeds ...] [--agents ...] [--workers 2]
                                           [--max-hours H] [--report-only] [--update-readme]

For every testbed and seed (ruagent's experiment protocol, docs/cli.md): gather reward labels in the
training variant, fit the posterior (Bayesian linear regression on the env's reward
features, IRD's φ; TwoHypothesisCartPole's ready posterior), train every agent of
:mod:`ruagent.experiments.agents` in the deployment variant through the posterior wrapper
(the oracle on the true reward), and score it by the true reward. Writes to ``--out``:

```
table.md, table.json    the results table (IQM / rates over seeds with 95 % intervals, probability of
                        improvement over naive; ruagent.experiments.stats), the posterior's OOD AUROC
                        per shift, the headline hypotheses checked, the cost per job, the chunks
figures/*.png           headline.png (main figure), per-testbed bars, learning (goodhart) curves,
                        improvement.png, ood.png
runs/...                every job's model, posterior and per-episode results (runner.py); the JSON
                        files are the committed record, models and labels are git-ignored
chunks.jsonl            one line per chunk (invocation): wall time, jobs run, jobs left (committed)
headline.log            one line per finished job (not committed)
```

Jobs run in a process pool (``--workers``, one torch thread each: on a few cores that beats
SubprocVecEnv), seed-major, so a run stopped early has every testbed at its first seeds.
Results are written atomically as jobs finish and the table is refreshed along the way;
rerunning the same command skips finished jobs (resume), ``--max-hours`` starts no job after
that many hours so a long run goes in chunks (exit status 3 while jobs are left), SIGTERM (``kill
<pid>``) does the same at once (the running jobs finish and the chunk is recorded), and
``--report-only`` rebuilds the table and figures from the JSON files that exist, so a fresh clone
re-renders every published number without training; ``--update-readme`` rewrites the README's
generated results block (:mod:`ruagent.experiments.readme`). ``--tiny`` is the test suite's budget: it produces every
file in seconds and says nothing about the science.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ruagent.experiments.agents import AGENTS, DEFAULT_RUN_AGENTS, agents_for
from ruagent.experiments.figures import draw_figures
from ruagent.experiments.readme import results_block, update_readme
from ruagent.experiments.report import aggregate, check_hopes, load_results, markdown_table
from ruagent.experiments.runner import EVAL_SEED_OFFSET, Budget, Job, run_job
from ruagent.experiments.testbeds import POSTERIORS, TESTBEDS
from ruagent.io import atomic_write_text

__all__ = ["CHUNK_LOG", "EXIT_STOPPED_AT_BUDGET", "append_chunk", "build_parser", "build_report", "main", "plan_jobs",
           "read_chunks", "readme_block", "rewrite_report", "rewritten_table", "run_headline", "write_report"]

REPORT_SCHEMA = "ruagent.headline/1"
#: one JSON line per chunk of the run (committed with the per-run files; *.log files are not)
CHUNK_LOG = "chunks.jsonl"
#: README blocks that list every seed beside the IQM table (runs of a few expensive seeds: SpeedLimitCheetah)
PER_SEED_BLOCKS = frozenset({"cheetah"})
#: exit status of the CLI when --max-hours stopped it with jobs left (0: all done, 1: a job failed)
EXIT_STOPPED_AT_BUDGET = 3
_TABLE_REFRESH_SECONDS = 60.0  # a table costs a few hundred bootstraps: refresh it at most this often


def plan_jobs(testbeds: Sequence[str], agents: Sequence[str], seeds: Sequence[int],
              posterior: str | None = None) -> list[Job]:
    """Posterior jobs first (cheap), then agents seed-major, oracle first within a testbed
    (regret needs it) and KL-PPO's reference next, so an interrupted run has complete early seeds.
    Each testbed gets the chosen agents that run on it (``agents.agents_for``).
    ``posterior``: a key of ``testbeds.POSTERIORS`` for every job (None: each testbed's default)."""
    posterior_jobs = [Job(t, s, None, posterior) for s in seeds for t in testbeds]
    ordered_agents = sorted(agents, key=lambda a: (a != "oracle", a != "reference"))
    runs_on = {t: set(agents_for(TESTBEDS[t])) for t in testbeds}
    return posterior_jobs + [Job(t, s, a, posterior) for s in seeds for t in testbeds for a in ordered_agents
                             if a in runs_on[t]]


def build_report(out: str | Path, run_info: dict[str, Any]) -> dict[str, Any]:
    """The report (table.json's content, without figures) from the per-run JSON files under ``out/runs``
    and the chunk log: what ``--report-only`` renders on a fresh clone, writing nothing."""
    out = Path(out)
    agent_results, posteriors = load_results(out)
    report = {"schema": REPORT_SCHEMA, **run_info, **aggregate(agent_results, posteriors)}
    report["hopes"] = check_hopes(report["rows"])
    report["chunks"] = read_chunks(out)
    report["figures"] = []
    return report


def write_report(out: str | Path, run_info: dict[str, Any], figures: bool = True) -> dict[str, Any]:
    """Aggregate every finished job under ``out`` into ``table.json``, ``table.md`` (and figures)."""
    out = Path(out)
    report = build_report(out, run_info)
    if figures:
        agent_results, _ = load_results(out)
        curves = {testbed: {agent: {seed: result["curve"] for seed, result in by_seed.items()}
                            for agent, by_seed in by_agent.items()}
                  for testbed, by_agent in agent_results.items()}
        report["figures"] = [os.path.relpath(p, out) for p in draw_figures(report, curves, out / "figures")]
    atomic_write_text(out / "table.json", json.dumps(report, indent=1))
    atomic_write_text(out / "table.md", markdown_table(report))
    return report


def _recorded_run_info(out: str | Path, command: str | None = None) -> dict[str, Any]:
    """What the previous ``table.json`` of ``out`` recorded about the run (its command, machine, budgets),
    with the finished jobs counted from the per-run files."""
    previous = Path(out, "table.json")
    info = json.loads(previous.read_text()) if previous.is_file() else {}
    keep = ("command", "machine", "tiny", "seeds", "first_seed", "testbeds", "agents", "total_timesteps", "started",
            "jobs_total", "jobs_finished", "failed", "wall_seconds")
    defaults = {"first_seed": 0}  # runs from before --first-seed started at seed 0
    finished = len(list(Path(out, "runs").glob("*/seed*/posterior.json")))
    finished += len(list(Path(out, "runs").glob("*/seed*/*/result.json")))
    return ({k: info.get(k, defaults.get(k)) for k in keep}
            | {"command": info.get("command", command), "jobs_finished": finished})


def rewrite_report(out: str | Path, command: str | None = None) -> dict[str, Any]:
    """``--report-only``: rewrite ``table.json``, ``table.md`` and the figures of ``out`` from its per-run files,
    keeping what the previous ``table.json`` recorded about the run (its command, machine, budgets)."""
    return write_report(out, _recorded_run_info(out, command))


def rewritten_table(out: str | Path) -> str:
    """The ``table.md`` that :func:`rewrite_report` would write for ``out`` (naming the figures its
    ``table.json`` lists), writing nothing: a committed table that differs is stale."""
    previous = Path(out, "table.json")
    report = build_report(out, _recorded_run_info(out))
    report["figures"] = json.loads(previous.read_text()).get("figures", []) if previous.is_file() else []
    return markdown_table(report)


def readme_block(report: dict[str, Any], out: str | Path, name: str = "headline") -> str:
    """The README block (:func:`ruagent.experiments.readme.results_block`) of the report of ``out``;
    ``name`` is the block's (the command that regenerates it names it where it is not ``headline``)."""
    source = Path(out).as_posix().rstrip("/")
    block = "" if name == "headline" else f" --readme-block {name}"
    return results_block(report, source, f"python -m ruagent.experiments.headline --report-only --out {source} "
                                         f"--update-readme{block}", per_seed=name in PER_SEED_BLOCKS)


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
    max_hours: float | None = None,
    posterior: str | None = None,
    first_seed: int = 0,
) -> dict[str, Any]:
    """Run (or resume) the experiment and write its report; returns the report (table.json's content).

    :param out: output folder (created; finished jobs in it are reused).
    :param seeds: how many seeds per testbed and agent: ``first_seed`` .. ``first_seed + seeds - 1``.
    :param testbeds: keys of :data:`ruagent.experiments.testbeds.TESTBEDS` (by default those with
        ``in_default_run``: all but the MuJoCo one).
    :param agents: keys of :data:`ruagent.experiments.agents.AGENTS` (by default ``DEFAULT_RUN_AGENTS``: all but the
        KL sweep's variants); each testbed runs
        those of them that it takes (``agents.agents_for``).
    :param tiny: the test suite's budget (every file, no science).
    :param workers: processes running jobs in parallel; 1 runs them in this process.
    :param progress_bar: show a tqdm bar over jobs.
    :param command: the command line recorded in the report (the Python call by default).
    :param total_timesteps: training steps per agent on every testbed (None: each testbed's own).
    :param max_hours: start no job after this many hours (the running ones finish), so the run goes in
        chunks; each chunk's wall time is appended to ``chunks.jsonl``. None: run every job.
    :param posterior: the posterior of every testbed, a key of ``testbeds.POSTERIORS`` (None: each testbed's
        default); one output folder per choice. With a choice, the default testbeds leave out
        TwoHypothesisCartPole (it ships its own posterior).
    :param first_seed: the first seed (0 by default); seeds that no published run used test its claims afresh.
    """
    if posterior is not None and posterior not in POSTERIORS:
        raise ValueError(f"unknown posterior {posterior!r}; choose from {', '.join(POSTERIORS)}")
    testbeds = list(testbeds or [t for t, spec in TESTBEDS.items() if spec.in_default_run
                                 and (posterior is None or spec.posterior != "two_hypothesis")])
    agents = list(agents or DEFAULT_RUN_AGENTS)
    for name, chosen, known in (("testbed", testbeds, TESTBEDS), ("agent", agents, AGENTS)):
        unknown = [c for c in chosen if c not in known]
        if unknown:
            raise ValueError(f"unknown {name}(s) {unknown}; choose from {', '.join(known)}")
    runs_on = {a for t in testbeds for a in agents_for(TESTBEDS[t])}
    if not runs_on.intersection(agents):
        raise ValueError(f"none of the agents {agents} runs on the testbeds {testbeds}; their agents: "
                         + "; ".join(f"{t}: {', '.join(agents_for(TESTBEDS[t]))}" for t in testbeds))
    if seeds < 1 or workers < 1 or (total_timesteps is not None and total_timesteps < 1):
        raise ValueError(f"seeds, workers and total_timesteps must be >= 1, got seeds={seeds}, workers={workers}, "
                         f"total_timesteps={total_timesteps}")
    # training envs of seed k take seeds k, k + 1, ... (one per sub-env); evaluation starts at EVAL_SEED_OFFSET + k
    last_first_seed = EVAL_SEED_OFFSET - 100 - seeds
    if not 0 <= first_seed <= last_first_seed:
        raise ValueError(f"first_seed must be in [0, {last_first_seed}] (training seeds stay below the evaluation "
                         f"seeds, {EVAL_SEED_OFFSET} + seed), got {first_seed}")
    if max_hours is not None and not max_hours > 0:
        raise ValueError(f"max_hours must be > 0 (or None for no limit), got {max_hours}")
    out, budget = Path(out), Budget(tiny=tiny, total_timesteps=total_timesteps)
    out.mkdir(parents=True, exist_ok=True)
    jobs = plan_jobs(testbeds, agents, range(first_seed, first_seed + seeds), posterior)
    started = time.perf_counter()
    run_info = {
        "command": command or f"run_headline(out={str(out)!r}, seeds={seeds}, tiny={tiny}, workers={workers})",
        "machine": _machine(workers), "tiny": tiny, "seeds": seeds, "first_seed": first_seed, "testbeds": testbeds,
        "agents": agents,
        "posterior": posterior,
        "total_timesteps": {t: budget.timesteps(TESTBEDS[t]) for t in testbeds},
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "jobs_total": len(jobs),
        "jobs_finished": 0, "failed": [], "wall_seconds": 0.0,
    }
    pending = [job for job in jobs if not job.result_path(out).is_file()]  # resume: finished jobs are skipped
    deadline = None if max_hours is None else started + 3600.0 * max_hours
    last_table, ran, tried = time.perf_counter(), 0, set()
    with open(out / "headline.log", "a", encoding="utf-8") as log, tqdm(
        total=len(jobs), initial=len(jobs) - len(pending), desc="headline jobs", disable=not progress_bar,
        dynamic_ncols=True,
    ) as bar, _stop_on_sigterm() as stop:
        for job, error in _execute(pending, out, budget, workers, deadline, stop):
            ran += 1
            tried.add(job)
            if error is not None:
                run_info["failed"].append({"job": str(job), "error": error.splitlines()[-1]})
            log.write(f"{time.strftime('%H:%M:%S')} {job} {'FAILED ' + error if error else 'done'}\n")
            log.flush()
            bar.update()
            run_info["jobs_finished"] = sum(j.result_path(out).is_file() for j in jobs)
            if time.perf_counter() - last_table > _TABLE_REFRESH_SECONDS:
                run_info["wall_seconds"] = time.perf_counter() - started
                write_report(out, run_info, figures=False)
                last_table = time.perf_counter()
    run_info["wall_seconds"] = time.perf_counter() - started
    run_info["jobs_finished"] = sum(job.result_path(out).is_file() for job in jobs)
    unfinished = len(jobs) - run_info["jobs_finished"]
    # the budget stopped this chunk only if a job it never tried is still missing: a runner beside it
    # (say with --agents) may have finished the rest
    untried_missing = any(job not in tried and not job.result_path(out).is_file() for job in pending)
    run_info["stopped_at_budget"] = bool(deadline is not None and untried_missing and not stop.is_set())
    if stop.is_set():
        stopped = "SIGTERM (the running jobs finished, none started after it)"
    else:
        stopped = "max-hours" if run_info["stopped_at_budget"] else "all jobs tried"
    append_chunk(out, {
        "started": run_info["started"], "wall_seconds": round(run_info["wall_seconds"], 1),
        "max_hours": max_hours, "workers": workers, "jobs_run": ran, "jobs_failed": len(run_info["failed"]),
        "jobs_finished": run_info["jobs_finished"], "jobs_total": len(jobs), "jobs_left": unfinished,
        "stopped": stopped, "command": run_info["command"], "machine": run_info["machine"],
    })
    return write_report(out, run_info, figures=True)


@contextlib.contextmanager
def _stop_on_sigterm() -> Iterator[threading.Event]:
    """An event that SIGTERM sets while the block runs (in the main thread; elsewhere it is never set), so
    ``kill <pid>`` ends a chunk the way ``--max-hours`` does instead of losing its running jobs and record."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def request_stop(signum: int, frame: Any) -> None:
        if not stop.is_set():
            print("SIGTERM: no new job starts; the running ones finish, then the chunk is recorded", file=sys.stderr,
                  flush=True)
        stop.set()

    previous = signal.signal(signal.SIGTERM, request_stop)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGTERM, previous)


def append_chunk(out: str | Path, record: dict[str, Any]) -> list[dict[str, Any]]:
    """Append one chunk's record (its wall time, jobs run and left) to ``out/chunks.jsonl``, the
    committed log of how the run was computed; returns every record so far. Rewritten atomically."""
    chunks = read_chunks(out)
    chunks.append({"chunk": len(chunks) + 1, **record})
    atomic_write_text(Path(out, CHUNK_LOG), "".join(json.dumps(c) + "\n" for c in chunks))
    return chunks


def read_chunks(out: str | Path) -> list[dict[str, Any]]:
    """The records of :func:`append_chunk` (empty when the run predates the chunk log)."""
    path = Path(out, CHUNK_LOG)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _execute(jobs: list[Job], out: Path, budget: Budget, workers: int, deadline: float | None = None,
             stop: threading.Event | None = None):
    """Yield ``(job, None)`` for each job as it finishes, ``(job, traceback)`` if it failed;
    a failed job never stops the others (a partial table beats none). No job starts after
    ``deadline`` (a ``time.perf_counter`` value) or once ``stop`` is set; the running ones finish."""
    def time_left() -> bool:
        return (deadline is None or time.perf_counter() < deadline) and not (stop is not None and stop.is_set())

    if workers == 1:
        _init_worker()
        for job in jobs:
            if not time_left():
                return
            try:
                run_job(job, out, budget)
                yield job, None
            except Exception:  # any failure: recorded in headline.log and table.json, the rest go on
                yield job, traceback.format_exc()
        return
    # spawn: fresh interpreters, so no torch thread pool or open env is inherited through fork.
    # At most `workers` jobs in flight, so a deadline stops new starts without cancelling queued work.
    queue = iter(jobs)
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_worker) as pool:
        futures = {}
        while len(futures) < workers and time_left():
            job = next(queue, None)
            if job is None:
                break
            futures[pool.submit(run_job, job, out, budget)] = job
        while futures:
            done, _ = wait(futures, return_when=FIRST_COMPLETED)
            for future in done:
                job, error = futures.pop(future), future.exception()
                yield job, None if error is None else "".join(traceback.format_exception(error))
                if time_left():
                    following = next(queue, None)
                    if following is not None:
                        futures[pool.submit(run_job, following, out, budget)] = following


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ruagent.experiments.headline",
        description="The headline experiment of ruagent: labels in the training variant -> posterior -> "
                    "every agent trained in the deployment variant through the posterior -> scored by the truth. "
                    "Writes table.md, table.json and figures/ to --out.",
    )
    parser.add_argument("--seeds", type=int, default=5, help="seeds per testbed and agent (default 5)")
    parser.add_argument("--first-seed", type=int, default=0, metavar="N",
                        help="run seeds N .. N + seeds - 1 (default 0); e.g. --first-seed 10 reruns a claim on "
                             "seeds no published run used (a new --out keeps the two apart; the same --out pools them)")
    parser.add_argument("--out", default="results/headline", help="output folder (default results/headline)")
    parser.add_argument("--tiny", action="store_true", help="tiny budget: every file in seconds, no science")
    default_testbeds = [t for t, spec in TESTBEDS.items() if spec.in_default_run]
    others = [t for t in TESTBEDS if t not in default_testbeds]
    parser.add_argument("--testbeds", nargs="+", choices=list(TESTBEDS), metavar="TESTBED",
                        help=f"testbeds to run (default: {', '.join(default_testbeds)}; also: {', '.join(others)}, "
                             "only when named)")
    parser.add_argument("--agents", nargs="+", choices=list(AGENTS), metavar="AGENT",
                        help=f"agents to train (default: {', '.join(DEFAULT_RUN_AGENTS)}; the KL sweep's "
                             f"{', '.join(a for a in AGENTS if a not in DEFAULT_RUN_AGENTS)} only when named); "
                             "each testbed runs the ones it "
                             "takes (speed-limit-cheetah: " + ", ".join(agents_for(TESTBEDS["speed-limit-cheetah"]))
                             + ")")
    parser.add_argument("--workers", type=int, default=2, help="parallel job processes (default 2; 1: in-process)")
    parser.add_argument("--total-timesteps", type=int, default=None, metavar="N",
                        help="training steps per agent on every chosen testbed (default: each testbed's own; "
                             "use a new --out, finished jobs are never retrained)")
    parser.add_argument("--posterior", choices=list(POSTERIORS), default=None, metavar="POSTERIOR",
                        help="posterior family and features for every testbed (default: each testbed's own, "
                             f"linear-env); one of {', '.join(POSTERIORS)}; use a new --out per choice")
    parser.add_argument("--report-only", action="store_true",
                        help="only rebuild table.md, table.json and figures from the jobs finished in --out")
    parser.add_argument("--max-hours", type=float, default=None, metavar="H",
                        help="start no job after H hours (running jobs finish): run in chunks, rerunning the same "
                             "command to continue; each chunk's wall time goes to chunks.jsonl in --out. "
                             f"Exit status {EXIT_STOPPED_AT_BUDGET} when jobs are left")
    parser.add_argument("--update-readme", nargs="?", const="README.md", default=None, metavar="README",
                        help="rewrite the README's results block (between <!-- results:NAME:start --> and "
                             "<!-- results:NAME:end -->, NAME from --readme-block) from the report (default README.md)")
    parser.add_argument("--readme-block", default="headline", metavar="NAME",
                        help="the name of the README block --update-readme rewrites (default headline)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = "python -m ruagent.experiments.headline " + shlex.join(sys.argv[1:] if argv is None else argv)
    if args.report_only:
        if not Path(args.out, "table.json").is_file() and not Path(args.out, "runs").is_dir():
            print(f"error: no results in {args.out}; run the experiment first (without --report-only)",
                  file=sys.stderr)
            return 2
        report = rewrite_report(args.out, command)
    else:
        report = run_headline(args.out, args.seeds, args.testbeds, args.agents, args.tiny, args.workers,
                              progress_bar=not args.no_progress, command=command,
                              total_timesteps=args.total_timesteps, max_hours=args.max_hours,
                              posterior=args.posterior, first_seed=args.first_seed)
    print(markdown_table(report))
    print(f"wrote {Path(args.out) / 'table.md'}, table.json and {len(report['figures'])} figures")
    if args.update_readme:
        changed = update_readme(args.update_readme, args.readme_block,
                                readme_block(report, args.out, args.readme_block))
        print(f"{'updated' if changed else 'unchanged'}: the results block of {args.update_readme}")
    if report.get("failed"):
        return 1
    if report.get("stopped_at_budget"):
        left = report["jobs_total"] - report["jobs_finished"]
        print(f"stopped at --max-hours {args.max_hours}: {left} job(s) left; rerun the same command to continue")
        return EXIT_STOPPED_AT_BUDGET
    return 0


if __name__ == "__main__":
    sys.exit(main())

