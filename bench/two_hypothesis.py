"""The PG-BROIL check over seeds: where RiskPPO with the mean and with CVaR(0.05) keeps the cart.

TwoHypothesisCartPole (Javed et al., ICML 2021, Sec. 5.1): hypotheses with probabilities
0.95 / 0.05 pay +2 / −2 a step right of centre and +1 / +1 left. A mean agent should balance
right, a CVaR(α = 0.05) agent left. For each seed and risk measure this trains RiskPPO with
rl-zoo's CartPole PPO settings, then runs the deterministic policy for whole episodes and
reports the fraction of steps left of centre: the mean over seeds with a 95 % Wilson interval
over seeds (``ruagent.experiments.stats.rate_interval``: it stays inside [0, 1], where a Student-t
interval on a fraction did not), and the episode length beside it (an agent that falls over at
once "stays left" too).

    python bench/two_hypothesis.py [--seeds 5] [--steps 50000] [--episodes 5]

Prints a table, then the results as JSON on the last line; writes results/bench/two_hypothesis.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from stable_baselines3.common.env_util import make_vec_env
from tqdm import tqdm

import ruagent  # noqa: F401  (registers the env ids)
from ruagent.agents import RiskPPO
from ruagent.envs.two_hypothesis_cartpole import TwoHypothesisCartPolePosterior, time_left_of_centre
from ruagent.experiments.stats import rate_interval
from ruagent.io import atomic_write
from ruagent.wrappers import RewardUncertaintyWrapper

ENV_ID = "ruagent/TwoHypothesisCartPole-v0"
RESULTS = Path(__file__).resolve().parents[1] / "results" / "bench" / "two_hypothesis.json"
RISKS = {"mean": ("mean", {}), "cvar(0.05)": ("cvar", {"alpha": 0.05})}
# rl-zoo's PPO hyperparameters for CartPole-v1 (linear learning-rate and clip schedules).
PPO_KWARGS = {
    "n_steps": 32,
    "batch_size": 256,
    "n_epochs": 20,
    "gae_lambda": 0.8,
    "gamma": 0.98,
    "learning_rate": lambda progress: 1e-3 * progress,
    "clip_range": lambda progress: 0.2 * progress,
    "device": "cpu",
}


def train(risk: str, seed: int, steps: int) -> RiskPPO:
    posterior = TwoHypothesisCartPolePosterior()
    env = make_vec_env(
        ENV_ID, n_envs=8, seed=seed, wrapper_class=RewardUncertaintyWrapper, wrapper_kwargs={"reward_model": posterior}
    )
    name, risk_kwargs = RISKS[risk]
    model = RiskPPO("MlpPolicy", env, risk=name, risk_kwargs=risk_kwargs, seed=seed, **PPO_KWARGS)
    return model.learn(steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=50_000, help="training env steps per agent")
    parser.add_argument("--episodes", type=int, default=5, help="evaluation episodes per agent")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(1)

    per_seed: dict[str, list[dict]] = {risk: [] for risk in RISKS}
    start = time.perf_counter()
    for seed in tqdm(range(args.seeds), desc="seeds"):
        for risk in RISKS:
            model = train(risk, seed, args.steps)
            left, length = time_left_of_centre(model, args.episodes, seed=1000 + seed)
            per_seed[risk].append({"seed": seed, "left_fraction": left, "mean_episode_length": length})

    print(f"TwoHypothesisCartPole, {args.seeds} seeds x {args.steps} steps, {args.episodes} eval episodes each")
    summary = {}
    for risk, rows in per_seed.items():
        left = rate_interval([row["left_fraction"] for row in rows])
        mean, low, high = left.estimate, left.low, left.high
        lengths = [row["mean_episode_length"] for row in rows]
        summary[risk] = {
            "left_fraction_mean": mean,
            "left_fraction_wilson95": [low, high],
            "episode_length_mean": float(np.mean(lengths)),
            "per_seed": rows,
        }
        fractions = ", ".join(f"{row['left_fraction']:.2f}" for row in rows)
        print(
            f"  {risk:11s} left of centre {mean:.2f} [{low:.2f}, {high:.2f}]  seeds: {fractions}  "
            f"episode length {np.mean(lengths):.0f}"
        )
    result = {
        "benchmark": "two_hypothesis_cartpole",
        "seeds": args.seeds,
        "steps": args.steps,
        "episodes": args.episodes,
        "cvar_left_fraction": summary["cvar(0.05)"]["left_fraction_mean"],
        "mean_left_fraction": summary["mean"]["left_fraction_mean"],
        "cvar_mostly_left": bool(summary["cvar(0.05)"]["left_fraction_wilson95"][0] > 0.5),
        "mean_mostly_right": bool(summary["mean"]["left_fraction_wilson95"][1] < 0.5),
        "risks": summary,
        "wall_s": time.perf_counter() - start,
    }
    with atomic_write(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
