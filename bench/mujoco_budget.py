"""Seconds per env step of the MuJoCo agents, and what a CPU budget buys (needs the mujoco extra).

Times, on ``ruagent/SpeedLimitCheetah-test-v0`` (HalfCheetah-v5's dynamics), with SB3's default
hyperparameters (SAC: batch 256, one gradient step per env step, learning_starts 100; PPO:
n_steps 1024) and torch on one thread:

- ``sac_oracle``: SB3 SAC on the env's true reward (the oracle, B-Pref's normaliser);
- ``sac_mean``: SAC through ``VecRewardUncertaintyWrapper(mode="mean")`` (one posterior call a step);
- ``risksac_cvar``: RiskSAC, K members, cvar(0.1), relabelling every sampled batch;
- ``riskppo_cvar``: RiskPPO, K members, cvar(0.1);

each for ``--steps`` env steps (``--ppo-steps`` for RiskPPO), the posterior a K-member
:class:`~ruagent.EnsembleRewardModel` (``--family ensemble``, the transition features) or
:class:`~ruagent.BayesianLinearRewardModel` on the env's reward_features (``--family linear``),
fitted on 2,000 random train-variant labels. CPU seconds of this process are the budget's unit
(a worker-hour is 3,600 of them); wall seconds depend on the machine's load and are reported
beside them. Then: the env steps per run that ``--budget-hours`` buy for ``--runs`` runs with the
mix of agents given by ``--mix`` (agent=runs, ...).

    python bench/mujoco_budget.py [--steps 2000] [--ppo-steps 4096] [--members 10] [--family ensemble]
                                  [--budget-hours 12] [--mix sac_oracle=15,risksac_cvar=20,sac_mean=10,...]

Last stdout line: the results as JSON (``s_per_step_cpu``, ``s_per_step_wall`` per agent,
``steps_per_run``); writes bench/results/mujoco_budget.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym
import torch
from stable_baselines3 import SAC
from stable_baselines3.common.env_util import make_vec_env

import ruagent
from ruagent.agents import RiskPPO, RiskSAC
from ruagent.io import atomic_write
from ruagent.wrappers import VecRewardUncertaintyWrapper

RESULTS = Path(__file__).resolve().parent / "results" / "mujoco_budget.json"
ENV_ID = "ruagent/SpeedLimitCheetah-v0"
AGENTS = ("sac_oracle", "sac_mean", "risksac_cvar", "riskppo_cvar")
#: runs of each agent in issue 16's MuJoCo experiments: SpeedLimitCheetah (oracle, mean, K=1, cvar SAC and
#: cvar PPO over 5 seeds) and preference RL on HalfCheetah-v5 and Hopper-v5 (preference agent and oracle, 5 seeds)
DEFAULT_MIX = "sac_oracle=15,risksac_cvar=25,riskppo_cvar=5"


def posterior(family: str, members: int, seed: int = 0):
    env = gym.make(ENV_ID, variant="train")
    labels = ruagent.collect_transitions(env, 2000, seed=seed)
    if family == "linear":
        model = ruagent.BayesianLinearRewardModel(env.observation_space, env.action_space, n_members=members,
                                                  features=env.unwrapped.reward_features, seed=seed)
    else:
        model = ruagent.EnsembleRewardModel(env.observation_space, env.action_space, n_members=members, seed=seed)
    model.fit(labels, env=env, progress_bar=False)
    return model


def time_agent(name: str, model_posterior, steps: int, seed: int = 0) -> dict[str, float]:
    venv = make_vec_env(ENV_ID, n_envs=1, seed=seed, env_kwargs={"variant": "test"})
    if name != "sac_oracle":
        venv = VecRewardUncertaintyWrapper(venv, model_posterior, mode="mean")
    if name in ("sac_oracle", "sac_mean"):
        agent = SAC("MlpPolicy", venv, seed=seed, device="cpu", buffer_size=max(steps, 1000))
    elif name == "risksac_cvar":
        agent = RiskSAC("MlpPolicy", venv, seed=seed, device="cpu", buffer_size=max(steps, 1000), risk="cvar",
                        risk_kwargs={"alpha": 0.1})
    else:
        agent = RiskPPO("MlpPolicy", venv, seed=seed, device="cpu", n_steps=min(1024, steps), risk="cvar",
                        risk_kwargs={"alpha": 0.1})
    start, start_cpu = time.perf_counter(), time.process_time()
    agent.learn(steps)
    return {"s_per_step_wall": (time.perf_counter() - start) / steps,
            "s_per_step_cpu": (time.process_time() - start_cpu) / steps}


def parse_mix(text: str) -> dict[str, int]:
    mix = {}
    for part in filter(None, text.split(",")):
        name, _, runs = part.partition("=")
        if name not in AGENTS or not runs.isdigit():
            raise SystemExit(f"--mix: {part!r} is not agent=runs with agent one of {AGENTS}")
        mix[name] = int(runs)
    return mix


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="env steps per timed SAC/RiskSAC run")
    parser.add_argument("--ppo-steps", type=int, default=4096, help="env steps of the timed RiskPPO run")
    parser.add_argument("--members", type=int, default=10, help="K, members of the reward posterior")
    parser.add_argument("--family", choices=("ensemble", "linear"), default="ensemble")
    parser.add_argument("--budget-hours", type=float, default=12.0, help="CPU hours (worker-hours) to plan for")
    parser.add_argument("--mix", default=DEFAULT_MIX, help="runs of each agent in the plan (agent=runs,...); RiskPPO "
                        "runs get 10x the SAC steps (on-policy needs more samples)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    mix = parse_mix(args.mix)
    torch.set_num_threads(1)
    model = posterior(args.family, args.members)
    timings = {name: time_agent(name, model, args.ppo_steps if name == "riskppo_cvar" else args.steps)
               for name in AGENTS}
    # cost of one "SAC-step unit" of the plan: RiskPPO runs take 10 env steps per SAC step
    cpu_per_unit = sum(runs * timings[name]["s_per_step_cpu"] * (10 if name == "riskppo_cvar" else 1)
                       for name, runs in mix.items())
    steps_per_run = int(args.budget_hours * 3600 / cpu_per_unit) if cpu_per_unit else 0
    result = {"benchmark": "mujoco_budget", "env": ENV_ID + " (variant test)", "family": args.family,
              "members": args.members, "timed_steps": args.steps, "timed_ppo_steps": args.ppo_steps,
              "timings": timings, "mix": mix, "budget_cpu_hours": args.budget_hours,
              "steps_per_run": steps_per_run, "riskppo_steps_per_run": 10 * steps_per_run,
              "machine": platform.platform(), "cpus": os.cpu_count()}
    for name, t in timings.items():
        print(f"{name:>14}: {t['s_per_step_cpu'] * 1e3:6.2f} ms CPU/step ({t['s_per_step_wall'] * 1e3:6.2f} ms wall)")
    print(f"{args.budget_hours:g} CPU-hours for {mix}: {steps_per_run:,} SAC steps per run "
          f"({10 * steps_per_run:,} for RiskPPO), before evaluation and label collection")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
