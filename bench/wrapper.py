"""Benchmark: what the reward-uncertainty VecEnv wrapper costs.

Measures, in one run and interleaved (so both arms share the machine's load):

1. env-steps/s of 8 x CartPole-v1 (DummyVecEnv with Monitor, as ``make_vec_env`` builds it)
   plain vs under ``VecRewardUncertaintyWrapper`` with a 10-member ensemble of 64x64 MLPs
   (fitted on random-policy labels first), in the default mode ``mean`` (the headline
   ``wrapper_vs_plain``) and in ``cvar`` (``wrapper_cvar_vs_plain``, the dearest mode);
2. SB3 PPO training steps/s (``learn``, default PPO hyperparameters except ``n_steps``)
   on the same VecEnv with and without the wrapper (mode ``mean``);
3. a *floor* (:class:`FloorWrapper`): the same posterior's mean, std and members put in the
   infos with no validation, modes or bookkeeping, to show how much of the wrapper's cost any
   numpy implementation of this posterior must pay.

Each figure is the median of ``--repeats`` runs; each ratio is the median of the per-repeat
ratios (paired runs). Rates are taken on two clocks: process CPU time (the headline; robust
on a shared machine, and equal to wall time on an idle one since torch runs on one thread
here) and wall time. Prints a table and writes ``results/bench/wrapper.json``; the last
stdout line is that JSON. ``--profile`` adds a cProfile of the wrapper's step.

    python bench/wrapper.py              # a few minutes on 2 busy CPU cores
    python bench/wrapper.py --quick      # smoke run
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import statistics
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from _output import output_path
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecEnvWrapper
from tqdm import tqdm

from ruagent.data import collect_transitions
from ruagent.io import atomic_write_text
from ruagent.reward_models.ensemble import EnsembleRewardModel
from ruagent.wrappers import VecRewardUncertaintyWrapper

ENV_ID = "CartPole-v1"
N_ENVS = 8
RESULTS = Path(__file__).resolve().parents[1] / "results" / "bench" / "wrapper.json"


def fitted_ensemble(n_members: int, n_labels: int, epochs: int, seed: int) -> EnsembleRewardModel:
    env = gym.make(ENV_ID)
    model = EnsembleRewardModel(
        env.observation_space, env.action_space, n_members=n_members, hidden_sizes=(64, 64), seed=seed
    )
    model.fit(collect_transitions(env, n_labels, seed=seed), epochs=epochs, progress_bar=False)
    return model


def make_venv(model: EnsembleRewardModel, mode: str | None, seed: int):
    """8 x CartPole-v1 with Monitor, wrapped in ``mode`` (None: plain; ``"floor"``: :class:`FloorWrapper`)."""
    venv = make_vec_env(ENV_ID, n_envs=N_ENVS, seed=seed)
    if mode == "floor":
        return FloorWrapper(venv, model)
    return venv if mode is None else VecRewardUncertaintyWrapper(venv, model, mode=mode, seed=seed)


class FloorWrapper(VecEnvWrapper):
    """The least work per step any numpy implementation of the ``mean`` mode must do: a floor, not a product.

    The same features, folded forward, posterior moments and info values as the real wrapper,
    written straight through for this env (Box obs, Discrete action) with no validation, no
    terminal-observation swap, no modes and no episode bookkeeping. What it costs over plain
    stepping bounds from below what removing Python bookkeeping from the real wrapper can save.
    """

    def __init__(self, venv, model: EnsembleRewardModel) -> None:
        super().__init__(venv)
        self.model, self.folded, self.one_hot = model, model._folded(), np.eye(2, dtype=np.float32)

    def reset(self):
        self.last_obs = self.venv.reset()
        return self.last_obs

    def step_async(self, actions: np.ndarray) -> None:
        self.actions = actions
        self.venv.step_async(actions)

    def step_wait(self):
        obs, env_rewards, dones, infos = self.venv.step_wait()
        features = np.empty((N_ENVS, 10), dtype=np.float32)
        features[:, :4], features[:, 4:6], features[:, 6:] = self.last_obs, self.one_hot.take(self.actions, 0), obs
        members, nets = self.folded.forward_numpy(features, self.model.n_members)
        probs = self.model.member_probs
        mean = probs @ nets
        variance = probs @ np.square(nets - mean) + self.folded.novelty_variance(features)
        for info, row, m, s, r in zip(
            infos, np.ascontiguousarray(members.T), mean.tolist(), np.sqrt(variance).tolist(), env_rewards.tolist()
        ):
            info["env_reward"], info["reward_members"], info["reward_mean"], info["reward_std"] = r, row, m, s
        self.last_obs = obs
        return obs, mean.astype(np.float32), dones, infos


class Clocks:
    """Wall and process-CPU stopwatch; ``rates(n)`` gives n per second on each clock."""

    def __enter__(self) -> Clocks:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu

    def rates(self, n: int) -> dict[str, float]:
        return {"cpu": n / self.cpu, "wall": n / self.wall}


def env_steps_per_second(venv, n_steps: int, seed: int) -> dict[str, float]:
    """Env-steps/s (sub-env transitions) of ``n_steps`` vec steps with pre-drawn random actions."""
    actions = np.random.default_rng(seed).integers(0, 2, size=(n_steps, N_ENVS))
    venv.reset()
    for a in actions[:50]:  # warm-up: caches, first-call paths
        venv.step(a)
    with Clocks() as clocks:
        for a in actions:
            venv.step(a)
    venv.close()
    return clocks.rates(n_steps * N_ENVS)


def ppo_steps_per_second(venv, timesteps: int, n_steps: int, seed: int) -> dict[str, float]:
    """Env-steps/s of ``PPO.learn`` (collection and updates) over ``timesteps``."""
    agent = PPO("MlpPolicy", venv, n_steps=n_steps, seed=seed, device="cpu")
    agent.learn(N_ENVS * n_steps)  # warm-up rollout and update
    with Clocks() as clocks:
        agent.learn(timesteps, reset_num_timesteps=False)
    agent.env.close()
    return clocks.rates(timesteps)


def profile_wrapper_step(model: EnsembleRewardModel, mode: str, n_steps: int, top: int = 14) -> str:
    venv = make_venv(model, mode, seed=0)
    actions = np.random.default_rng(0).integers(0, 2, size=(n_steps, N_ENVS))
    venv.reset()
    profiler = cProfile.Profile()
    profiler.enable()
    for a in actions:
        venv.step(a)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def interleaved(measure, modes: list[str | None], repeats: int, desc: str) -> dict[str | None, list[dict]]:
    """Run every arm once per repeat, rotating their order, so drifting machine load hits all arms."""
    runs: dict[str | None, list[dict]] = {mode: [] for mode in modes}
    for repeat in tqdm(range(repeats), desc=desc, file=sys.stderr):
        for mode in modes[repeat % len(modes) :] + modes[: repeat % len(modes)]:
            runs[mode].append(measure(mode, repeat))
    return runs


def summarise(runs: dict[str | None, list[dict]], mode: str, clock: str) -> dict[str, float]:
    """Median rates of plain and ``mode``, and the median of their per-repeat ratios."""
    plain, wrapped = runs[None], runs[mode]
    return {
        "plain": statistics.median(run[clock] for run in plain),
        "wrapper": statistics.median(run[clock] for run in wrapped),
        "ratio": statistics.median(w[clock] / p[clock] for w, p in zip(wrapped, plain)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--env-steps", type=int, default=3000, help="vec steps per env-stepping run")
    # 16,384: with 4,096-step runs the same code measured 0.89 to 0.95 from run to run
    parser.add_argument("--ppo-timesteps", type=int, default=16384, help="env steps per PPO run")
    parser.add_argument("--ppo-n-steps", type=int, default=256, help="PPO n_steps per env (x8 envs per rollout)")
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the wrapper's step")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check the script runs")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON path (default results/bench/wrapper.json; with --quick bench/results/)")
    args = parser.parse_args()
    args.out = output_path(RESULTS, args.quick, args.out)
    # one torch thread: both arms alike, no oversubscription on a shared machine, CPU time = wall time when idle
    torch.set_num_threads(1)
    if args.quick:
        args.repeats, args.env_steps, args.ppo_timesteps, args.ppo_n_steps = 3, 200, 2048, 64

    model = fitted_ensemble(args.members, n_labels=2000, epochs=20, seed=0)
    stepping = interleaved(
        lambda mode, r: env_steps_per_second(make_venv(model, mode, r), args.env_steps, seed=r),
        [None, "mean", "cvar", "floor"],
        args.repeats,
        "env stepping",
    )
    ppo = interleaved(
        lambda mode, r: ppo_steps_per_second(make_venv(model, mode, r), args.ppo_timesteps, args.ppo_n_steps, seed=r),
        [None, "mean"],
        args.repeats,
        "PPO learn",
    )
    results = {
        "env_id": ENV_ID,
        "n_envs": N_ENVS,
        "n_members": args.members,
        "hidden_sizes": [64, 64],
        "repeats": args.repeats,
        "headline_clock": "cpu",
    }
    rows = (
        ("vec stepping, mean", "env_steps_mean", stepping, "mean", 0.65),
        ("vec stepping, cvar", "env_steps_cvar", stepping, "cvar", 0.65),
        ("PPO learn, mean", "ppo_mean", ppo, "mean", 0.95),
    )
    for _, name, runs, mode, _ in rows:
        for clock in ("cpu", "wall"):
            results[f"{name}_per_s_{clock}"] = summarise(runs, mode, clock)
    results["wrapper_vs_plain"] = results["env_steps_mean_per_s_cpu"]["ratio"]
    results["wrapper_cvar_vs_plain"] = results["env_steps_cvar_per_s_cpu"]["ratio"]
    results["ppo_wrapper_vs_ppo"] = results["ppo_mean_per_s_cpu"]["ratio"]
    results["wall_clock"] = {
        "wrapper_vs_plain": results["env_steps_mean_per_s_wall"]["ratio"],
        "wrapper_cvar_vs_plain": results["env_steps_cvar_per_s_wall"]["ratio"],
        "ppo_wrapper_vs_ppo": results["ppo_mean_per_s_wall"]["ratio"],
    }
    results["floor_vs_plain"] = summarise(stepping, "floor", "cpu")
    for mode in ("mean", "cvar", "floor"):
        steps = results[f"env_steps_{mode}_per_s_cpu"] if mode != "floor" else results["floor_vs_plain"]
        results[f"wrapper_{mode}_step_overhead_us"] = 1e6 * N_ENVS * (1 / steps["wrapper"] - 1 / steps["plain"])
    results["targets"] = {"wrapper_vs_plain": 0.65, "ppo_wrapper_vs_ppo": 0.95, "wrapper_step_overhead_us": 40.0}
    results["settings"] = {**vars(args), "out": str(args.out)}
    results["machine"] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0],
    }
    print(
        f"\n{ENV_ID} x {N_ENVS} (DummyVecEnv + Monitor), {args.members}-member 64x64 ensemble; "
        f"medians of {args.repeats} interleaved repeats"
    )
    print(f"{'env-steps/s':22}{'clock':>6}{'plain':>10}{'wrapper':>10}{'ratio':>8}{'target':>8}")
    for label, name, _, _, target in rows:
        for clock in ("cpu", "wall"):
            row = results[f"{name}_per_s_{clock}"]
            print(
                f"{label:22}{clock:>6}{row['plain']:>10,.0f}{row['wrapper']:>10,.0f}{row['ratio']:>7.2f}x{target:>7.2f}x"
            )
    for mode in ("mean", "cvar"):
        print(f"wrapper overhead per vec step ({mode}): {results[f'wrapper_{mode}_step_overhead_us']:.0f} µs CPU")
    print(
        f"floor (same posterior, no bookkeeping; see FloorWrapper): {results['wrapper_floor_step_overhead_us']:.0f} µs "
        f"CPU per vec step, {results['floor_vs_plain']['ratio']:.2f}x plain"
    )
    if args.profile:
        print(profile_wrapper_step(model, "cvar", args.env_steps))
    atomic_write_text(args.out, json.dumps(results, indent=2) + "\n")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
