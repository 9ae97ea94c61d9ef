"""``train.py``: the command line for ruagent experiments.

Stages (the first argument; default ``all``)::

    train.py [all]        labels -> posterior -> agents -> evaluation (the embedded default: LavaWorld)
    train.py fit-reward   labels in the training variant -> reward_model.pt (reuse it anywhere)
    train.py agent --reward-model PATH    agents trained through an existing posterior
    train.py sweep --config SWEEP.yaml    a grid of such runs on Ray Tune (ruagent.cli.sweep, docs/sweeps.md)

Common options: ``--config NAME|FILE``, ``--set key=value ...`` (dotted keys of the config
schema, values parsed with yaml.safe_load), ``--seed``, ``--device``, ``--n-envs``,
``--vec-env``, ``--algo``, ``--name``, ``--force``, ``--resume RUN_DIR``. Config errors exit
with status 2 before anything is trained.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from ruagent.cli import config as config_lib
from ruagent.cli.config import ConfigError
from ruagent.cli.run_dir import (
    RunDir,
    RunExistsError,
    RunLockedError,
    RunNotFoundError,
    default_run_name,
    run_path,
    validate_run_name,
)

__all__ = ["STAGES", "build_parser", "main", "run_stages"]

STAGES = {
    "all": "labels, posterior fit, agent training and evaluation (the default)",
    "fit-reward": "labels in the training variant and the posterior fit -> RUN/reward_model.pt",
    "agent": "train the agents through an existing posterior (--reward-model PATH)",
}
#: flag -> config key it sets (so `--seed 3` is `--set seed=3`)
_FLAG_KEYS = {
    "seed": "seed", "device": "device", "n_envs": "env.n_envs", "vec_env": "env.vec_env", "algo": "agent.algo",
    "env": "env.id", "name": "name", "runs_dir": "runs_dir", "total_timesteps": "agent.total_timesteps",
    "labels": "labels.kind", "budget": "labels.budget", "query": "labels.query", "labeller": "labels.labeller",
    "initial_fraction": "labels.initial_fraction",
}


def _flag_help(key: str, text: str | None = None) -> str:
    option = config_lib.SCHEMA[key]
    return f"{text or option.help} (config key {key}, default {option.default!r})"


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("configuration")
    group.add_argument("--config", metavar="NAME|FILE",
                       help=f"preset ({', '.join(config_lib.preset_names())}) or YAML file; default: built-in "
                            "LavaWorld experiment")
    group.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                       help="override config keys, e.g. --set agent.risk=cvar agent.alpha=0.1 (see below)")
    group.add_argument("--seed", type=int, help=_flag_help("seed"))
    group.add_argument("--device", help=_flag_help("device"))
    group.add_argument("--env", help=_flag_help("env.id"))
    group.add_argument("--algo", choices=config_lib.AGENT_ALGOS, help=_flag_help("agent.algo"))
    group.add_argument("--total-timesteps", type=int, help=_flag_help("agent.total_timesteps"))
    group.add_argument("--n-envs", type=int, help=_flag_help("env.n_envs"))
    group.add_argument("--vec-env", choices=("dummy", "subproc"), help=_flag_help("env.vec_env"))
    labels = common.add_argument_group("labels")
    for flag, key in (("--labels", "labels.kind"), ("--query", "labels.query"), ("--labeller", "labels.labeller")):
        labels.add_argument(flag, choices=config_lib.SCHEMA[key].choices, help=_flag_help(key))
    labels.add_argument("--budget", type=int, help=_flag_help("labels.budget"))
    labels.add_argument("--initial-fraction", type=float, metavar="FRACTION",
                        help=_flag_help("labels.initial_fraction"))
    group.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    run = common.add_argument_group("run folder")
    run.add_argument("--name", help=_flag_help("name"))
    run.add_argument("--runs-dir", help=_flag_help("runs_dir"))
    run.add_argument("--force", action="store_true",
                     help="replace an existing run folder of the same name, if train.py made it (it holds a "
                          ".ruagent-run marker) and no live process is writing it")
    run.add_argument("--resume", metavar="RUN_DIR",
                     help="continue a killed run from its last checkpoint (its config.yaml is used as is); refused "
                          "while another process is writing the run")
    run.add_argument("--no-progress", action="store_true", help="no progress bars (config key progress_bar)")
    return common


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser: one sub-command per stage, all sharing the common options."""
    epilog = config_lib.help_text()
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="train.py", formatter_class=formatter, epilog=epilog,
        description="Fit a posterior over reward functions from labels in the training variant of an env, train "
                    "risk-averse and risk-neutral agents through it in the deployment variant, and evaluate them "
                    "by the env's true reward. With no arguments: the built-in LavaWorld experiment. "
                    "Each stage's options: train.py STAGE --help (e.g. train.py all --help).",
    )
    subparsers = parser.add_subparsers(dest="stage", metavar="STAGE",
                                       help="; ".join(f"{name}: {text}" for name, text in STAGES.items()))
    common = _common_options()
    for stage, text in STAGES.items():
        sub = subparsers.add_parser(stage, parents=[common], help=text, description=text, epilog=epilog,
                                    formatter_class=formatter)
        if stage == "agent":
            sub.add_argument("--reward-model", metavar="PATH",
                             help="reward_model.pt or a run folder holding one (required unless --resume)")
        sub.set_defaults(stage_parser=sub)  # errors print this stage's usage
    # listed for --help only: main() hands `sweep` and its own options to ruagent.cli.sweep
    subparsers.add_parser("sweep", add_help=False, help="a grid of runs as Ray Tune trials, pooled over seeds "
                          "(train.py sweep --help; needs pip install \"ruagent[ray]\")")
    return parser


def _parse(argv: Sequence[str]) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    parser = build_parser()
    argv = list(argv)
    # `train.py --seed 1` means `train.py all --seed 1`; top-level --help stays the overview
    if not argv or (argv[0] not in STAGES and argv[0] not in ("-h", "--help")):
        argv.insert(0, "all")
    return parser, parser.parse_args(argv)


def resolve_config(args: argparse.Namespace) -> dict[str, Any]:
    """Defaults <- --config <- --set <- flags, validated; the name gets a default."""
    return _resolve_config(args)[0]


def _resolve_config(args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
    """(:func:`resolve_config`, whether the run name is a default one). A name given by --name, --set
    name=... or the config file must be one plain folder name (:func:`ruagent.cli.run_dir.validate_run_name`)."""
    overrides = list(args.overrides)
    overrides += [f"{key}={getattr(args, flag)}" for flag, key in _FLAG_KEYS.items()
                  if getattr(args, flag) is not None and flag not in ("name", "runs_dir", "env", "device")]
    config = config_lib.resolve(args.config, overrides)
    # strings go in verbatim (yaml would turn a name like "1e3" or "no" into a number or a bool)
    for flag in ("name", "runs_dir", "env", "device"):
        if getattr(args, flag) is not None:
            config_lib.set_dotted(config, _FLAG_KEYS[flag], getattr(args, flag))
    if args.no_progress:
        config["progress_bar"] = False
    config = config_lib.validate(config)
    defaulted = config["name"] is None
    if defaulted:
        config["name"] = _default_name(config)
    else:
        validate_run_name(config["name"])
    return config, defaulted


def _default_name(config: dict[str, Any]) -> str:
    return default_run_name(config["env"]["id"], config["agent"]["algo"], config["seed"])


def _create_run(config: dict[str, Any], force: bool, defaulted: bool) -> RunDir:
    """The run folder ``runs_dir/name``, created exclusively and locked; a default name that another run
    took in the same second is drawn again."""
    for attempt in range(8):
        path = run_path(config["runs_dir"], config["name"])
        try:
            return RunDir.create(path, force=force)
        except RunLockedError:
            raise
        except RunExistsError:
            if not defaulted or attempt == 7:
                raise
            config["name"] = _default_name(config)
    raise AssertionError("unreachable")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``train.py`` and the ``ruagent-train`` script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["sweep"]:
        from ruagent.cli import sweep

        return sweep.main(argv[1:])
    _, args = _parse(argv)
    run = None
    try:
        if args.resume:
            if args.config or args.overrides or any(getattr(args, f) is not None for f in _FLAG_KEYS):
                raise ConfigError("--resume takes its config from RUN_DIR/config.yaml; drop --config, --set and "
                                  "the config flags (or start a new run with --name)")
            # the resumed run is written by this process only: a live writer's lock refuses it (naming its PID)
            run = RunDir.open(args.resume, lock=not args.print_config)
            config = run.read_config()
            if args.no_progress:
                config["progress_bar"] = False
        else:
            config, defaulted = _resolve_config(args)
            run_path(config["runs_dir"], config["name"])  # inside runs_dir, links resolved (checked early: cheap)
        from ruagent.cli import factory

        factory.check_buildable(config)
        if args.stage == "agent" and not args.resume and not args.reward_model:
            raise ConfigError("train.py agent needs --reward-model PATH (a reward_model.pt or a run folder)")
        if args.print_config:
            print(config_lib.dump(config), end="")
            return 0
        if not args.resume:
            # the name is checked (one plain folder name, inside runs_dir) before anything is created
            run = _create_run(config, args.force, defaulted)
            run.write_config(config)
        run.update_meta(stage=args.stage if not args.resume else run.read_meta().get("stage", args.stage),
                        argv=list(sys.argv), status="running")
    except (ConfigError, RunExistsError, RunNotFoundError, NotADirectoryError) as exc:
        if run is not None:
            run.release()
        args.stage_parser.error(str(exc))  # exits with status 2
    try:
        return run_stages(config, run, args.stage, getattr(args, "reward_model", None))
    finally:
        run.release()  # (a killed process's lock is dropped by the OS)


def run_stages(config: dict[str, Any], run: RunDir, stage: str, reward_model: str | None = None) -> int:
    """Run ``stage`` (``all``, ``fit-reward`` or ``agent``) of a run folder whose config.yaml is written;
    a resumed run keeps the stage recorded in its run.json. Used by main() and by each trial of a sweep."""
    from ruagent.cli import stages

    if config["torch_threads"]:
        import torch

        # rl-zoo3 does the same on CPU: for small MLPs, thread synchronisation costs more than it gains,
        # and on a shared machine oversubscribed threads slow every op by an order of magnitude
        torch.set_num_threads(config["torch_threads"])
    stage = run.read_meta().get("stage", stage)
    stages.console.print(f"run folder: {run.path}")
    if stage == "agent" and reward_model:
        stages.import_reward_model(reward_model, run)
    if stage in ("all", "fit-reward"):
        stages.fit_reward(config, run)
    if stage in ("all", "agent"):
        stages.train_agents(config, run)
    if stage == "all" and config["eval"]["enabled"]:
        from ruagent.cli.summary import evaluate_and_summarise

        evaluate_and_summarise(config, run)
    run.update_meta(status="finished")
    print(f"run folder: {run.path}")
    return 0
