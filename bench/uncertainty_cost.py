"""Is calibration bought with blanket uncertainty? The price of a risk-averse reward on ordinary tasks.

    python bench/uncertainty_cost.py [--envs cartpole pendulum] [--seeds 0 1 2 3 4]
                                     [--out results/uncertainty_cost] [--report-only]
    python bench/uncertainty_cost.py --quick   # seed 0, tiny budgets: checks the script runs (bench/results/)

On tasks without a hazard, a posterior whose uncertainty is honest should cost a risk-averse
agent little: its members agree where the agent goes. For each env and seed: 2,000 reward
labels from a uniformly random policy, the default ``EnsembleRewardModel`` (transition
features, label-derived prior), then the same algorithm trained twice at the same budget,
once through ``VecRewardUncertaintyWrapper(mode="cvar", cvar_alpha=0.1)`` (it never sees
the env's reward) and once on the true reward (the oracle). Both are scored by the true
return over 10 deterministic episodes, normalised as (R − R_random) / (R_oracle − R_random)
with R_random a uniformly random policy's return on the same seed.

Settings: PPO on CartPole-v1 for 100,000 steps (rl-baselines3-zoo's tuned hyperparameters),
SAC on Pendulum-v1 for 20,000 steps (rl-zoo's learning rate, SB3 defaults otherwise).
Each (env, agent, seed) writes ``<out>/<env>/<agent>-seed<N>.json``; finished ones are
skipped (resumable). The last stdout line is the summary as JSON: per env the IQM of the
normalised score over seeds with a 95 % percentile-bootstrap interval over seeds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from _output import output_path
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

import ruagent
from ruagent.experiments.posterior_checks import summarise_uncertainty_cost

ROOT = Path(__file__).resolve().parents[1]
N_LABELS = 2_000
EVAL_EPISODES = 10
#: a --quick run's labels, steps per agent (one PPO update; SAC's first gradient steps) and evaluation episodes
QUICK = {"labels": 200, "timesteps": {"cartpole": 256, "pendulum": 300}, "eval_episodes": 2}

SETTINGS = {
    "cartpole": {
        "env_id": "CartPole-v1", "algo": PPO, "timesteps": 100_000, "n_envs": 8,
        # rl-baselines3-zoo hyperparams/ppo.yml (CartPole-v1), constant learning rate
        "kwargs": dict(n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20, ent_coef=0.0,
                       learning_rate=1e-3, clip_range=0.2),
    },
    "pendulum": {
        "env_id": "Pendulum-v1", "algo": SAC, "timesteps": 20_000, "n_envs": 1,
        "kwargs": dict(learning_rate=1e-3),
    },
}


def _posterior(env_id: str, seed: int, n_labels: int) -> ruagent.EnsembleRewardModel:
    env = gym.make(env_id)
    labels = ruagent.collect_transitions(env, n_labels, seed=seed)
    model = ruagent.EnsembleRewardModel(env.observation_space, env.action_space, n_members=10, seed=seed)
    model.fit(labels, progress_bar=False)
    return model


def _random_return(env_id: str, seed: int, episodes: int) -> float:
    env = gym.make(env_id)
    env.action_space.seed(seed)
    returns = []
    for episode in range(episodes):
        env.reset(seed=seed + episode)
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return float(np.mean(returns))


def run_one(name: str, agent: str, seed: int, out: Path, quick: bool = False) -> Path:
    target = out / name / f"{agent}-seed{seed}.json"
    if target.is_file():
        return target
    setting = SETTINGS[name]
    n_labels = QUICK["labels"] if quick else N_LABELS
    timesteps = QUICK["timesteps"][name] if quick else setting["timesteps"]
    episodes = QUICK["eval_episodes"] if quick else EVAL_EPISODES
    started = time.perf_counter()
    if agent == "random":
        record = {"true_return": _random_return(setting["env_id"], seed, episodes)}
    else:
        venv = make_vec_env(setting["env_id"], n_envs=setting["n_envs"], seed=seed)
        if agent == "cvar":
            venv = ruagent.VecRewardUncertaintyWrapper(venv, _posterior(setting["env_id"], seed, n_labels), mode="cvar",
                                                       cvar_alpha=0.1, seed=seed)
        model = setting["algo"]("MlpPolicy", venv, seed=seed, verbose=0, **setting["kwargs"])
        model.learn(timesteps)
        eval_env = make_vec_env(setting["env_id"], n_envs=1, seed=10_000 + seed)
        returns, _ = evaluate_policy(model, eval_env, n_eval_episodes=episodes, return_episode_rewards=True)
        record = {"true_return": float(np.mean(returns)), "episode_returns": [float(r) for r in returns]}
    record.update(env=setting["env_id"], agent=agent, seed=seed, wall_s=round(time.perf_counter() - started, 1),
                  timesteps=timesteps, labels=n_labels)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(target)
    return target


def summarise(out: Path) -> dict:
    """The per-env summary (:func:`ruagent.experiments.posterior_checks.summarise_uncertainty_cost`), also
    written to ``<out>/summary.json``."""
    summary = summarise_uncertainty_cost(out)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(5)))
    parser.add_argument("--out", type=Path, default=None,
                        help="folder (default results/uncertainty_cost; with --quick under bench/results/)")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--quick", action="store_true", help="seed 0 and tiny budgets, to check the script runs")
    args = parser.parse_args(argv)
    args.out = output_path(ROOT / "results" / "uncertainty_cost", args.quick, args.out)
    if args.quick:
        args.seeds = [0]
    torch.set_num_threads(1)
    if not args.report_only:
        for seed in args.seeds:
            for name in args.envs:
                for agent in ("random", "oracle", "cvar"):
                    path = run_one(name, agent, seed, args.out, args.quick)
                    print(f"done {path.relative_to(args.out)}", flush=True)
    summary = summarise(args.out)
    for name, entry in summary.items():
        low, high = entry["ci95"]
        print(f"{name}: normalised score IQM {entry['normalised_iqm']:.3f} [{low:.3f}, {high:.3f}] over "
              f"{len(entry['per_seed'])} seeds")
    print(json.dumps({name: {k: v for k, v in entry.items() if k != "per_seed"} for name, entry in summary.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
