"""Soak test: a million wrapped env steps, memory flat, steps/s.

Steps ``--n-envs`` x CartPole-v1 (``make_vec_env``: DummyVecEnv with Monitor inside) under
``VecRewardUncertaintyWrapper`` with a fitted 10-member 64x64 ensemble, in ``cvar`` mode
(the dearest per-step mode) and with random actions, for ``--steps`` env steps in total
(summed over sub-envs, SB3's ``num_timesteps`` convention). Every info dict is read, and
episode summaries are kept in a bounded deque, as SB3's ``ep_info_buffer`` does, so the
loop holds what a training loop holds. The same loop on the plain VecEnv (no wrapper) runs
second in the same process (so the wrapped arm starts on a fresh heap and cannot reuse
memory the other arm freed), as the baseline for steps/s and for memory growth: SB3's
``Monitor`` appends to three lists every episode (``get_episode_rewards`` and friends), a
slow growth that is not the wrapper's.

Memory is the process's resident set size (``VmRSS`` of /proc/self/status), sampled
``--samples`` times. "Start" is taken after a warm-up of ``--warmup`` env steps (allocator
pools, numpy/torch caches and Python's own free lists fill up in the first steps; growth
after that is what a leak looks like). The run passes if the end RSS is within 5 % of the
start RSS. Prints a table, writes ``results/bench/soak.json``; the last stdout line is that
JSON.

    python bench/soak.py                    # 1,000,000 env steps (about a minute per 100k on 2 busy cores)
    python bench/soak.py --steps 100000     # shorter
    python bench/soak.py --quick            # 2,000 steps, to check the script runs (writes under bench/results/)
"""

from __future__ import annotations

import argparse
import collections
import json
import platform
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from _output import output_path
from stable_baselines3.common.env_util import make_vec_env
from tqdm import tqdm

import ruagent
from ruagent.data import collect_transitions
from ruagent.io import atomic_write_text
from ruagent.reward_models.ensemble import EnsembleRewardModel
from ruagent.wrappers import VecRewardUncertaintyWrapper

ENV_ID = "CartPole-v1"
RESULTS = Path(__file__).resolve().parents[1] / "results" / "bench" / "soak.json"
TOLERANCE = 0.05


def rss_bytes() -> int:
    """Resident set size of this process now (Linux /proc; not the peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status: this benchmark needs Linux")


def fitted_ensemble(seed: int) -> EnsembleRewardModel:
    env = gym.make(ENV_ID)
    model = EnsembleRewardModel(env.observation_space, env.action_space, n_members=10, hidden_sizes=(64, 64), seed=seed)
    model.fit(collect_transitions(env, 2000, seed=seed), epochs=20, progress_bar=False)
    return model


def soak(model: EnsembleRewardModel | None, n_steps: int, n_envs: int, warmup: int, n_samples: int, seed: int) -> dict:
    """One arm: the wrapped VecEnv, or the plain one when ``model`` is None."""
    venv = make_vec_env(ENV_ID, n_envs=n_envs, seed=seed)
    if model is not None:
        venv = VecRewardUncertaintyWrapper(venv, model, mode="cvar", seed=seed)
    venv.reset()
    rng = np.random.default_rng(seed)
    episodes: collections.deque = collections.deque(maxlen=100)  # like SB3's ep_info_buffer
    n_vec_steps = -(-n_steps // n_envs)
    warmup_vec_steps = min(-(-warmup // n_envs), n_vec_steps // 2)
    sample_every = max((n_vec_steps - warmup_vec_steps) // n_samples, 1)
    samples: list[tuple[int, int]] = []  # (env steps, RSS bytes)
    reward_sum = 0.0
    started, episodes_at_start = None, 0
    arm = "plain" if model is None else "wrapped"
    for step in tqdm(range(n_vec_steps), desc=arm, unit_scale=n_envs, unit=" env steps", mininterval=2.0):
        if step == warmup_vec_steps:
            samples.append((step * n_envs, rss_bytes()))
            episodes_at_start = sum(len(returns) for returns in venv.env_method("get_episode_rewards"))
            started = (time.perf_counter(), time.process_time())
        _, rewards, _, infos = venv.step(rng.integers(0, 2, size=n_envs))
        reward_sum += float(rewards.sum())
        for info in infos:
            if "episode" in info:
                episodes.append((info["episode"]["r"], info.get("proxy_episode", {}).get("r")))
        if step > warmup_vec_steps and (step - warmup_vec_steps) % sample_every == 0:
            samples.append((step * n_envs, rss_bytes()))
    wall, cpu = time.perf_counter() - started[0], time.process_time() - started[1]
    samples.append((n_vec_steps * n_envs, rss_bytes()))
    monitored_episodes = sum(len(returns) for returns in venv.env_method("get_episode_rewards"))
    venv.close()
    measured_steps = (n_vec_steps - warmup_vec_steps) * n_envs
    start, end = samples[0][1], samples[-1][1]
    return {
        "env_steps": n_vec_steps * n_envs,
        "n_envs": n_envs,
        "warmup_env_steps": warmup_vec_steps * n_envs,
        "rss_start_mib": start / 2**20,
        "rss_end_mib": end / 2**20,
        "rss_max_mib": max(rss for _, rss in samples) / 2**20,
        "rss_growth": end / start - 1.0,
        "flat_within_5pct": abs(end / start - 1.0) <= TOLERANCE,
        "env_steps_per_s_wall": measured_steps / wall,
        "env_steps_per_s_cpu": measured_steps / cpu,
        "episodes": monitored_episodes,
        "rss_growth_bytes_per_episode": (end - start) / max(monitored_episodes - episodes_at_start, 1),
        "mean_reward": reward_sum / (n_vec_steps * n_envs),
        "rss_samples_mib": [[steps, round(rss / 2**20, 2)] for steps, rss in samples],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1_000_000, help="env steps in total (default 1,000,000)")
    parser.add_argument("--n-envs", type=int, default=8, help="sub-envs of the VecEnv (default 8)")
    parser.add_argument("--warmup", type=int, default=20_000, help="env steps before the start RSS (default 20,000)")
    parser.add_argument("--samples", type=int, default=20, help="RSS samples after the warm-up (default 20)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON path (default results/bench/soak.json; with --quick bench/results/)")
    parser.add_argument("--quick", action="store_true",
                        help="2,000 steps after a 400-step warm-up: checks the script runs, too short to judge memory")
    args = parser.parse_args(argv)
    out = output_path(RESULTS, args.quick, args.out)
    if args.quick:
        args.steps, args.warmup, args.samples = 2_000, 400, 4
    if args.steps < 2 * args.n_envs or args.n_envs < 1:
        parser.error(f"need --n-envs >= 1 and --steps >= 2 * n_envs; got {args.steps}, {args.n_envs}")
    torch.set_num_threads(1)  # the wrapper predicts with numpy for small batches; keep torch off the second core

    model = fitted_ensemble(args.seed)
    result = soak(model, args.steps, args.n_envs, args.warmup, args.samples, args.seed)
    plain = soak(None, args.steps, args.n_envs, args.warmup, args.samples, args.seed)
    result.update(
        plain=plain,
        wrapped_vs_plain_steps_per_s_cpu=result["env_steps_per_s_cpu"] / plain["env_steps_per_s_cpu"],
        wrapped_vs_plain_steps_per_s_wall=result["env_steps_per_s_wall"] / plain["env_steps_per_s_wall"],
        command=" ".join(["python", "bench/soak.py", *sys.argv[1:]]),
        machine=platform.processor() or platform.machine(),
        versions={"ruagent": ruagent.__version__, "numpy": np.__version__, "torch": torch.__version__},
    )
    print(f"env steps per arm      {result['env_steps']:,} ({result['n_envs']} envs; wrapped: cvar over 10 members)")
    print(f"{'':22} {'plain':>12} {'wrapped':>12}")
    for label, key, fmt in [
        ("RSS after warm-up MiB", "rss_start_mib", "{:12.1f}"),
        ("RSS at end MiB", "rss_end_mib", "{:12.1f}"),
        ("growth %", "rss_growth", "{:+12.2%}"),
        ("growth B / episode", "rss_growth_bytes_per_episode", "{:12.0f}"),
        ("env steps/s (wall)", "env_steps_per_s_wall", "{:12,.0f}"),
        ("env steps/s (CPU)", "env_steps_per_s_cpu", "{:12,.0f}"),
    ]:
        print(f"{label:22} {fmt.format(plain[key])} {fmt.format(result[key])}")
    print(f"wrapped flat within 5 %: {result['flat_within_5pct']}; wrapped/plain steps/s (CPU): "
          f"{result['wrapped_vs_plain_steps_per_s_cpu']:.3f}")
    text = json.dumps(result)
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    print(text)
    return 0 if result["flat_within_5pct"] or args.quick else 1


if __name__ == "__main__":
    sys.exit(main())
