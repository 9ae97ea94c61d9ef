"""Choosing KL-PPO's coefficient β on the training variant, once per testbed, before the headline runs.

    python -m ruagent.experiments.kl_selection [--testbeds ...] [--seeds 3] [--out results/kl_selection] [--tiny]

The procedure (issue 15; Gao, Schulman & Hilton 2023 and Korbak, Perez & Buckley 2022 sweep β
the same way): for each testbed and seed, fit the testbed's default posterior on its labels and
train the reference policy (PPO on the true reward in the training variant, as the headline's
``reference`` agent); then, for each candidate β of ``ruagent/configs/hyperparams/klppo.yaml``,
train KL-PPO through the posterior mean **in the training variant**, at the testbed's budget and
PPO settings, and score it there by the true return (the training variant is the one place the
labeller knows the truth, so nothing about the deployment shift leaks into β). The choice is the
candidate with the highest mean true return over seeds; candidates within one standard error of
it count as ties and the largest β among them wins (the more conservative agent).

Writes ``<out>/<testbed>.json`` (candidates, per-seed scores, means, standard errors, the choice,
the rule and the command) and per-run files under ``<out>/runs`` (resumable: finished runs are
reused). Copy the chosen β into klppo.yaml and set ``selected_by`` to the JSON file; the headline
then uses it unchanged.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ruagent.experiments.agents import AGENTS, build_agent, make_training_env, reference_agent
from ruagent.experiments.runner import EVAL_SEED_OFFSET, Budget, Job, _score, load_posterior, run_job
from ruagent.experiments.testbeds import TESTBEDS, TestbedSpec, load_hyperparams
from ruagent.io import atomic_write_bytes, atomic_write_text

__all__ = ["choose", "main", "select_kl_coef"]

SCHEMA = "ruagent.kl_selection/1"
RULE = ("highest mean true return in the training variant over seeds; candidates within one standard error of it "
        "are ties, and the largest beta among them is chosen")


def choose(scores: dict[float, list[float]]) -> tuple[float, dict[float, float], dict[float, float]]:
    """The rule above: ``scores[beta]`` are per-seed mean true returns; returns (beta, means, standard errors)."""
    means = {beta: float(np.mean(values)) for beta, values in scores.items()}
    errors = {beta: float(np.std(values, ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0
              for beta, values in scores.items()}
    best = max(means, key=lambda beta: (means[beta], beta))
    ties = [beta for beta in means if means[beta] >= means[best] - errors[best]]
    return max(ties), means, errors


def _run_candidate(testbed: TestbedSpec, seed: int, beta: float, out: Path, budget: Budget) -> float:
    """Mean true return in the training variant of KL-PPO(β) trained there; cached in a per-run JSON."""
    folder = out / "runs" / testbed.name / f"seed{seed}" / f"beta{beta:g}"
    path = folder / "result.json"
    if path.is_file():
        return float(json.loads(path.read_text())["mean_true_return"])
    import torch

    torch.set_num_threads(1)
    started = time.perf_counter()
    reward_model = load_posterior(testbed, Job(testbed.name, seed), out, budget)
    ref_policy = run_job(Job(testbed.name, seed, reference_agent(testbed)), out, budget).parent / "model.zip"
    agent = dataclasses.replace(AGENTS["kl-ppo"], train_variant="label")
    venv = make_training_env(testbed, agent, reward_model, seed)
    hyperparams = {**budget.hyperparams(testbed, "klppo"), "kl_coef": beta}
    model = build_agent(agent, venv, hyperparams, seed, ref_policy=ref_policy)
    model.learn(budget.timesteps(testbed))
    buffer = io.BytesIO()
    model.save(buffer)
    atomic_write_bytes(folder / "model.zip", buffer.getvalue())
    scores = _score(testbed, testbed.label_kwargs, model, reward_model, budget.eval_episodes(testbed), seed)
    venv.close()
    result = {"schema": SCHEMA, "testbed": testbed.name, "seed": seed, "kl_coef": beta,
              "timesteps": int(model.num_timesteps), "eval_seed": EVAL_SEED_OFFSET + seed,
              "mean_true_return": float(np.mean(scores["true_return"])), "evaluation": scores,
              "wall_seconds": time.perf_counter() - started}
    atomic_write_text(path, json.dumps(result, indent=1))
    return result["mean_true_return"]


def select_kl_coef(testbed: str, seeds: int = 3, out: str | Path = "results/kl_selection", tiny: bool = False,
                   command: str | None = None) -> dict[str, Any]:
    """Run the procedure for one testbed and write ``<out>/<testbed>.json``; returns its content."""
    if testbed not in TESTBEDS:
        raise ValueError(f"unknown testbed {testbed!r}; choose from {', '.join(TESTBEDS)}")
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    spec, out, budget = TESTBEDS[testbed], Path(out), Budget(tiny=tiny)
    candidates = [float(beta) for beta in load_hyperparams("klppo", testbed)["kl_coef_candidates"]]
    started = time.perf_counter()
    scores = {beta: [_run_candidate(spec, seed, beta, out, budget) for seed in range(seeds)] for beta in candidates}
    chosen, means, errors = choose(scores)
    report = {
        "schema": SCHEMA, "testbed": testbed, "posterior": spec.posterior, "seeds": list(range(seeds)),
        "tiny": tiny, "timesteps": budget.timesteps(spec), "variant": spec.label_kwargs, "rule": RULE,
        "candidates": candidates, "per_seed": {f"{b:g}": v for b, v in scores.items()},
        "mean": {f"{b:g}": v for b, v in means.items()}, "standard_error": {f"{b:g}": v for b, v in errors.items()},
        "chosen": chosen, "command": command, "wall_seconds": time.perf_counter() - started,
    }
    atomic_write_text(out / f"{testbed}.json", json.dumps(report, indent=1))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ruagent.experiments.kl_selection",
                                     description="Choose KL-PPO's beta per testbed on the training variant.")
    parser.add_argument("--testbeds", nargs="+", choices=list(TESTBEDS), default=list(TESTBEDS), metavar="TESTBED")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per candidate (default 3)")
    parser.add_argument("--out", default="results/kl_selection", help="output folder (default results/kl_selection)")
    parser.add_argument("--tiny", action="store_true", help="the test suite's budget (no science)")
    args = parser.parse_args(argv)
    command = "python -m ruagent.experiments.kl_selection " + shlex.join(sys.argv[1:] if argv is None else argv)
    for testbed in args.testbeds:
        report = select_kl_coef(testbed, args.seeds, args.out, args.tiny, command)
        means = ", ".join(f"beta={b}: {m:.2f} ± {report['standard_error'][b]:.2f}" for b, m in report["mean"].items())
        print(f"{testbed}: {means} -> kl_coef: {report['chosen']:g} "
              f"(set it in ruagent/configs/hyperparams/klppo.yaml with selected_by: {Path(args.out) / testbed}.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
