"""Does the oracle solve each testbed at its benchmark budget? (issue 15: a testbed earns its place only if so)

    python -m ruagent.experiments.solvability [--testbeds ...] [--seeds 3] [--out results/solvability] [--tiny]

Trains (or reuses) the headline's ``oracle`` job — PPO on the true reward in the deployment
variant with the committed hyperparameters (``ruagent/configs/hyperparams/ppo.yaml``) and the
testbed's ``total_timesteps`` — for each seed, and scores it in the deployment variant against
the criteria of issue 15:

- gridworlds (an exact optimum exists): normalised score (R − R_random) / (R_optimal − R_random)
  ≥ 0.95, with R the oracle's mean true return, R_random a uniformly random policy's on the same
  evaluation episodes and R_optimal the value-iteration optimum of each episode's map;
- PointNavigation (no optimum computed): goal rate ≥ 95 % and no side effects;
- TwoHypothesisCartPole: true return ≥ 95 % of the maximum under the true hypothesis (500 steps
  at +1 on the left).

Pass the headline's ``--out`` to share its oracle runs (same layout, same jobs). Writes
``<out>/solvability.json`` (per seed and pooled, with seconds per oracle run) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ruagent.experiments.runner import EVAL_SEED_OFFSET, Budget, Job, run_job
from ruagent.experiments.testbeds import TESTBEDS, TestbedSpec, make_env
from ruagent.io import atomic_write_text

__all__ = ["THRESHOLD", "check_testbed", "main"]

#: issue 15's bar for every criterion
THRESHOLD = 0.95
#: TwoHypothesisCartPole: the most a 500-step episode can pay under either hypothesis on the safe side
CARTPOLE_MAX_RETURN = 500.0


def _random_returns(testbed: TestbedSpec, variant_kwargs: dict[str, Any], n_episodes: int, seed: int) -> np.ndarray:
    from ruagent.rollouts import run_episodes

    env = make_env(testbed, variant_kwargs)
    try:
        return run_episodes(env, None, n_episodes, seed=EVAL_SEED_OFFSET + seed).true_returns()
    finally:
        env.close()


def _deploy_variant(testbed: TestbedSpec) -> str:
    matches = [name for name, kwargs in testbed.eval_variants.items() if kwargs == testbed.deploy_kwargs]
    return matches[0] if matches else next(iter(testbed.eval_variants))


def check_testbed(testbed: str, seeds: int, out: str | Path, budget: Budget) -> dict[str, Any]:
    """Train or reuse the oracle for ``seeds`` seeds and measure the criterion; returns the testbed's entry."""
    spec, out = TESTBEDS[testbed], Path(out)
    if spec.algo_family != "ppo":
        raise ValueError(f"testbed {testbed!r} has no solvability bar: its oracle (SAC on the true reward) is the "
                         "reference that returns are normalised by (B-Pref's metric), not a task to be solved")
    variant = _deploy_variant(spec)
    per_seed = []
    for seed in range(seeds):
        result = json.loads(run_job(Job(testbed, seed, "oracle"), out, budget).read_text())
        scores = result["evaluation"][variant]
        returns = np.asarray(scores["true_return"])
        entry = {"seed": seed, "true_return": float(returns.mean()), "wall_seconds": result["wall_seconds"],
                 "timesteps": result["timesteps"], "side_effect_rate": float(np.mean(scores["side_effect"])),
                 "episode_length": float(np.mean(scores["episode_length"]))}
        if "optimal_return" in scores:
            random = _random_returns(spec, spec.eval_variants[variant], len(returns), seed)
            optimal = float(np.mean(scores["optimal_return"]))
            entry.update(random_return=float(random.mean()), optimal_return=optimal,
                         score=(entry["true_return"] - float(random.mean())) / (optimal - float(random.mean())))
        elif spec.posterior == "two_hypothesis":
            entry["score"] = entry["true_return"] / CARTPOLE_MAX_RETURN
        else:  # the goal ends the episode before the step cap
            cap = make_env(spec, spec.eval_variants[variant]).spec.max_episode_steps
            entry["goal_rate"] = float(np.mean(np.asarray(scores["episode_length"]) < (cap or np.inf)))
            entry["score"] = entry["goal_rate"] if entry["side_effect_rate"] == 0 else 0.0
        per_seed.append(entry)
    criterion = ("normalised score" if "optimal_return" in per_seed[0] else
                 "true return / 500" if spec.posterior == "two_hypothesis" else "goal rate, no side effects")
    pooled = float(np.mean([e["score"] for e in per_seed]))
    return {"testbed": testbed, "variant": variant, "criterion": criterion, "threshold": THRESHOLD,
            "timesteps": budget.timesteps(spec), "score": pooled, "worst_seed_score": min(e["score"] for e in per_seed),
            "solved": bool(pooled >= THRESHOLD), "seconds_per_oracle_run": float(np.mean([e["wall_seconds"]
                                                                                           for e in per_seed])),
            "per_seed": per_seed}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ruagent.experiments.solvability",
                                     description="Does the oracle solve each testbed at its benchmark budget?")
    on_policy = [t for t, spec in TESTBEDS.items() if spec.algo_family == "ppo"]
    parser.add_argument("--testbeds", nargs="+", choices=on_policy, default=on_policy, metavar="TESTBED")
    parser.add_argument("--seeds", type=int, default=3, help="oracle seeds per testbed (default 3)")
    parser.add_argument("--out", default="results/solvability",
                        help="output folder (default results/solvability; the headline's --out shares its oracles)")
    parser.add_argument("--total-timesteps", type=int, default=None, metavar="N",
                        help="override every testbed's budget (to find the one that solves it; use a new --out)")
    parser.add_argument("--tiny", action="store_true", help="the test suite's budget (no science)")
    args = parser.parse_args(argv)
    budget = Budget(tiny=args.tiny, total_timesteps=args.total_timesteps)
    out = Path(args.out)
    path = out / "solvability.json"
    report = json.loads(path.read_text()) if path.is_file() else {"testbeds": {}}
    report["command"] = "python -m ruagent.experiments.solvability " + shlex.join(
        sys.argv[1:] if argv is None else argv)
    print("| testbed | steps | criterion | score (mean / worst seed) | solved | s per oracle run |")
    print("|---|---|---|---|---|---|")
    for testbed in args.testbeds:
        entry = check_testbed(testbed, args.seeds, out, budget)
        report["testbeds"][testbed] = entry
        atomic_write_text(path, json.dumps(report, indent=1))
        print(f"| {testbed} | {entry['timesteps']:,} | {entry['criterion']} | {entry['score']:.3f} / "
              f"{entry['worst_seed_score']:.3f} | {'yes' if entry['solved'] else 'NO'} | "
              f"{entry['seconds_per_oracle_run']:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
