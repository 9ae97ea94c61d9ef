"""Training throughput of RiskPPO (K members) against PPO on the same wrapped env.

Both agents train on CartPole-v1 behind ``VecRewardUncertaintyWrapper`` with a K-member
``EnsembleRewardModel`` (the same wrapper cost for both: PPO reads the scalar reward, RiskPPO
all K member rewards). Each repeat trains a fresh PPO and a fresh RiskPPO, one after the other
(alternating which goes first) so that both see the same machine load. The figure is the median
over repeats of steps/s (env steps per second of wall time, rollouts and updates included), and
the ratio is taken of those medians. The same ratio per CPU-second of this process is reported
too: on a shared machine it is the steadier figure, as other processes inflate wall time unevenly.

    python bench/riskppo.py [--members 10] [--repeats 3] [--n-envs 8] [--n-steps 256] [--rollouts 4]
    python bench/riskppo.py --quick     # tiny sizes, to check the script runs (writes under bench/results/)

Prints a table, then the results as JSON on the last line; writes results/bench/riskppo.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from _output import output_path
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from tqdm import tqdm

from ruagent.agents import RiskPPO
from ruagent.io import atomic_write
from ruagent.reward_models.ensemble import EnsembleRewardModel
from ruagent.wrappers import VecRewardUncertaintyWrapper

RESULTS = Path(__file__).resolve().parents[1] / "results" / "bench" / "riskppo.json"


def wrapped_env(n_envs: int, members: int, seed: int) -> VecRewardUncertaintyWrapper:
    venv = make_vec_env("CartPole-v1", n_envs=n_envs, seed=seed)
    posterior = EnsembleRewardModel(venv.observation_space, venv.action_space, n_members=members, seed=seed)
    return VecRewardUncertaintyWrapper(venv, posterior, mode="mean")


def steps_per_second(algo: type[PPO], args: argparse.Namespace, seed: int) -> tuple[float, float, PPO]:
    """(env steps per wall second, env steps per CPU second of this process, the trained model)."""
    env = wrapped_env(args.n_envs, args.members, seed)
    kwargs = {"risk": "cvar", "risk_kwargs": {"alpha": 0.1}} if algo is RiskPPO else {}
    model = algo("MlpPolicy", env, n_steps=args.n_steps, batch_size=64, seed=seed, device="cpu", **kwargs)
    total = args.rollouts * args.n_steps * args.n_envs
    start, start_cpu = time.perf_counter(), time.process_time()
    model.learn(total)
    return total / (time.perf_counter() - start), total / (time.process_time() - start_cpu), model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=10, help="K, members of the reward posterior")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-envs", type=int, default=8)
    parser.add_argument("--n-steps", type=int, default=256)
    parser.add_argument("--rollouts", type=int, default=4, help="rollout+update iterations per timed run")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (tiny nets: 1 is fastest)")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON path (default results/bench/riskppo.json; with --quick bench/results/)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check the script runs")
    args = parser.parse_args()
    args.out = output_path(RESULTS, args.quick, args.out)
    if args.quick:
        args.members, args.repeats, args.n_envs, args.n_steps, args.rollouts = 2, 3, 2, 32, 1
    if args.repeats < 3:
        parser.error("--repeats must be >= 3 (the figures are medians)")
    torch.set_num_threads(args.threads)

    runs: dict[str, list[float]] = {"PPO": [], "RiskPPO": []}
    cpu_runs: dict[str, list[float]] = {"PPO": [], "RiskPPO": []}
    buffer_bytes = 0
    for repeat in tqdm(range(args.repeats), desc="repeats"):
        # Alternate which agent runs first, so that warm-up and load drift do not favour one.
        for algo in (PPO, RiskPPO) if repeat % 2 == 0 else (RiskPPO, PPO):
            rate, cpu_rate, model = steps_per_second(algo, args, seed=repeat)
            runs[algo.__name__].append(rate)
            cpu_runs[algo.__name__].append(cpu_rate)
            if algo is RiskPPO:
                buffer_bytes = model.rollout_buffer.nbytes()

    medians = {name: statistics.median(rates) for name, rates in runs.items()}
    ratio = medians["RiskPPO"] / medians["PPO"]
    cpu_medians = {name: statistics.median(rates) for name, rates in cpu_runs.items()}
    cpu_ratio = cpu_medians["RiskPPO"] / cpu_medians["PPO"]
    print(f"CartPole-v1, K={args.members}, n_envs={args.n_envs}, n_steps={args.n_steps}, {args.repeats} repeats")
    for name, rates in runs.items():
        print(f"  {name:8s} median {medians[name]:8.0f} steps/s   runs: {', '.join(f'{r:.0f}' for r in rates)}")
    print(f"  RiskPPO / PPO = {ratio:.3f}  (target >= 0.95); per CPU second of this process: {cpu_ratio:.3f}")
    print(f"  RiskPPO rollout buffer: {buffer_bytes} bytes ({buffer_bytes / 2**20:.2f} MiB)")
    result = {
        "benchmark": "riskppo_throughput",
        "env": "CartPole-v1 + VecRewardUncertaintyWrapper(EnsembleRewardModel)",
        "members": args.members,
        "n_envs": args.n_envs,
        "n_steps": args.n_steps,
        "timesteps_per_run": args.rollouts * args.n_steps * args.n_envs,
        "repeats": args.repeats,
        "ppo_steps_per_s": runs["PPO"],
        "riskppo_steps_per_s": runs["RiskPPO"],
        "ppo_median": medians["PPO"],
        "riskppo_median": medians["RiskPPO"],
        "riskppo_vs_ppo": ratio,
        "ppo_steps_per_cpu_s": cpu_runs["PPO"],
        "riskppo_steps_per_cpu_s": cpu_runs["RiskPPO"],
        "riskppo_vs_ppo_cpu": cpu_ratio,
        "riskppo_buffer_bytes": buffer_bytes,
        "torch_threads": args.threads,
        "machine": platform.platform(),
    }
    with atomic_write(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
