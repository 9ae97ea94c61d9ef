"""Calibration of the reward posteriors' defaults: coverage, width, NLL and OOD AUROC per group.

For each testbed x posterior configuration x seed:

1. labels: ``ruagent.collect_transitions(env, --labels, seed=seed)``, random policy, training variant;
2. fit the posterior with its DEFAULT constructor arguments (K = 10, ``seed=seed``; no prior
   scales passed: the defaults are what is measured);
3. groups (:func:`ruagent.calibration_testbeds.testbed_groups`): ``heldout`` (random policy, training
   variant, another seed), and ``deployment`` + ``hazard`` (``info["side_effect"]``) on the
   hazard testbeds, or ``unreached`` (a scripted controller's states) on CartPole-v1,
   Pendulum-v1 and MountainCarContinuous-v0;
4. :func:`ruagent.calibration.calibration_report`: coverage of the true reward by the central
   50 % / 90 % member intervals and their widths, Gaussian-interval coverage, NLL, member spread,
   AUROC of ``reward_std`` of each group against ``heldout``.

Configurations: ``ensemble-transition`` / ``linear-transition`` (featuriser of (obs, action,
next_obs)) and ``ensemble-env`` / ``linear-env`` (the env's ``reward_features``, where it has one).
Targets on the hazard testbeds (checked on the mean over seeds): the 90 % member
interval covers the truth on >= 85 % of hazard and >= 80 % of heldout transitions, heldout mean
width <= 0.1 x hazard mean width, AUROC(hazard vs heldout) >= 0.95. DistributionalShift's lava
is in its training map (its hazard group is labelled): its verdict is printed with a note.

Output (``--out``): ``calibration.json`` (config, wall time, every per-seed report) and
``reliability_<testbed>_<model>.png`` (seed 0). Prints a table; last stdout line: JSON of the
per-(testbed, model) means over seeds.

    python bench/calibration.py            # 7 testbeds, 4 configurations, seeds 0 1 2 (~10 min on 2 cores)
    python bench/calibration.py --quick    # 300 labels, seed 0, LavaWorld and CartPole
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from _output import output_path
from rich.console import Console
from rich.table import Table

import ruagent
from ruagent.calibration import calibration_report, plot_reliability
from ruagent.calibration_testbeds import CALIBRATION_TESTBEDS, testbed_groups
from ruagent.experiments.posterior_checks import CALIBRATION_TARGETS, summarise_calibration
from ruagent.io import atomic_write_text

#: configuration -> (family, features)
MODELS = {
    "ensemble-transition": ("ensemble", "transition"),
    "ensemble-env": ("ensemble", "env"),
    "linear-transition": ("linear", "transition"),
    "linear-env": ("linear", "env"),
}
#: calibration targets on the hazard testbeds (shared with the README block that summarises these runs)
TARGETS = CALIBRATION_TARGETS
QUICK_TESTBEDS = ("LavaWorld", "CartPole")


def build_model(name: str, env: Any, seed: int, prior_reward_scale: float | None = None) -> Any:
    family, features = MODELS[name]
    cls = ruagent.EnsembleRewardModel if family == "ensemble" else ruagent.BayesianLinearRewardModel
    return cls(env.observation_space, env.action_space, n_members=10, features=features, seed=seed,
               prior_reward_scale=prior_reward_scale)


def run_one(testbed_name: str, model_name: str, seed: int, n_labels: int, groups: dict,
            prior_reward_scale: float | None = None) -> dict[str, Any]:
    testbed = CALIBRATION_TESTBEDS[testbed_name]
    env = testbed.make(testbed.train_kwargs)
    try:
        labels = ruagent.collect_transitions(env, n_labels, seed=seed)
        model = build_model(model_name, env, seed, prior_reward_scale)
        start = time.perf_counter()
        model.fit(labels, env=env, progress_bar=False)
        fit_s = time.perf_counter() - start
        report = calibration_report(model, groups, reference="heldout")
    finally:
        env.close()
    return {"testbed": testbed_name, "model": model_name, "seed": seed, "n_labels": n_labels,
            "fit_seconds": round(fit_s, 2), "report": report}


def _pair(coverage: float | None, width: float | None) -> str:
    return "-" if coverage is None else f"{coverage:.2f} / {width:.3g}"


def print_table(summary: dict[str, dict[str, Any]], console: Console) -> None:
    table = Table(title="calibration: mean over seeds; cov90 / width90 of the 90 % member interval (reward units)")
    for column in ("testbed", "model", "heldout", "deployment", "hazard", "unreached", "AUROC vs heldout",
                   "NLL heldout / OOD", "verdict"):
        table.add_column(column, justify="left" if column in ("testbed", "model", "verdict") else "right")
    for key, figures in summary.items():
        testbed_name, model_name = key.split("/")
        ood = "hazard" if "hazard_coverage_90" in figures else "unreached"
        verdict = "-" if figures["verdict"] is None else figures["verdict"]
        if figures.get("failed"):
            verdict += f" ({', '.join(figures['failed'])})"
        if figures.get("note"):
            verdict += " *"
        auroc = figures.get(f"{ood}_auroc_vs_reference")
        nll_ood = figures.get(f"{ood}_nll")
        table.add_row(
            testbed_name, model_name,
            *(_pair(figures.get(f"{g}_coverage_90"), figures.get(f"{g}_width_90"))
              for g in ("heldout", "deployment", "hazard", "unreached")),
            "-" if auroc is None else f"{auroc:.3f}",
            f"{figures['heldout_nll']:.3g} / {'-' if nll_ood is None else f'{nll_ood:.3g}'}",
            verdict,
        )
    console.print(table)
    notes = {figures["note"] for figures in summary.values() if figures.get("note")}
    for note in sorted(notes):
        console.print(f"* {note}")
    console.print(f"targets (hazard testbeds): {TARGETS}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--testbeds", nargs="+", choices=sorted(CALIBRATION_TESTBEDS), default=None,
                        help="default: all (with --quick: LavaWorld CartPole)")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="default: 0 1 2 (with --quick: 0)")
    parser.add_argument("--labels", type=int, default=None, help="reward labels per fit (default 2000; --quick 300)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default results/calibration; --quick: bench/results/quick-calibration)")
    parser.add_argument("--quick", action="store_true", help="300 labels, seed 0, LavaWorld and CartPole")
    parser.add_argument("--prior-reward-scale", type=float, default=None,
                        help="declare σ_r for every posterior (default: each family's label-derived default)")
    args = parser.parse_args(argv)
    args.out = output_path(Path("results/calibration"), args.quick, args.out)
    torch.set_num_threads(1)
    testbeds = args.testbeds or (list(QUICK_TESTBEDS) if args.quick else list(CALIBRATION_TESTBEDS))
    seeds = args.seeds if args.seeds is not None else ([0] if args.quick else [0, 1, 2])
    n_labels = args.labels or (300 if args.quick else 2000)
    group_sizes = ({"n_heldout": 500, "n_deployment": 500, "n_target": 200} if args.quick else {})
    args.out.mkdir(parents=True, exist_ok=True)
    console = Console(width=200)
    started = time.perf_counter()
    plan = [(t, m) for t in testbeds for m in args.models
            if MODELS[m][1] != "env" or CALIBRATION_TESTBEDS[t].env_features]
    runs: list[dict[str, Any]] = []
    done, total = 0, len(plan) * len(seeds)
    # one file per finished run: rerunning the same command skips them (resumable)
    run_files = args.out / "runs"
    run_files.mkdir(exist_ok=True)
    for seed in seeds:
        for testbed_name in testbeds:
            groups = None
            for _, model_name in (p for p in plan if p[0] == testbed_name):
                path = run_files / f"{testbed_name}_{model_name}_seed{seed}_labels{n_labels}.json"
                if path.is_file():
                    runs.append(json.loads(path.read_text()))
                    done += 1
                    continue
                groups = groups if groups is not None else testbed_groups(testbed_name, seed, **group_sizes)
                run = run_one(testbed_name, model_name, seed, n_labels, groups, args.prior_reward_scale)
                run["group_sizes"] = {name: len(group) for name, group in groups.items()}
                run["prior_reward_scale"] = args.prior_reward_scale
                atomic_write_text(path, json.dumps(run) + "\n")
                runs.append(run)
                done += 1
                print(f"[{done}/{total}] {testbed_name} {model_name} seed {seed}: fit {run['fit_seconds']:.1f} s, "
                      f"{time.perf_counter() - started:.0f} s elapsed", file=sys.stderr, flush=True)
                if seed == seeds[0]:
                    plot_reliability(run["report"], args.out / f"reliability_{testbed_name}_{model_name}.png",
                                     title=f"{testbed_name}, {model_name}, seed {seed}, {n_labels} labels")
    wall_s = time.perf_counter() - started
    summary = summarise_calibration(runs)
    result = {
        "config": {"testbeds": testbeds, "models": args.models, "seeds": seeds, "labels": n_labels,
                   "quick": args.quick, "prior_reward_scale": args.prior_reward_scale,
                   "group_sizes": group_sizes or "defaults of testbed_groups",
                   "targets": TARGETS, "torch_threads": 1},
        "wall_seconds": round(wall_s, 1),
        "summary": summary,
        "runs": runs,
    }
    atomic_write_text(args.out / "calibration.json", json.dumps(result, indent=1) + "\n")
    print_table(summary, console)
    console.print(f"wall time {wall_s:.0f} s; wrote {args.out / 'calibration.json'}")
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
