"""``python train.py sweep --config SWEEP.yaml``: a grid of ordinary runs on Ray Tune.

Researchers run grids: seeds × risk measure × risk level × label budget × testbed. A sweep
file names a base config, ``--set``-style overrides for every trial and a grid; each grid
point (a *trial*) is one ordinary ruagent run, in its own run folder under
``<storage>/<sweep name>/runs/``, executed by the stage functions of ``train.py`` inside a Ray
Tune function trainable (Liaw et al., "Tune", 2018). Ray schedules the trials on the local
machine (a fresh local Ray instance by default) or a cluster (``--address auto``), with the
resources each trial asks for, and retries failed trials (``FailureConfig.max_failures``).

Resuming is ruagent's own check, not Ray's experiment state: a trial whose run folder says
``finished`` is never resubmitted, an unfinished one continues from its checkpoints exactly
as ``train.py --resume`` does, and new grid points start. At the end every trial's
``eval.json`` is pooled over seeds (:func:`ruagent.cli.compare.pool_seeds`) into one table
and figures in the sweep folder. Sweep file format and commands: docs/sweeps.md.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import difflib
import itertools
import json
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ruagent.cli import config as config_lib
from ruagent.cli.config import ConfigError
from ruagent.cli.run_dir import RunDir, run_path, validate_run_name
from ruagent.cli.trial_names import params_label, value_label
from ruagent.io import atomic_write_text

__all__ = ["INSTALL_HINT", "SWEEP_KEYS", "Trial", "build_parser", "expand_trials", "load_sweep", "main",
           "params_label", "run_sweep", "value_label"]

INSTALL_HINT = 'train.py sweep runs trials on Ray Tune, which is not installed: pip install "ruagent[ray]"'
#: Top-level keys of a sweep file -> meaning (docs/sweeps.md shows an example of each).
SWEEP_KEYS = {
    "name": "sweep folder name under the storage path (default: the sweep file's name)",
    "config": "base config of every trial: a preset name or a YAML file (relative to the sweep file)",
    "set": "overrides for every trial: a list of key=value strings (as --set) or a mapping of dotted keys",
    "grid": "axes of the grid: dotted key -> list of values, `config` -> list of base configs, or any other "
            "name -> list of bundles (mappings of dotted keys that vary together)",
    "resources": "Ray resources per trial, e.g. {cpu: 1, gpu: 0}",
    "max_failures": "retries of a failed trial (Ray Tune FailureConfig)",
    "max_concurrent": "most trials running at once (null: as many as the resources allow)",
    "storage": "folder holding the sweep folder (a shared filesystem for multi-node clusters)",
}
_DEFAULTS = {"config": config_lib.DEFAULT_PRESET, "set": [], "resources": {"cpu": 1}, "max_failures": 1,
             "max_concurrent": None, "storage": "sweeps"}
_RISK_LEVELS = {"agent.alpha", "agent.lam", "agent.beta"}


@dataclasses.dataclass(frozen=True)
class Trial:
    """One grid point: its name (also its run folder's), the axis values that define it, its resolved config."""

    name: str
    params: dict[str, Any]
    config: dict[str, Any]

    @property
    def run_dir(self) -> Path:
        return Path(self.config["runs_dir"]) / self.name


# ---------------------------------------------------------------------------- the sweep file
def load_sweep(name_or_path: str | os.PathLike) -> tuple[dict[str, Any], Path]:
    """Read a sweep file (a path, or the name of one shipped in ``ruagent/configs/``, e.g. ``sweep_example``).

    :return: (the spec with defaults filled in, the folder relative config paths are read from).
    :raises ConfigError: for a missing file, bad YAML, an unknown key or a value of the wrong type.
    """
    path = Path(name_or_path)
    if path.is_file():
        text, folder = path.read_text(encoding="utf-8"), path.resolve().parent
    else:
        shipped = resources.files("ruagent") / "configs" / f"{name_or_path}.yaml"
        if path.suffix in (".yaml", ".yml") or not shipped.is_file():
            raise ConfigError(f"sweep file {name_or_path} does not exist; give a path to a sweep YAML file or "
                              "sweep_example (the example shipped with ruagent, docs/sweeps.md)")
        text, folder, path = shipped.read_text(encoding="utf-8"), Path.cwd(), Path(shipped.name)
    try:
        spec = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"sweep file {name_or_path} is not valid YAML: {exc}") from exc
    if not isinstance(spec, dict) or "grid" not in spec:
        raise ConfigError(f"sweep file {name_or_path} must be a mapping with a `grid:` (and usually `config:` and "
                          "`set:`); see ruagent/configs/sweep_example.yaml")
    for key in spec:
        if key not in SWEEP_KEYS:
            close = difflib.get_close_matches(str(key), list(SWEEP_KEYS), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"unknown sweep key {key!r} in {name_or_path}.{hint} Valid keys: {', '.join(SWEEP_KEYS)}")
    spec = {"name": path.stem, **copy.deepcopy(_DEFAULTS), **spec}
    if not isinstance(spec["grid"], dict) or not spec["grid"]:
        raise ConfigError("`grid:` must map axes to lists of values, e.g. grid: {seed: [0, 1, 2]}")
    if not isinstance(spec["resources"], dict):
        raise ConfigError(f"`resources:` must be a mapping such as {{cpu: 1, gpu: 0}}, got {spec['resources']!r}")
    validate_run_name(str(spec["name"]), "sweep name")  # a RunNameError (ConfigError) naming the rule
    concurrent = spec["max_concurrent"]
    if concurrent is not None and not (isinstance(concurrent, int) and concurrent >= 1):
        raise ConfigError(f"max_concurrent={spec['max_concurrent']!r}: give a number of trials >= 1, or null")
    if not isinstance(spec["max_failures"], int) or spec["max_failures"] < -1:
        raise ConfigError(f"max_failures={spec['max_failures']!r}: give the retries per trial (0: none, -1: forever)")
    return spec, folder


def _set_overrides(value: Any) -> list[str]:
    """`set:` as --set strings, whether the file gives a list of ``key=value`` or a mapping."""
    if isinstance(value, Mapping):
        return [_override(key, item) for key, item in value.items()]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value)
    raise ConfigError(f"`set:` must be a list of key=value strings or a mapping of dotted keys, got {value!r}")


def _override(key: str, value: Any) -> str:
    """``key=value`` whose value ``yaml.safe_load`` reads back as ``value`` (strings like "no" stay quoted)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    return f"{key}={text.removesuffix('...').strip()}"


def _is_config_key(key: str) -> bool:
    """A schema key or a key inside a mapping-valued one (``agent.hyperparams.n_steps``)."""
    dict_keys = [k for k, option in config_lib.SCHEMA.items() if option.kind is dict]
    return key in config_lib.SCHEMA or any(key.startswith(k + ".") for k in dict_keys)


def _axis_points(axis: str, values: Any) -> list[dict[str, Any]]:
    """The settings each value of a grid axis stands for, as {dotted key or "config": value}."""
    if not isinstance(values, list) or not values:
        raise ConfigError(f"grid axis {axis!r} must be a non-empty list of values, got {values!r}")
    if axis == "config" or _is_config_key(axis):
        return [{axis: value} for value in values]
    for bundle in values:  # an axis of bundles: e.g. a risk measure together with its own level
        if not isinstance(bundle, dict) or not bundle:
            close = difflib.get_close_matches(axis, list(config_lib.SCHEMA), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"grid axis {axis!r} is not a config key, so each of its values must be a bundle (a mapping of "
                f"dotted keys that vary together, e.g. {{agent.risk: cvar, agent.alpha: 0.1}}); got {bundle!r}.{hint}"
            )
    return [dict(bundle) for bundle in values]


def _resolve_base(base: Any, folder: Path) -> str:
    """A preset name as is; a config file beside the sweep file by its full path."""
    if not isinstance(base, str):
        raise ConfigError(f"config={base!r} must be a preset name ({', '.join(config_lib.preset_names())}) or a file")
    if base not in config_lib.preset_names() and (folder / base).is_file():
        return str(folder / base)
    return base  # a preset, an absolute path, or a path from the working directory (load_config_file checks it)


def expand_trials(spec: Mapping[str, Any], folder: Path, runs_dir: Path) -> list[Trial]:
    """Every point of the grid (first axis slowest) with its config resolved and checked.

    A trial's config is ``train.py --config <base> --set <set...> <axis values...>`` with its
    name (``axis=value_...``), its run folder under ``runs_dir`` and progress bars off (trials
    log to files). All are validated before anything runs, like ``train.py``.

    :raises ConfigError: naming the trial and the bad key.
    """
    from ruagent.cli import factory

    overrides = _set_overrides(spec["set"])
    axes = {axis: _axis_points(str(axis), values) for axis, values in spec["grid"].items()}
    trials, names = [], set()
    for point in itertools.product(*axes.values()):
        params = {axis: next(iter(v.values())) if len(v) == 1 and axis in v else v for axis, v in zip(axes, point)}
        name = params_label(params)
        name = name if name not in names else f"{name}-{len(trials)}"
        names.add(name)
        validate_run_name(name, "trial name")  # its run folder's name (labels are file-name-safe already)
        settings = {key: value for setting in point for key, value in setting.items()}
        base = _resolve_base(settings.pop("config", spec["config"]), folder)
        try:
            config = config_lib.resolve(base, [*overrides, *(_override(k, v) for k, v in settings.items())])
            config.update(name=name, runs_dir=str(runs_dir), progress_bar=False)
            config = config_lib.validate(config)
            if not config["eval"]["enabled"]:
                raise ConfigError("eval.enabled=false, but the sweep table is made of every trial's evaluation; "
                                  "remove it from the sweep")
            factory.check_buildable(config)
        except ConfigError as exc:
            hint = (" To vary a risk measure and its level, make them one grid axis of bundles, e.g. risk: "
                    "[{agent.risk: cvar, agent.alpha: 0.1}, {agent.risk: worst}]."
                    if "agent.risk" in axes and _RISK_LEVELS & set(axes) else "")
            raise ConfigError(f"trial {name} (base {base}): {str(exc).rstrip('.')}.{hint}") from None
        trials.append(Trial(name, params, config))
    return trials


# ---------------------------------------------------------------------------- one trial, inside Ray
def run_trial(space: dict[str, Any]) -> None:
    """Ray Tune function trainable: one ordinary run (``train.py all``) in the trial's run folder.

    :param space: Tune's resolved param space: ``trial`` ({name, params, config}), ``sweep``
        (the sweep folder) and ``argv`` (the sweep's command line, recorded in run.json).

    A retry after a failure finds the folder of the failed attempt and continues it like
    ``train.py --resume`` (the posterior is reused, finished agents skipped, checkpoints resumed).
    Like train.py, the trial holds its run folder's lock while it writes it: a new folder is
    created exclusively, an existing one is opened with the lock, and a folder another live
    process is writing fails the trial (:class:`ruagent.cli.run_dir.RunLockedError`, naming its PID).
    Reports the evaluation's headline estimates (``<agent>/<metric>``) to Tune.
    """
    from ruagent.cli.stages import run_stages

    trial = space["trial"]
    path = run_path(trial["config"]["runs_dir"], trial["name"])
    if (path / RunDir.CONFIG).is_file():
        run = RunDir.open(path, lock=True)
    else:  # new, or left by an attempt killed before its config.yaml: only a folder ruagent made is replaced
        run = RunDir.create(path, force=(path / RunDir.MARKER).is_file())
    try:
        if not run.config_path.is_file():
            run.write_config(trial["config"])
        run.update_meta(stage="all", argv=space["argv"], status="running", sweep=space["sweep"],
                        trial_params=trial["params"])
        run_stages(run.read_config(), run, "all")
    finally:
        run.release()
    result = json.loads(run.eval_path.read_text(encoding="utf-8"))
    headline = {f"{agent}/{name}": value["estimate"] for agent, entry in result["agents"].items()
                for name, value in entry["metrics"].items() if value is not None}
    from ray import tune

    tune.report({"finished": 1, **headline})


# ---------------------------------------------------------------------------- the sweep
def _check_resumable(trials: Sequence[Trial]) -> None:
    """A trial's existing run folder must hold the config the sweep now gives it (runs_dir aside: folders move)."""
    for trial in trials:
        if not (trial.run_dir / RunDir.CONFIG).is_file():
            continue
        stored = RunDir(trial.run_dir).read_config()
        changed = sorted(key for key in config_lib.SCHEMA if key not in ("progress_bar", "runs_dir")
                         and config_lib.get(stored, key) != config_lib.get(trial.config, key))
        if changed:
            raise ConfigError(f"--resume: trial {trial.name} ran with other values of {', '.join(changed)} than the "
                              "sweep file now gives; restore the file, or start a new sweep (name: ...) for them")


def run_sweep(
    spec: Mapping[str, Any], folder: Path, storage: str | os.PathLike, *, address: str | None = None,
    resume: bool = False, max_failures: int | None = None, num_cpus: int | None = None, progress: bool = True,
) -> dict[str, Any]:
    """Run (or resume) a sweep; return the content of its ``results.json``.

    :param spec: a sweep spec from :func:`load_sweep`; ``folder``: where its relative config files are.
    :param storage: folder that holds the sweep folder ``<storage>/<name>`` (shared filesystem on clusters).
    :param address: Ray cluster to join (``"auto"``: the one on this node); None starts a local instance,
        unless this process already holds one (``ray.init`` was called), which is then used.
    :param resume: continue an existing sweep folder; finished trials are not rerun.
    :param max_failures: retries per failed trial (default: the spec's ``max_failures``).
    :param num_cpus: CPUs of a local Ray instance (default: all of this machine's).
    """
    import ray

    sweep_dir = Path(storage).resolve() / str(spec["name"])
    spec_path = sweep_dir / "sweep.yaml"
    if spec_path.is_file() and not resume:
        raise ConfigError(f"sweep folder {sweep_dir} exists already; pass --resume to continue it (finished "
                          "trials are not rerun), or give the sweep another name (name: in the file) or --storage")
    if resume and not spec_path.is_file():
        raise ConfigError(f"--resume: {sweep_dir} holds no sweep.yaml, so there is no sweep to resume; drop --resume")
    trials = expand_trials(spec, folder, sweep_dir / "runs")
    _check_resumable(trials)
    done = [trial for trial in trials if RunDir(trial.run_dir).is_finished()]
    pending = [trial for trial in trials if trial not in done]
    sweep_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(spec_path, "# ruagent sweep, as run; resume with --resume\n" + yaml.safe_dump(
        {**dict(spec), "max_failures": spec["max_failures"] if max_failures is None else max_failures},
        sort_keys=False))
    from ruagent.cli.stages import console

    console.print(f"sweep {sweep_dir}: {len(trials)} trials, {len(done)} finished already, {len(pending)} to run")
    errors: dict[str, str] = {}
    if pending:
        own_ray = not ray.is_initialized()
        if own_ray:
            # "local": a fresh instance even where `ray start` left a cluster address behind on this machine
            ray.init(address=address or "local", num_cpus=None if address else num_cpus, include_dashboard=False,
                     log_to_driver=False, logging_level=logging.WARNING)
        try:
            errors = _fit(pending, spec, sweep_dir, max_failures, progress)
        finally:
            if own_ray:
                ray.shutdown()
    from ruagent.cli.sweep_report import write_report

    return write_report(trials, {t.name for t in done}, errors, sweep_dir, console)


def _fit(trials: Sequence[Trial], spec: Mapping[str, Any], sweep_dir: Path, max_failures: int | None,
         progress: bool) -> dict[str, str]:
    """One Ray Tune experiment over ``trials``; returns {trial name: first line of its error} for failed ones."""
    from ray import tune
    from rich.progress import Progress

    def trial_name(tune_trial: Any) -> str:  # Tune names the trial and its log folder after ruagent's trial
        return tune_trial.config["trial"]["name"]

    param_space = {
        "trial": tune.grid_search([{"name": t.name, "params": t.params, "config": t.config} for t in trials]),
        "sweep": str(sweep_dir), "argv": list(sys.argv),
    }
    retries = spec["max_failures"] if max_failures is None else max_failures
    with Progress(disable=not progress) as bar:
        tuner = tune.Tuner(
            tune.with_resources(run_trial, dict(spec["resources"])),
            param_space=param_space,
            tune_config=tune.TuneConfig(trial_name_creator=trial_name, trial_dirname_creator=trial_name,
                                        max_concurrent_trials=spec["max_concurrent"]),
            run_config=tune.RunConfig(
                name=time.strftime("tune-%Y%m%d-%H%M%S"), storage_path=str(sweep_dir / "ray"), verbose=0,
                failure_config=tune.FailureConfig(max_failures=retries),
                callbacks=[_progress_callback(bar, bar.add_task(f"sweep {sweep_dir.name}", total=len(trials)))]),
        )
        grid = tuner.fit()
    return {result.config["trial"]["name"]: _describe(result.error, Path(result.path) / "error.txt")
            for result in grid if result.error is not None}


def _describe(error: BaseException, log: Path) -> str:
    """``"NotADirectoryError: ... (traceback: .../error.txt)"``: the trial's own exception, not Ray's wrapper."""
    cause = getattr(error, "cause", None) or error  # a RayTaskError carries the trial's exception as .cause
    text = (str(cause).strip().splitlines() or [""])[0]
    return f"{type(cause).__name__}: {text} (traceback: {log})"


def _progress_callback(bar: Any, task: Any) -> Any:
    """A Tune callback that advances a rich progress bar per trial done and prints each failure."""
    from ray import tune

    class ProgressCallback(tune.Callback):
        # Tune pickles its run config (class by value) for Tuner.restore: the bar travels on the
        # instance, which pickles empty, never in a closure (a progress bar holds a thread lock).
        def __init__(self, bar: Any, task: Any) -> None:
            self.bar, self.task = bar, task

        def __getstate__(self) -> dict:
            return {}

        def _note(self, trial: Any, text: str | None, done: bool) -> None:
            from ruagent.cli.stages import console

            if done and getattr(self, "bar", None) is not None:
                self.bar.advance(self.task)
            if text:
                console.print(f"trial {trial.config['trial']['name']} {text} (log: {trial.path})")

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._note(trial, None, done=True)

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._note(trial, "[red]failed[/red]", done=True)

        def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._note(trial, "failed; retrying", done=False)

    return ProgressCallback(bar, task)


# ---------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    keys = "\n".join(f"  {key}: {text}" for key, text in SWEEP_KEYS.items())
    from ruagent.cli import program_name

    parser = argparse.ArgumentParser(
        prog=f"{program_name('train.py')} sweep", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run a grid of ordinary ruagent runs (seeds x risk measure x risk level x label budget x "
                    "testbed ...) as Ray Tune trials, on this machine or a Ray cluster; then pool them over seeds "
                    "into one table and figures in the sweep folder. Needs the extra: pip install \"ruagent[ray]\".",
        epilog=f"sweep file keys:\n{keys}\n\nExample: ruagent/configs/sweep_example.yaml. Docs: docs/sweeps.md.",
    )
    parser.add_argument("--config", required=True, metavar="SWEEP",
                        help="sweep YAML file (or sweep_example, the one shipped with ruagent)")
    parser.add_argument("--address", default=None, metavar="ADDRESS",
                        help="Ray cluster to join: auto (the cluster this node belongs to) or ray://host:10001; "
                             "default: start a local Ray instance")
    parser.add_argument("--storage", default=None, metavar="PATH",
                        help="folder that holds the sweep folder (default: the file's storage, else ./sweeps); "
                             "on a multi-node cluster a shared filesystem every node mounts at the same path")
    parser.add_argument("--resume", action="store_true",
                        help="continue the sweep in <storage>/<name>: finished trials are not rerun, unfinished "
                             "ones continue from their checkpoints")
    parser.add_argument("--max-failures", type=int, default=None, metavar="N",
                        help="retries of a failed trial (default: the file's max_failures, else 1; -1: forever)")
    parser.add_argument("--num-cpus", type=int, default=None, metavar="N",
                        help="CPUs of the local Ray instance (default: all); ignored with --address")
    parser.add_argument("--dry-run", action="store_true", help="list the trials and their run folders, run nothing")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``train.py sweep``: exit status 0 when every trial finished, 1 when some failed, 2 for bad input."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.dry_run:
        try:
            import ray.tune  # noqa: F401
        except ImportError:
            parser.exit(2, f"{parser.prog}: error: {INSTALL_HINT}\n")
    # Tune's newer console output prints a banner even at verbose=0; the sweep shows its own bar and table
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    try:
        spec, folder = load_sweep(args.config)
        storage = args.storage if args.storage is not None else spec["storage"]
        if args.dry_run:
            sweep_dir = Path(storage).resolve() / str(spec["name"])
            for trial in expand_trials(spec, folder, sweep_dir / "runs"):
                print(f"{trial.run_dir}  {json.dumps(trial.params)}")
            return 0
        result = run_sweep(spec, folder, storage, address=args.address, resume=args.resume,
                           max_failures=args.max_failures, num_cpus=args.num_cpus, progress=not args.no_progress)
    except ConfigError as exc:
        parser.error(str(exc))  # exits with status 2
    failed = [trial["name"] for trial in result["trials"] if trial["status"] not in ("finished", "finished earlier")]
    if failed:
        print(f"{len(failed)} trial(s) did not finish: {', '.join(failed)}; their logs are under "
              f"{result['sweep']}/ray/. Fix the cause and rerun with --resume (finished trials are kept).")
        return 1
    return 0
