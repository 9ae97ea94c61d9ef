"""Training throughput of RiskSAC / RiskDQN (K members, relabelling replay) against SAC / DQN.

Each pair trains behind the same ``VecRewardUncertaintyWrapper(mode="mean")`` with the same
K-member ``EnsembleRewardModel`` (default architecture), fitted once on ``--labels`` random
transitions labelled with the env's reward: RiskSAC vs SAC on Pendulum-v1, RiskDQN vs DQN on
CartPole-v1, SB3's default hyperparameters. Both algorithms of a pair pay the wrapper's
per-step posterior call; the risk agent also recomputes the K member rewards of every sampled
batch from the posterior (relabelling: one ``predict`` of ``batch_size`` transitions per
gradient step), trains K heads per critic and applies its risk measure (cvar, α = 0.1).

Each repeat builds a fresh pair and trains the two models in alternating chunks (``--chunks``,
``learn(chunk, reset_num_timesteps=False)``, the order swapped every chunk), so that load on a
shared machine falls on both alike. Figures: median over repeats of env steps per second of wall
time (collection and updates, from the first step, learning_starts included) and per CPU-second
of this process; the ratios are of those medians (per-repeat ratios are in the JSON too).

    python bench/offpolicy.py [--members 10] [--repeats 3] [--sac-steps 1500] [--dqn-steps 6000] [--chunks 6]
    python bench/offpolicy.py --quick     # tiny sizes, to check the script runs (writes under bench/results/)

Prints a table, then the results as JSON on the last line (keys ``risksac_vs_sac`` and
``riskdqn_vs_dqn``, wall-clock ratios, and their ``_cpu`` twins); writes results/bench/offpolicy.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import gymnasium as gym
import torch
from _output import output_path
from stable_baselines3 import DQN, SAC
from stable_baselines3.common.env_util import make_vec_env
from tqdm import tqdm

import ruagent
from ruagent.agents import RiskDQN, RiskSAC
from ruagent.io import atomic_write
from ruagent.reward_models.ensemble import EnsembleRewardModel
from ruagent.wrappers import VecRewardUncertaintyWrapper

RESULTS = Path(__file__).resolve().parents[1] / "results" / "bench" / "offpolicy.json"
#: name -> (env id, SB3 algorithm, risk agent)
PAIRS = {"sac": ("Pendulum-v1", SAC, RiskSAC), "dqn": ("CartPole-v1", DQN, RiskDQN)}


def fitted_posterior(env_id: str, members: int, n_labels: int, seed: int) -> EnsembleRewardModel:
    env = gym.make(env_id)
    labels = ruagent.collect_transitions(env, n_labels, seed=seed)
    posterior = EnsembleRewardModel(env.observation_space, env.action_space, n_members=members, seed=seed)
    posterior.fit(labels, env=env, progress_bar=False)
    env.close()
    return posterior


def make_model(algo: type, env_id: str, posterior: EnsembleRewardModel, seed: int):
    env = VecRewardUncertaintyWrapper(make_vec_env(env_id, n_envs=1, seed=seed), posterior, mode="mean")
    kwargs = {"risk": "cvar", "risk_kwargs": {"alpha": 0.1}} if algo in (RiskSAC, RiskDQN) else {}
    return algo("MlpPolicy", env, seed=seed, device="cpu", **kwargs)


def paired_rates(name: str, posterior: EnsembleRewardModel, steps: int, chunks: int, seed: int):
    """Train the pair ``name`` for ``steps`` env steps each, in ``chunks`` alternating chunks.

    Both models exist from the start and take turns (``learn(chunk, reset_num_timesteps=False)``,
    the order swapped every chunk), so that load on a shared machine falls on both alike.
    :return: {algorithm: env steps per wall second}, {algorithm: env steps per CPU second of this process}.
    """
    env_id, sb3_algo, risk_algo = PAIRS[name]
    models = {algo.__name__: make_model(algo, env_id, posterior, seed) for algo in (sb3_algo, risk_algo)}
    wall = dict.fromkeys(models, 0.0)
    cpu = dict.fromkeys(models, 0.0)
    chunk = steps // chunks
    for i in range(chunks):
        for algo_name in list(models) if i % 2 == 0 else list(reversed(models)):
            start, start_cpu = time.perf_counter(), time.process_time()
            models[algo_name].learn(chunk, reset_num_timesteps=i == 0)
            wall[algo_name] += time.perf_counter() - start
            cpu[algo_name] += time.process_time() - start_cpu
    return ({n: chunk * chunks / t for n, t in wall.items()}, {n: chunk * chunks / t for n, t in cpu.items()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=10, help="K, members of the reward posterior")
    parser.add_argument("--labels", type=int, default=1000, help="random reward labels the posterior is fitted on")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sac-steps", type=int, default=1500, help="env steps per timed SAC/RiskSAC run")
    parser.add_argument("--dqn-steps", type=int, default=6000, help="env steps per timed DQN/RiskDQN run")
    parser.add_argument("--chunks", type=int, default=6, help="alternating chunks per timed pair")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (small nets: 1 is fastest)")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON path (default results/bench/offpolicy.json; with --quick bench/results/)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check the script runs")
    args = parser.parse_args()
    args.out = output_path(RESULTS, args.quick, args.out)
    if args.quick:  # SB3's SAC and DQN start learning after 100 steps: 300 steps take gradient steps too
        args.members, args.labels, args.repeats, args.sac_steps, args.dqn_steps, args.chunks = 2, 200, 3, 300, 300, 2
    if args.repeats < 3:
        parser.error("--repeats must be >= 3 (the figures are medians)")
    torch.set_num_threads(args.threads)
    steps = {"sac": args.sac_steps, "dqn": args.dqn_steps}

    posteriors = {name: fitted_posterior(env_id, args.members, args.labels, seed=0)
                  for name, (env_id, _, _) in PAIRS.items()}
    wall: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    for repeat in tqdm(range(args.repeats), desc="repeats"):
        for name in PAIRS:
            rates, cpu_rates = paired_rates(name, posteriors[name], steps[name], args.chunks, seed=repeat)
            for algo_name in rates:
                wall.setdefault(algo_name, []).append(rates[algo_name])
                cpu.setdefault(algo_name, []).append(cpu_rates[algo_name])

    medians = {name: statistics.median(rates) for name, rates in wall.items()}
    cpu_medians = {name: statistics.median(rates) for name, rates in cpu.items()}
    result = {
        "benchmark": "offpolicy_throughput",
        "members": args.members,
        "labels": args.labels,
        "repeats": args.repeats,
        "risk": "cvar(alpha=0.1)",
        "sac_env": "Pendulum-v1 + VecRewardUncertaintyWrapper(EnsembleRewardModel, mode=mean)",
        "dqn_env": "CartPole-v1 + VecRewardUncertaintyWrapper(EnsembleRewardModel, mode=mean)",
        "sac_steps_per_run": args.sac_steps,
        "dqn_steps_per_run": args.dqn_steps,
        "steps_per_s": wall,
        "steps_per_cpu_s": cpu,
        "median_steps_per_s": medians,
        "median_steps_per_cpu_s": cpu_medians,
        "risksac_vs_sac": medians["RiskSAC"] / medians["SAC"],
        "riskdqn_vs_dqn": medians["RiskDQN"] / medians["DQN"],
        "risksac_vs_sac_cpu": cpu_medians["RiskSAC"] / cpu_medians["SAC"],
        "riskdqn_vs_dqn_cpu": cpu_medians["RiskDQN"] / cpu_medians["DQN"],
        # the same pairs' ratios repeat by repeat (each repeat's two models shared the machine's load)
        "risksac_vs_sac_per_repeat": [r / b for r, b in zip(wall["RiskSAC"], wall["SAC"])],
        "riskdqn_vs_dqn_per_repeat": [r / b for r, b in zip(wall["RiskDQN"], wall["DQN"])],
        "chunks": args.chunks,
        "torch_threads": args.threads,
        "machine": platform.platform(),
    }
    print(f"K={args.members} posterior fitted on {args.labels} random labels, {args.repeats} repeats, cvar(0.1)")
    for name in ("SAC", "RiskSAC", "DQN", "RiskDQN"):
        runs = ", ".join(f"{r:.0f}" for r in wall[name])
        print(f"  {name:8s} median {medians[name]:7.1f} steps/s ({cpu_medians[name]:7.1f} per CPU-s)   runs: {runs}")
    print(f"  RiskSAC / SAC = {result['risksac_vs_sac']:.3f} wall, {result['risksac_vs_sac_cpu']:.3f} CPU "
          "(target >= 0.8)")
    print(f"  RiskDQN / DQN = {result['riskdqn_vs_dqn']:.3f} wall, {result['riskdqn_vs_dqn_cpu']:.3f} CPU "
          "(target >= 0.8)")
    with atomic_write(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
