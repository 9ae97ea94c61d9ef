"""Preference-based RL on HalfCheetah-v5 and Hopper-v5 from at most 1,000 synthetic preferences (issue 16).

    python bench/pbrl_mujoco.py [--envs HalfCheetah-v5 Hopper-v5] [--seeds 0 1 2] [--timesteps 50000]
                                [--set KEY=VALUE ...] [--out results/pbrl-mujoco] [--max-hours H] [--report-only]
    python bench/pbrl_mujoco.py --quick   # seed 0, 300 steps, 12 preferences: checks it runs (bench/results/)

For each env and seed this runs ``python train.py --config pbrl_mujoco --env <id> --seed <s>`` exactly as a
user would (the preset's header says what it trains: RiskSAC with ``risk="mean"`` over a K = 10 ensemble
learnt from preferences, PEBBLE's relabelled replay buffer, and SAC on the true reward at the same budget)
and keeps the run's evaluation as ``<out>/<env>/seed<N>.json``: per agent the true return and episode
length of each evaluation episode, the preferences answered, the steps, and the run's CPU and wall seconds.
Finished runs are skipped, so the command is resumable; ``--max-hours`` starts no run after that many hours,
and SIGTERM (``kill <pid>``) lets the running one finish and starts no other.
``--control`` trains, for each env and seed, the control that separates the learnt reward from the agent:
RiskSAC exactly as the PbRL agent (``risk="mean"``, K = 10 critic heads, the preset's hyperparameters and
budget) but with every head trained on the env's true reward (``member_rewards="env"``), evaluated on the
same episodes as train.py evaluates; kept as ``<out>/<env>/control/seed<N>.json``. PbRL / control is then the
learnt reward's effect, control / SAC the heads' (about 17 CPU-minutes per env and seed).
The summary (B-Pref's normalised return, IQM over seeds with a bootstrap interval) is
:func:`ruagent.experiments.pbrl.summarise_pbrl`; the README block is rendered from the same files by
``python -m ruagent.experiments.render``. The last stdout line is the summary as JSON. Needs the mujoco
extra (``pip install -e ".[mujoco]"``).

Budget (issue 16: about 12 worker-hours for all its MuJoCo runs on 2 cores): a run trains two agents for
50,000 steps each, about 45 CPU-minutes here (SAC about 0.017 CPU-seconds a step, RiskSAC with K = 10 and
relabelling about 0.02, plus the preference rounds), so 3 seeds x 2 envs take about 4.5 worker-hours beside
SpeedLimitCheetah's 5 seeds x 5 agents (about 7).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from _output import output_path

from ruagent.experiments.pbrl import CONTROL_AGENT, ORACLE_AGENT, PBRL_AGENT, read_controls, read_runs, summarise_pbrl
from ruagent.io import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
ENVS = ("HalfCheetah-v5", "Hopper-v5")
#: a --quick run: steps per agent, and train.py overrides that make every stage (preference rounds, SAC
#: updates, evaluation) happen within them; given before the command's own --set items, which win
QUICK_TIMESTEPS = 300
QUICK_OVERRIDES = ["labels.budget=12", "labels.update_every=100", "labels.segment_length=10", "eval.episodes=1",
                   "agent.hyperparams={buffer_size: 1000, learning_starts: 50}"]


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_one(env_id: str, seed: int, out: Path, timesteps: int | None, overrides: list[str] | None = None) -> Path:
    """One train.py run in a scratch runs folder; its evaluation -> ``<out>/<env_id>/seed<seed>.json``.
    ``overrides``: train.py ``--set`` items (``labels.budget=200``), recorded in the file's command."""
    target = out / env_id / f"seed{seed}.json"
    if target.is_file():
        return target
    command = [sys.executable, str(ROOT / "train.py"), "--config", "pbrl_mujoco", "--env", env_id, "--seed", str(seed),
               "--name", "run", "--no-progress"]
    if timesteps is not None:
        command += ["--total-timesteps", str(timesteps)]
    if overrides:
        command += ["--set", *overrides]
    with tempfile.TemporaryDirectory() as runs:
        started, cpu_before = time.perf_counter(), _children_cpu_seconds()
        environ = {**os.environ, "OMP_NUM_THREADS": "1", "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
        done = subprocess.run([*command, "--runs-dir", runs], cwd=ROOT, capture_output=True, text=True, env=environ)
        wall, cpu = time.perf_counter() - started, _children_cpu_seconds() - cpu_before
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
        run = Path(runs) / "run"
        evaluation = json.loads((run / "eval.json").read_text())
        with np.load(run / "labels" / "preferences.npz", allow_pickle=False) as session:
            preferences = int(session["labels"].shape[0])
        steps = int(yaml.safe_load((run / "config.yaml").read_text())["agent"]["total_timesteps"])
    record = {
        "env_id": env_id, "seed": seed, "command": " ".join(["python", "train.py", *command[2:]]),
        "preferences": preferences,
        "timesteps": steps, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
        "agents": {
            agent: {key: evaluation["agents"][agent]["per_episode"][key] for key in ("true_return", "episode_length")}
            for agent in (PBRL_AGENT, ORACLE_AGENT)
        },
    }
    atomic_write_text(target, json.dumps(record, indent=1) + "\n")
    return target


def run_control(env_id: str, seed: int, out: Path, timesteps: int | None, overrides: list[str] | None = None) -> Path:
    """The PbRL agent's algorithm and settings with every critic head on the env's true reward, in this
    process; its evaluation (the episodes train.py evaluates: the run's seed, ``eval.episodes``) ->
    ``<out>/<env_id>/control/seed<seed>.json``."""
    from ruagent.cli import config as run_config
    from ruagent.cli import factory
    from ruagent.rollouts import run_episodes

    target = out / env_id / "control" / f"seed{seed}.json"
    if target.is_file():
        return target
    keys = [f"env.id={env_id}", f"seed={seed}", *([f"agent.total_timesteps={timesteps}"] if timesteps else []),
            *(overrides or [])]
    config = run_config.resolve("pbrl_mujoco", keys)
    agent = config["agent"]
    spec = factory.AgentSpec(CONTROL_AGENT, agent["algo"], (agent["risk"], {}), None, {})
    torch.set_num_threads(1)
    started, cpu_before = time.perf_counter(), time.process_time()
    venv = factory.make_deploy_vec_env(config, spec, None, seed)  # no posterior: the env's own reward
    kwargs = factory.agent_kwargs(config, spec, venv.observation_space)
    kwargs["replay_buffer_kwargs"] = {**kwargs.get("replay_buffer_kwargs", {}), "member_rewards": "env"}
    model = factory.algo_class(spec.algo)(env=venv, device="cpu", n_members=config["reward_model"]["n_members"],
                                          **kwargs)
    model.learn(agent["total_timesteps"])
    eval_env = factory.make_env(config, config["env"]["deploy_kwargs"])
    episodes = run_episodes(eval_env, model, config["eval"]["episodes"], seed=seed)
    eval_env.close()
    record = {
        "env_id": env_id, "seed": seed,
        "command": " ".join(["python", "bench/pbrl_mujoco.py", "--control", "--envs", env_id, "--seeds", str(seed),
                             *(["--timesteps", str(timesteps)] if timesteps else []),
                             *(["--set", *overrides] if overrides else [])]),
        "what": f"{spec.algo}, risk={agent['risk']}, {model.n_members} critic heads each trained on the env's true "
                "reward (member_rewards='env'), the pbrl_mujoco preset's hyperparameters",
        "timesteps": int(model.num_timesteps),
        "wall_s": round(time.perf_counter() - started, 1), "cpu_s": round(time.process_time() - cpu_before, 1),
        "agents": {CONTROL_AGENT: {"true_return": episodes.true_returns().tolist(),
                                   "episode_length": episodes.lengths().astype(float).tolist()}},
    }
    venv.close()
    atomic_write_text(target, json.dumps(record, indent=1) + "\n")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=list(ENVS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--timesteps", type=int, default=None, help="steps per agent (default: the preset's 50,000)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder (default results/pbrl-mujoco; with --quick under bench/results/)")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="train.py config overrides for every run (e.g. labels.budget=500)")
    parser.add_argument("--max-hours", type=float, default=None, help="start no run after this many hours")
    parser.add_argument("--control", action="store_true",
                        help="train the control instead: RiskSAC as the PbRL agent, every head on the true reward")
    parser.add_argument("--report-only", action="store_true", help="summarise the files already there; train nothing")
    parser.add_argument("--quick", action="store_true", help="seed 0 and tiny budgets, to check the script runs")
    args = parser.parse_args(argv)
    args.out = output_path(ROOT / "results" / "pbrl-mujoco", args.quick, args.out)
    if args.quick:
        args.seeds, args.timesteps, args.overrides = [0], QUICK_TIMESTEPS, [*QUICK_OVERRIDES, *args.overrides]
    if not args.report_only:
        deadline = None if args.max_hours is None else time.monotonic() + 3600.0 * args.max_hours
        stop = []  # SIGTERM (kill <pid>): finish the running train.py, start no other
        signal.signal(signal.SIGTERM, lambda signum, frame: stop.append(signum))
        # seed-major: an interrupted run has every env on its early seeds
        for seed, env_id in ((seed, env_id) for seed in args.seeds for env_id in args.envs):
            if stop or (deadline is not None and time.monotonic() > deadline):
                print(f"{'SIGTERM' if stop else '--max-hours'}: stopped; rerun the same command to continue",
                      flush=True)
                break
            path = (run_control if args.control else run_one)(env_id, seed, args.out, args.timesteps, args.overrides)
            print(f"done {path.relative_to(args.out)}", flush=True)
    controls = read_controls(args.out) if args.out.is_dir() else {}
    summary = {env_id: summarise_pbrl(records, controls.get(env_id))
               for env_id, records in (read_runs(args.out) if args.out.is_dir() else {}).items()}
    for env_id, entry in summary.items():
        for key in ("normalised_return", "pbrl_vs_control", "control_vs_oracle"):
            ratio = entry[key]
            print(f"{env_id}: {key} IQM "
                  + (f"{ratio['estimate']:.3f} [{ratio['low']:.3f}, {ratio['high']:.3f}]" if ratio else "n/a")
                  + f" (seeds {entry['seeds'] if key == 'normalised_return' else entry['control_seeds']})", flush=True)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
