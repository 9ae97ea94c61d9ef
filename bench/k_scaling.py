"""Benchmark: how the wrapper's overhead and RiskPPO's throughput grow with K, the number of members.

For each K in ``--members`` (default 1, 5, 10, 50, 100), in one process:

1. the wrapper's overhead per vec step (8 x CartPole-v1, 64x64 ensemble fitted on
   random-policy labels), in modes ``mean`` and ``cvar``: CPU µs of a wrapped vec step minus
   a plain one, plain and wrapped runs interleaved (``bench/wrapper.py``'s harness);
2. RiskPPO (cvar, α = 0.1) against PPO training on the same wrapped env: env steps per CPU
   second of this process, ``bench/riskppo.py``'s runs, alternating which agent goes first.

Figures are medians over ``--repeats``. The wrapper's cost is mostly K-independent Python
work at small K and the 2K member nets' arithmetic at large K, so the overhead ratio
K=100 / K=10 says how close the step is to pure arithmetic (10 would be all of it).

    python bench/k_scaling.py             # about 10 minutes on 2 busy cores
    python bench/k_scaling.py --quick     # smoke run (the bench test runs this)

Writes ``results/bench/k_scaling.json`` (``--out`` to change); the last stdout line is that JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from pathlib import Path
from types import SimpleNamespace

import torch
from _output import output_path
from riskppo import steps_per_second
from stable_baselines3 import PPO
from tqdm import tqdm
from wrapper import N_ENVS, env_steps_per_second, fitted_ensemble, interleaved, make_venv

from ruagent.agents import RiskPPO
from ruagent.io import atomic_write_text

RESULTS = Path(__file__).resolve().parents[1] / "results" / "bench" / "k_scaling.json"
MODES = ("mean", "cvar")


def wrapper_overhead_us(members: int, repeats: int, vec_steps: int) -> dict[str, float]:
    """Median CPU µs per vec step that the wrapper adds, per mode, at K = ``members``."""
    model = fitted_ensemble(members, n_labels=2000, epochs=20, seed=0)
    runs = interleaved(
        lambda mode, r: env_steps_per_second(make_venv(model, mode, r), vec_steps, seed=r),
        [None, *MODES],
        repeats,
        f"K={members} stepping",
    )
    # per repeat: µs per vec step wrapped minus plain (paired runs), then the median
    return {
        mode: statistics.median(
            1e6 * N_ENVS * (1 / wrapped["cpu"] - 1 / plain["cpu"]) for wrapped, plain in zip(runs[mode], runs[None])
        )
        for mode in MODES
    }


def riskppo_vs_ppo(members: int, repeats: int, rollouts: int) -> dict[str, float]:
    """Median env steps per CPU second of PPO and RiskPPO on the same wrapped env, and their ratio."""
    args = SimpleNamespace(n_envs=N_ENVS, members=members, n_steps=256, rollouts=rollouts)
    rates: dict[str, list[float]] = {"PPO": [], "RiskPPO": []}
    for repeat in tqdm(range(repeats), desc=f"K={members} PPO/RiskPPO", file=sys.stderr):
        for algo in (PPO, RiskPPO) if repeat % 2 == 0 else (RiskPPO, PPO):
            _, cpu_rate, _ = steps_per_second(algo, args, seed=repeat)
            rates[algo.__name__].append(cpu_rate)
    ppo, risk_ppo = (statistics.median(rates[name]) for name in ("PPO", "RiskPPO"))
    return {"ppo_steps_per_cpu_s": ppo, "riskppo_steps_per_cpu_s": risk_ppo, "riskppo_vs_ppo": risk_ppo / ppo}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, nargs="+", default=[1, 5, 10, 50, 100])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--vec-steps", type=int, default=2000, help="vec steps per env-stepping run")
    parser.add_argument("--rollouts", type=int, default=3, help="PPO rollout+update iterations per timed run")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON path (default results/bench/k_scaling.json; with --quick bench/results/)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check the script runs")
    args = parser.parse_args()
    args.out = output_path(RESULTS, args.quick, args.out)
    if args.quick:
        args.members, args.repeats, args.vec_steps, args.rollouts = [1, 10], 1, 100, 1
    if 10 not in args.members:
        parser.error("--members must include 10, the reference K of the ratios")
    torch.set_num_threads(1)  # tiny nets: one thread is fastest, and CPU time then equals wall time when idle

    by_k = {}
    for k in args.members:
        by_k[k] = {"wrapper_overhead_us": wrapper_overhead_us(k, args.repeats, args.vec_steps)}
        by_k[k].update(riskppo_vs_ppo(k, args.repeats, args.rollouts))
    reference = by_k[10]["wrapper_overhead_us"]
    results = {
        "env_id": "CartPole-v1",
        "n_envs": N_ENVS,
        "hidden_sizes": [64, 64],
        "clock": "process CPU time",
        "by_members": {str(k): row for k, row in by_k.items()},
        "overhead_vs_k10": {
            str(k): {mode: row["wrapper_overhead_us"][mode] / reference[mode] for mode in MODES}
            for k, row in by_k.items()
        },
        "targets": {"overhead_k100_vs_k10_at_most": 10.0, "riskppo_vs_ppo_at_k10_at_least": 0.95},
        "settings": {key: value for key, value in vars(args).items() if key != "out"},
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpus": os.cpu_count(),
            "load_average_1min": os.getloadavg()[0],
        },
    }
    print(f"\nCartPole-v1 x {N_ENVS}, 64x64 ensembles; medians of {args.repeats} repeats, CPU clock")
    print(f"{'K':>5}{'overhead mean µs':>18}{'cvar µs':>10}{'vs K=10':>9}{'RiskPPO/PPO':>13}")
    for k, row in by_k.items():
        overhead = row["wrapper_overhead_us"]
        print(
            f"{k:>5}{overhead['mean']:>18.0f}{overhead['cvar']:>10.0f}"
            f"{results['overhead_vs_k10'][str(k)]['mean']:>8.1f}x{row['riskppo_vs_ppo']:>12.3f}x"
        )
    atomic_write_text(args.out, json.dumps(results, indent=2) + "\n")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
