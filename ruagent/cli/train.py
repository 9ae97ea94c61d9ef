"""``train.py``: the command line for ruagent experiments.

Stages (the first argument; default ``all``)::

    train.py [all]        labels -> posterior -> agents -> evaluation (the embedded default: LavaWorld)
    train.py fit-reward   labels in the training variant -> reward_model.pt (reuse it anywhere)
    train.py agent --reward-model PATH    agents trained through an existing posterior
    train.py sweep --config SWEEP.yaml    a grid of such runs on Ray Tune (ruagent.cli.sweep, docs/sweeps.md)

Common options: ``--config NAME|FILE``, ``--set key=value ...`` (dotted keys of the config
schema, values parsed with yaml.safe_load), ``--seed``, ``--device``, ``--n-envs``,
``--vec-env``, ``--algo``, ``--name``, ``--force``, ``--resume RUN_DIR``.

Exit status: 0 done; 2 bad input (config, run folder, a corrupt run file), reported in one line
before anything is created where it can be; 1 a write that failed for lack of space (one line
naming the file and the errno); 130 interrupted (Ctrl-C), with one line naming the resume
command. What the command line changes from the preset is adjusted and said in ``notice:``
lines: another env id resets the preset's env-specific keys, and hyperparameters from the
preset that the chosen algorithm does not take are dropped.
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ruagent.cli import config as config_lib
from ruagent.cli import program_name
from ruagent.cli.config import ConfigError
from ruagent.cli.run_dir import (
    RunDir,
    RunExistsError,
    RunFileError,
    RunLockedError,
    RunNotFoundError,
    default_run_name,
    run_path,
    validate_run_name,
)
from ruagent.io import WriteError

__all__ = ["STAGES", "build_parser", "main"]

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
    """The argparse parser: one sub-command per stage, all sharing the common options.

    The top-level parser lists the common options too, so that ``train.py --help`` shows every
    option; they are parsed by the stage's sub-parser (``train.py --seed 1`` is ``train.py all --seed 1``).
    """
    epilog = config_lib.help_text()
    formatter = argparse.RawDescriptionHelpFormatter
    prog = program_name("train.py")
    common = _common_options()
    parser = argparse.ArgumentParser(
        prog=prog, formatter_class=formatter, epilog=epilog, parents=[common],
        usage=f"{prog} [STAGE] [--config NAME|FILE] [--set KEY=VALUE ...] [--resume RUN_DIR] [options]",
        description="Fit a posterior over reward functions from labels in the training variant of an env, train "
                    "risk-averse and risk-neutral agents through it in the deployment variant, and evaluate them "
                    "by the env's true reward. With no arguments: the built-in LavaWorld experiment. "
                    f"Options go after STAGE (default: all); they are the same for every stage, plus "
                    f"--reward-model PATH for `agent` ({prog} agent --help).",
    )
    subparsers = parser.add_subparsers(dest="stage", metavar="STAGE", prog=prog,
                                       help="; ".join(f"{name}: {text}" for name, text in STAGES.items()))
    for stage, text in STAGES.items():
        sub = subparsers.add_parser(stage, parents=[common], help=text, description=text, epilog=epilog,
                                    formatter_class=formatter)
        if stage == "agent":
            sub.add_argument("--reward-model", metavar="PATH",
                             help="reward_model.pt or a run folder holding one (required unless --resume)")
        sub.set_defaults(stage_parser=sub)  # errors print this stage's usage
    parser.add_argument_group("agent stage").add_argument(
        "--reward-model", metavar="PATH", help="(train.py agent only) reward_model.pt or a run folder holding one; "
        "the env id, its variants and the posterior's settings come from that run's config.yaml unless given")
    # listed for --help only: main() hands `sweep` and its own options to ruagent.cli.sweep
    subparsers.add_parser("sweep", add_help=False, help="a grid of runs as Ray Tune trials, pooled over seeds "
                          f"({prog} sweep --help; needs pip install \"ruagent[ray]\")")
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


def _explicit_keys(args: argparse.Namespace) -> set[str]:
    """Config keys given on the command line (--set and flags); ``agent.hyperparams.n_steps`` counts as
    itself and ``agent.hyperparams`` as every hyperparameter."""
    keys = {config_lib.parse_override(text)[0] for text in args.overrides}
    return keys | {key for flag, key in _FLAG_KEYS.items() if getattr(args, flag) is not None}


def _resolve_config(args: argparse.Namespace) -> tuple[dict[str, Any], bool, list[str]]:
    """(:func:`resolve_config`, whether the run name is a default one, notices for the user). A name given by
    --name, --set name=... or the config file must be one plain folder name
    (:func:`ruagent.cli.run_dir.validate_run_name`)."""
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
    explicit = _explicit_keys(args)
    notices: list[str] = []
    kept = set(explicit)
    if args.stage == "agent" and getattr(args, "reward_model", None):
        in_file = set()
        if args.config:
            in_file = {key for key, _ in config_lib._flatten(config_lib.load_config_file(args.config))}
        taken = _take_posterior_settings(config, args.reward_model, explicit | in_file, notices)
        kept |= taken
    preset = config_lib.validate(config_lib.load_config_file(args.config or config_lib.DEFAULT_PRESET))
    _adapt_to_env(config, preset["env"]["id"], kept, notices)
    config = config_lib.validate(config)
    _drop_unaccepted_hyperparams(config, explicit, notices)
    defaulted = config["name"] is None
    if defaulted:
        config["name"] = _default_name(config)
    else:
        validate_run_name(config["name"])
    return config, defaulted, notices


#: config keys that describe the env (and the posterior fitted on it); a posterior's run folder supplies them
_POSTERIOR_KEYS = ("env.id", "env.label_kwargs", "env.deploy_kwargs", "env.max_episode_steps",
                   "reward_model.family", "reward_model.n_members", "reward_model.features", "reward_model.kwargs",
                   "reward_model.fit", "reward_model.standardise")


def _reward_model_file(source: str | Path) -> Path:
    source = Path(source)
    return RunDir(source).reward_model_path if source.is_dir() else source


def _take_posterior_settings(config: dict[str, Any], source: str, given: set[str], notices: list[str]) -> set[str]:
    """``train.py agent --reward-model RUN``: the env id, its variants and the posterior's settings come from
    RUN/config.yaml (the run that fitted it) unless given on the command line or in --config; returns the keys
    taken."""
    path = _reward_model_file(source)
    folder = path.parent if path.name == "reward_model.pt" else None
    if folder is None or not (folder / RunDir.CONFIG).is_file():
        return set()
    source_config = RunDir(folder).read_config()
    taken = set()
    for key in _POSTERIOR_KEYS:
        if key in given or any(g.startswith(key + ".") for g in given):
            continue
        value = config_lib.get(source_config, key)
        if config_lib.get(config, key) != value:
            config_lib.set_dotted(config, key, copy.deepcopy(value))
        taken.add(key)
    env = source_config["env"]
    notices.append(f"env from {folder / RunDir.CONFIG} (the posterior's run): env.id={env['id']}, "
                   f"env.label_kwargs={env['label_kwargs']}, env.deploy_kwargs={env['deploy_kwargs']}, and its "
                   "reward_model.* settings; give --env or --set to choose otherwise")
    return taken


def _has_reward_features(env_id: str, kwargs: dict[str, Any]) -> bool | None:
    """Whether ``env_id`` defines reward_features (None: it cannot be made; check_buildable says why)."""
    import gymnasium as gym

    import ruagent  # noqa: F401  (registers the testbeds)

    try:
        env = gym.make(env_id, **kwargs)
    except Exception:
        return None
    try:
        env.get_wrapper_attr("reward_features")
        return True
    except AttributeError:
        return False
    finally:
        env.close()


def _adapt_to_env(config: dict[str, Any], preset_env: str, kept: set[str], notices: list[str]) -> None:
    """When the env id differs from the preset's, reset the preset's env-specific keys (variant kwargs, tuned
    hyperparameters, env features) that the command line did not set, and say so in one notice."""
    env_id = config["env"]["id"]
    if env_id == preset_env:
        return
    reset = []
    for key in ("env.label_kwargs", "env.deploy_kwargs"):
        if key not in kept and config_lib.get(config, key):
            config_lib.set_dotted(config, key, {})
            reset.append(f"{key}={{}}")
    hyperparams = config["agent"]["hyperparams"]
    if "agent.hyperparams" not in kept:
        mine = {k: v for k, v in hyperparams.items() if f"agent.hyperparams.{k}" in kept}
        if mine != hyperparams:
            config["agent"]["hyperparams"] = mine
            reset.append(f"agent.hyperparams={mine or '{}'} (tuned for {preset_env})")
    features = config["reward_model"]["features"]
    if "reward_model.features" not in kept and features == "env":
        if _has_reward_features(env_id, config["env"]["label_kwargs"]) is False:
            config["reward_model"]["features"] = "transition"
            reset.append(f"reward_model.features=transition ({env_id} has no reward_features)")
    if reset:
        notices.append(f"env.id={env_id} is not the preset's {preset_env}: {', '.join(reset)}; set them with --set "
                       "to choose otherwise")


def _drop_unaccepted_hyperparams(config: dict[str, Any], explicit: set[str], notices: list[str]) -> None:
    """Drop hyperparameters the preset or config file tuned for another algorithm (e.g. PPO's batch_size
    under --algo a2c), with a notice; those given on the command line stay, and check_buildable refuses
    them if the algorithm does not take them."""
    from ruagent.cli import factory

    hyperparams = config["agent"]["hyperparams"]
    if not hyperparams or "agent.hyperparams" in explicit:
        return
    try:
        algos = sorted({spec.algo for spec in factory.agent_specs(config)})
    except ConfigError:
        return  # check_buildable reports it
    accepted = None
    for algo in algos:
        names = factory._parameters(factory.algo_class(algo))
        accepted = names if accepted is None else accepted & names
    dropped = sorted(k for k in hyperparams if k not in accepted and f"agent.hyperparams.{k}" not in explicit)
    if dropped:
        config["agent"]["hyperparams"] = {k: v for k, v in hyperparams.items() if k not in dropped}
        takers = " and ".join(factory.algo_class(a).__name__ for a in algos)
        notices.append(f"agent.hyperparams {', '.join(dropped)} dropped: {takers} does not take them (they came "
                       "from the preset or config file)")


def _check_reward_model(config: dict[str, Any], source: str) -> None:
    """``train.py agent``: the posterior file exists, reads, and fits the deployment env's spaces."""
    from ruagent.cli import factory
    from ruagent.reward_models.base import RewardModelFileError, SpaceMismatchError, load_reward_model

    path = _reward_model_file(source)
    if not path.is_file():
        raise RunNotFoundError(f"--reward-model {source}: no reward model at {path}; give a reward_model.pt or a "
                               "run folder made by `train.py fit-reward`")
    env = factory.make_env(config, config["env"]["deploy_kwargs"])
    try:
        load_reward_model(path, env=env)
    except (RewardModelFileError, SpaceMismatchError) as exc:
        raise ConfigError(f"--reward-model {source}: {exc}") from None
    finally:
        env.close()


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


def _command() -> str:
    """How to call train.py again, for hints: ``python train.py`` or ``ruagent-train``."""
    prog = program_name("train.py")
    return f"python {prog}" if prog.endswith(".py") else prog


def _close_progress_bars() -> None:
    """Close the tqdm bars an interrupted ``learn`` left open (else their __del__ fails at interpreter exit)."""
    tqdm = sys.modules.get("tqdm")
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", ())):
        try:
            bar.close()
        except Exception:  # a bar half torn down by the interrupt: nothing left to close
            pass


def _fail(code: int, message: str) -> int:
    print(f"{program_name('train.py')}: error: {message}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``train.py`` and the ``ruagent-train`` script (exit statuses in the module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["sweep"]:
        from ruagent.cli import sweep

        return sweep.main(argv[1:])
    _, args = _parse(argv)
    run = None
    try:
        try:
            notices: list[str] = []
            if args.resume:
                if args.config or args.overrides or any(getattr(args, f) is not None for f in _FLAG_KEYS):
                    raise ConfigError("--resume takes its config from RUN_DIR/config.yaml; drop --config, --set and "
                                      "the config flags (or start a new run with --name)")
                # the resumed run is written by this process only: a live writer's lock refuses it (naming its PID)
                run = RunDir.open(args.resume, lock=not args.print_config)
                config = run.read_config()
                stage = run.read_meta().get("stage", args.stage)
                if args.no_progress:
                    config["progress_bar"] = False
            else:
                if args.stage == "agent" and not args.reward_model:
                    raise ConfigError(f"{program_name('train.py')} agent needs --reward-model PATH (a "
                                      "reward_model.pt or a run folder)")
                config, defaulted, notices = _resolve_config(args)
                run_path(config["runs_dir"], config["name"])  # inside runs_dir, links resolved (checked early: cheap)
                stage = args.stage
            for notice in notices:
                print(f"notice: {notice}", file=sys.stderr)
            if config.get("note"):  # the preset's own caveat (e.g. untuned), said before anything runs
                print(f"note: {config['note']}", file=sys.stderr)
            from ruagent.cli import factory

            factory.check_buildable(config)
            if args.stage == "agent" and not args.resume:
                _check_reward_model(config, args.reward_model)  # before anything is created
            if args.print_config:
                print(config_lib.dump(config), end="")
                return 0
            if not args.resume:
                # the name is checked (one plain folder name, inside runs_dir) before anything is created
                run = _create_run(config, args.force, defaulted)
                run.write_config(config)
            run.update_meta(stage=stage, argv=list(sys.argv), status="running")
        except (ConfigError, RunExistsError, RunNotFoundError, NotADirectoryError, RunFileError) as exc:
            if run is not None:
                run.release()
            args.stage_parser.error(str(exc))  # exits with status 2
        from ruagent.cli.stages import run_stages

        return run_stages(config, run, stage, getattr(args, "reward_model", None))
    except KeyboardInterrupt:
        _close_progress_bars()
        if run is None:
            return _fail(130, "interrupted before a run folder was made; nothing to resume")
        try:
            run.update_meta(status="interrupted")
        except (OSError, RunFileError):
            pass  # run.json keeps its last complete state
        return _fail(130, f"interrupted; {run.path} holds everything up to its last checkpoint; resume with: "
                          f"{_command()} --resume {run.path}")
    except WriteError as exc:
        hint = f"; free space and resume with: {_command()} --resume {run.path}" if run is not None else ""
        return _fail(1, f"{exc}{hint}")
    except RunFileError as exc:
        return _fail(2, str(exc))
    finally:
        if run is not None:
            run.release()  # (a killed process's lock is dropped by the OS)
