"""``python evaluate.py RUN_DIR [RUN_DIR ...]``: score a run's agents by the truth.

For each agent of a run folder (``agents/<agent>/model.zip``, layout in
:mod:`ruagent.cli.run_dir`), in the deployment variant of the run's env:

- true return (the env's reward), proxy return (posterior mean), goodhart gap (proxy − true),
  regret against the oracle (the env's exact solver where it has one, else the run's
  ``oracle`` agent), side-effect rate, episode length;
- policy transfer: true return and side-effect rate in every other variant of the testbed.

For the run's posterior (:mod:`ruagent.cli.eval_posterior`): OOD AUROC of ``reward_std`` separating
deployment transitions never seen in the label data from the label data, and calibration (Gaussian
NLL, coverage of the central 50 % / 90 % intervals) on the held-out labels and on fresh deployment
labels, and the calibration report of :mod:`ruagent.calibration` (coverage and width of the members'
central intervals, NLL, spread and AUROC against held-out labels, per group: held-out, deployment,
hazard; ``plots/reliability.png``).

Every number has a 95 % bootstrap interval (:mod:`ruagent.metrics`). Results are printed as
rich tables, written to ``eval.json`` (schema ``ruagent.eval/1``, docs/evaluate.md) and drawn
in ``plots/``. Several runs are compared side by side; with ``--out DIR`` the comparison is
also written there.

Exit status: 0 done; 2 a run folder that cannot be evaluated (not a run, no finished agent, a bad
config.yaml, a corrupt file), said in one line before anything is computed; 1 a write that failed
for lack of space. Torch runs on the run config's ``torch_threads`` (default 1: the small networks
run fastest single-threaded, and a busy machine is not oversubscribed).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from rich.progress import Progress

from ruagent import metrics
from ruagent.cli import program_name
from ruagent.cli.config import ConfigError
from ruagent.cli.eval_format import AGENT_METRICS, BAR_METRICS, EVAL_SCHEMA
from ruagent.cli.eval_posterior import posterior_metrics
from ruagent.cli.run_dir import RunDir, RunFileError, RunNotFoundError
from ruagent.io import WriteError, atomic_write_text
from ruagent.rollouts import Episodes, run_episodes

__all__ = ["AGENT_METRICS", "EVAL_SCHEMA", "build_parser", "evaluate_run", "main"]



# ---------------------------------------------------------------------- loading
def _load_agent(run: RunDir, agent: str, config: dict[str, Any]) -> Any:
    """The run's saved ``agent``, loaded without unpickling anything from its zip.

    SB3's plain ``load`` would unpickle the spaces, schedules and policy class stored in
    ``model.zip`` (running whatever code the file names); the run's config describes the
    agent, so those come from a fresh model built from it instead.
    """
    from ruagent.cli import factory
    from ruagent.cli.checkpoints import is_complete_model_zip, load_without_unpickling

    specs = {spec.name: spec for spec in factory.agent_specs(config)}
    if agent not in specs:
        raise RunFileError(
            f"agent {agent!r} in {run.path} is not described by the run's config.yaml (agents: {sorted(specs)}); "
            "evaluate.py loads only agents the config describes, because loading an unknown SB3 zip would "
            "unpickle code from it"
        )
    spec = specs[agent]
    if not is_complete_model_zip(run.model_path(agent)):
        raise RunFileError(f"{run.model_path(agent)} is incomplete (not a whole SB3 zip with its 'data' entry); "
                           f"finish the agent with: python train.py --resume {run.path}")
    venv = factory.make_deploy_vec_env(config, spec, str(run.reward_model_path), config["seed"])
    algo = factory.algo_class(spec.algo)
    template = algo(env=venv, device="cpu", **factory.agent_kwargs(config, spec, venv.observation_space))
    return load_without_unpickling(algo, run.model_path(agent), template=template, device="cpu")


def _make_env(env_id: str, kwargs: dict[str, Any], config: dict[str, Any], **extra: Any) -> gym.Env:
    max_steps = config["env"].get("max_episode_steps")
    if max_steps is not None:
        extra.setdefault("max_episode_steps", max_steps)
    return gym.make(env_id, **kwargs, **extra)


def _variants(env_id: str, kwargs: dict[str, Any]) -> tuple[str | None, list[str]]:
    """(the variant ``gym.make(env_id, **kwargs)`` gives, the testbed's other variants); (None, []) for
    envs that are not ruagent testbeds."""
    from ruagent.envs.registration import ENV_IDS

    if env_id not in ENV_IDS:
        return None, []
    entry_point, default_kwargs, _ = ENV_IDS[env_id]
    current = kwargs.get("variant", default_kwargs.get("variant"))
    variants = [kw.get("variant") for ep, kw, _ in ENV_IDS.values() if ep == entry_point]
    return current, [v for v in dict.fromkeys(variants) if v is not None and v != current]


def _per_episode(episodes: Episodes, oracle_returns: np.ndarray | None) -> dict[str, list[float]]:
    """Raw per-episode values (kept in eval.json for pooling seeds and re-analysis)."""
    values = {
        "true_return": episodes.true_returns(),
        "proxy_return": episodes.proxy_returns(),
        "goodhart_gap": episodes.goodhart_gaps(),
        "side_effect_rate": episodes.side_effect_episodes(),
        "episode_length": episodes.lengths().astype(float),
    }
    if episodes.optimal_returns is not None:
        values["regret"] = episodes.optimal_returns - episodes.true_returns()
    elif oracle_returns is not None:
        values["regret"] = oracle_returns.mean() - episodes.true_returns()
    return {name: [float(v) for v in array] for name, array in values.items()}


def _agent_metrics(episodes: Episodes, oracle_returns: np.ndarray | None, seed: int) -> dict[str, Any]:
    found: dict[str, Any] = {
        "true_return": metrics.bootstrap_interval(episodes.true_returns(), seed=seed),
        "proxy_return": metrics.bootstrap_interval(episodes.proxy_returns(), seed=seed),
        "goodhart_gap": metrics.bootstrap_interval(episodes.goodhart_gaps(), seed=seed),
        "side_effect_rate": metrics.bootstrap_interval(episodes.side_effect_episodes(), seed=seed),
        "episode_length": metrics.bootstrap_interval(episodes.lengths().astype(float), seed=seed),
        "regret": None,
    }
    if episodes.optimal_returns is not None:  # exact solver: paired, per start state
        found["regret"] = metrics.bootstrap_interval(episodes.optimal_returns - episodes.true_returns(), seed=seed)
    elif oracle_returns is not None:
        found["regret"] = metrics.difference_interval(oracle_returns, episodes.true_returns(), seed=seed)
    return {name: None if value is None else value.to_dict() for name, value in found.items()}


# ---------------------------------------------------------------------- one run
def _roll_out_agents(
    run: RunDir, config: dict[str, Any], env: gym.Env, deploy_kwargs: dict[str, Any], reward_model: Any,
    n_episodes: int, seed: int, render_episodes: int, progress_bar: bool,
) -> tuple[dict[str, Episodes], dict[str, dict[str, Any]], dict[str, list], dict[str, list | None]]:
    """Each agent's deployment episodes (scored by the posterior, oracle solved), its transfer to
    the testbed's other variants, and rendered frames with agent positions for the plots."""
    env_id = env.spec.id
    _, transfer_variants = _variants(env_id, deploy_kwargs)
    rollouts, transfer, frames, positions = {}, {}, {}, {}
    agents = run.finished_agents()
    with Progress(disable=not progress_bar, transient=True) as progress:
        task = progress.add_task("evaluating", total=len(agents) * (1 + len(transfer_variants)))
        for agent in agents:
            model = _load_agent(run, agent, config)
            progress.update(task, description=f"{agent}: {env_id} {deploy_kwargs or ''}")
            rollouts[agent] = run_episodes(env, model, n_episodes, reward_model=reward_model, seed=seed,
                                           solve_optimal=True)
            progress.advance(task)
            transfer[agent] = {}
            for variant in transfer_variants:
                progress.update(task, description=f"{agent}: transfer to {variant}")
                variant_env = _make_env(env_id, {**deploy_kwargs, "variant": variant}, config)
                moved = run_episodes(variant_env, model, n_episodes, seed=seed)
                variant_env.close()
                transfer[agent][variant] = {
                    "true_return": metrics.bootstrap_interval(moved.true_returns(), seed=seed).to_dict(),
                    "side_effect_rate": metrics.bootstrap_interval(moved.side_effect_episodes(), seed=seed).to_dict(),
                }
                progress.advance(task)
            if render_episodes:
                frames[agent], positions[agent] = _render(env_id, deploy_kwargs, config, model, render_episodes, seed)
    return rollouts, transfer, frames, positions


def evaluate_run(
    run_dir: str | os.PathLike,
    episodes: int | None = None,
    env_id: str | None = None,
    seed: int = 0,
    plots: bool = True,
    write: bool = True,
    render_episodes: int = 2,
    progress_bar: bool = True,
) -> dict[str, Any]:
    """Evaluate every finished agent of a run folder; returns the eval.json content.

    :param run_dir: a folder made by ``train.py`` (config.yaml, reward_model.pt, agents/*/model.zip).
    :param episodes: evaluation episodes per agent and env (default: the run's ``eval.episodes``).
    :param env_id: evaluate in this env id (no variant kwargs) instead of the run's deployment variant.
    :param seed: seed of the evaluation episodes and bootstrap resampling.
    :param plots: draw ``plots/*.png``.
    :param write: write ``eval.json`` (atomically).
    :param render_episodes: episodes per agent rendered for the trajectory plot (0: none).
    :param progress_bar: show a progress bar.
    """
    from ruagent import load_reward_model

    run, config = _open_run(run_dir)
    n_episodes = int(episodes or config["eval"]["episodes"])
    deploy_id = env_id or config["env"]["id"]
    deploy_kwargs = {} if env_id else dict(config["env"]["deploy_kwargs"])
    env = _make_env(deploy_id, deploy_kwargs, config)
    reward_model = load_reward_model(run.reward_model_path, env=env)
    rollouts, transfer, frames, positions = _roll_out_agents(
        run, config, env, deploy_kwargs, reward_model, n_episodes, seed, render_episodes if plots else 0, progress_bar
    )
    oracle = rollouts.get("oracle")
    oracle_returns = oracle.true_returns() if oracle is not None else None
    oracle_source = (
        "solver" if any(e.optimal_returns is not None for e in rollouts.values())
        else "oracle agent" if oracle is not None else None
    )
    result: dict[str, Any] = {
        "schema": EVAL_SCHEMA,
        "run": str(run.path),
        "training_seed": config["seed"],
        "config_digest": _config_digest(config),
        "env": {"id": deploy_id, "kwargs": deploy_kwargs, "label_kwargs": config["env"]["label_kwargs"]},
        "episodes": n_episodes,
        "seed": seed,
        "confidence_level": metrics.CONFIDENCE_LEVEL,
        "oracle": {"source": oracle_source},
        "agents": {
            agent: {
                "metrics": _agent_metrics(episodes_, oracle_returns if agent != "oracle" else None, seed),
                "per_episode": _per_episode(episodes_, oracle_returns if agent != "oracle" else None),
                "transfer": transfer[agent],
            }
            for agent, episodes_ in rollouts.items()
        },
        "posterior": posterior_metrics(run, config, env, reward_model, list(rollouts.values()), n_episodes, seed),
        "plots": [],
    }
    env.close()
    if plots:
        result["plots"] = [str(p) for p in _draw(run, result, frames, positions)]
    if write:
        atomic_write_text(run.eval_path, json.dumps(result, indent=2) + "\n")
    return result


def _follows_the_agent(env: gym.Env) -> bool:
    """Whether ``env``'s camera tracks the agent (Gymnasium's MuJoCo envs and their subclasses): every frame
    then shows the agent in the same place, so a trajectory overlay says nothing, and software rendering
    costs about 0.1 s a frame on a CPU machine (minutes per evaluation)."""
    return any(cls.__module__.startswith("gymnasium.envs.mujoco") for cls in type(env.unwrapped).__mro__)


def _render(env_id: str, kwargs: dict, config: dict, model: Any, n: int, seed: int) -> tuple[list, list | None]:
    """(frames, agent pixel positions or None) of ``n`` rendered episodes; ([], None) without rgb_array
    frames or where the camera follows the agent (no trajectory plot)."""
    try:
        env = _make_env(env_id, kwargs, config, render_mode="rgb_array")
    except Exception:  # an env without rgb_array rendering simply gets no trajectory plot
        return [], None
    try:
        if _follows_the_agent(env):
            return [], None
        rendered = run_episodes(env, model, n, seed=seed, render=True)
    except Exception:  # a renderer that fails mid-episode (no GL context) costs the plot, not the evaluation
        return [], None
    finally:
        env.close()
    return rendered.frames or [], rendered.positions


def _tensorboard_dirs(run: RunDir, agents: Sequence[str]) -> dict[str, Path]:
    """Agent -> its newest SB3 TensorBoard folder (``tensorboard/<agent>_<n>``)."""
    found = {}
    for agent in agents:
        numbered = [(int(p.name.rsplit("_", 1)[1]), p) for p in run.tensorboard_dir.glob(f"{agent}_*")
                    if p.name.rsplit("_", 1)[1].isdigit()]
        if numbered:
            found[agent] = max(numbered)[1]
    return found


def _draw(
    run: RunDir, result: dict[str, Any], frames: dict[str, list], positions: dict[str, list | None]
) -> list[Path]:
    from ruagent import plots

    drawn = [plots.plot_metric_bars(
        {agent: entry["metrics"] for agent, entry in result["agents"].items()}, BAR_METRICS,
        run.plots_dir / "metrics.png", title=f"{run.path.name}: {result['env']['id']} {result['env']['kwargs'] or ''}",
    )]
    transfer = {f"{agent}@{variant}": values for agent, entry in result["agents"].items()
                for variant, values in entry["transfer"].items()}
    if transfer:
        drawn.append(plots.plot_metric_bars(transfer, ("true_return", "side_effect_rate"),
                                            run.plots_dir / "transfer.png", title="policy transfer to other variants"))
    report = result["posterior"].get("calibration_report")
    if report is not None:
        from ruagent.calibration import plot_reliability

        drawn.append(plot_reliability(report, run.plots_dir / "reliability.png",
                                      title=f"{run.path.name}: reward-posterior reliability"))
    if any(frames.values()):
        drawn.append(plots.plot_trajectories(frames, run.plots_dir / "trajectories.png", positions=positions))
    curve = plots.plot_goodhart_curves(_tensorboard_dirs(run, list(result["agents"])), run.plots_dir / "goodhart.png")
    if curve is not None:
        drawn.append(curve)
    return drawn


# ---------------------------------------------------------------------- several runs
def _config_digest(config: dict[str, Any]) -> str:
    """Hash of the config without what differs between seeds of one experiment."""
    from ruagent.cli import config as config_lib

    same = {k: v for k, v in config.items() if k not in ("name", "runs_dir", "seed", "device", "progress_bar")}
    return hashlib.sha256(config_lib.dump(same).encode()).hexdigest()[:16]


def _open_run(run_dir: str | os.PathLike) -> tuple[RunDir, dict[str, Any]]:
    """The run folder and its config, checked for what evaluation needs (one clear error each).

    :raises RunNotFoundError: not a run folder, or no finished agent.
    :raises ConfigError: its config.yaml is not valid.
    """
    run = RunDir.open(run_dir)
    config = run.read_config()
    if not run.finished_agents():
        raise RunNotFoundError(f"{run.path} has no finished agent (agents/<name>/model.zip); train one first, or "
                               f"finish this run with: python train.py --resume {run.path}")
    return run, config


# ---------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=program_name("evaluate.py"),
        description="Score a run's agents by the env's true reward (regret, goodhart gap, side effects, transfer) "
        "and its posterior (OOD AUROC, calibration), with 95% bootstrap intervals. Writes RUN_DIR/eval.json "
        "and RUN_DIR/plots/*.png.",
        epilog="Docs: docs/evaluate.md (metrics, eval.json schema, TensorBoard tags).",
    )
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR",
                        help="run folder(s) made by train.py; several are compared side by side")
    parser.add_argument("--episodes", type=int, default=None, metavar="N",
                        help="episodes per agent and env (default: the run's eval.episodes)")
    parser.add_argument("--env", default=None, metavar="ID",
                        help="evaluate in this env id instead of the run's deployment variant")
    parser.add_argument("--seed", type=int, default=0, metavar="S",
                        help="seed of the evaluation episodes and the bootstrap (default: %(default)s)")
    parser.add_argument("--render-episodes", type=int, default=2, metavar="N",
                        help="episodes per agent drawn in plots/trajectories.png (default: %(default)s; 0: none)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="also write the comparison (comparison.json, comparison.png) to this folder")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.episodes is not None and args.episodes < 1:
        parser.error(f"--episodes must be >= 1, got {args.episodes}")
    from ruagent.reward_models.base import RewardModelFileError, SpaceMismatchError

    bad_input = (ConfigError, RunNotFoundError, RunFileError, RewardModelFileError, SpaceMismatchError)
    try:
        configs = []
        for run_dir in args.runs:  # every run is checked before any is evaluated
            if not (Path(run_dir) / RunDir.CONFIG).is_file():
                raise RunNotFoundError(f"{run_dir} is not a run folder (no {RunDir.CONFIG}); pass a folder made by "
                                       "train.py")
            configs.append(_open_run(run_dir)[1])
        if args.env is not None:
            import ruagent  # noqa: F401  (registers the testbeds)

            if args.env not in gym.registry:
                raise ConfigError(f"--env {args.env!r} is not a registered Gymnasium env")
        threads = configs[0]["torch_threads"]
        if threads:
            import torch

            torch.set_num_threads(threads)  # as train.py does: small networks, a shared machine
        results = [evaluate_run(run_dir, episodes=args.episodes, env_id=args.env, seed=args.seed,
                                plots=not args.no_plots, render_episodes=args.render_episodes,
                                progress_bar=not args.no_progress) for run_dir in args.runs]
        from ruagent.cli.compare import pool_seeds, print_results, write_comparison

        pooled = pool_seeds(results, seed=args.seed)
        print_results(results, pooled)
        if args.out is not None:
            write_comparison(results, pooled, args.out, plots=not args.no_plots)
    except bad_input as exc:
        parser.error(str(exc))  # one line, exit status 2
    except WriteError as exc:
        parser.exit(1, f"{parser.prog}: error: {exc}\n")
    for result in results:
        print(f"wrote {Path(result['run']) / 'eval.json'}")
    return 0
