"""The experiment configuration: one schema, its defaults, presets, dotted overrides, validation.

A config is a nested dict of plain YAML values. :data:`SCHEMA` lists every key (dotted),
its default, type, allowed values and help text; ``train.py --help`` is generated from
it, and the defaults are the embedded default experiment (LavaWorld, IRD's setting).
A config is resolved in layers, later ones winning::

    schema defaults  <-  preset or --config FILE (default: lavaworld)  <-  --set key=value ...  <-  flags

Override values are parsed with ``yaml.safe_load`` (``--set agent.alpha=0.1`` gives the float
0.1, ``labels.budget=2e3`` the number 2000.0, which the schema rejects for an int); nothing
is ever ``eval``-ed. Unknown keys and bad values raise :class:`ConfigError` naming the key,
the valid choices and the closest match (difflib), before anything is trained.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "AGENT_ALGOS",
    "BASELINES",
    "DEFAULT_PRESET",
    "SCHEMA",
    "ConfigError",
    "Option",
    "apply_overrides",
    "check_label_split",
    "defaults",
    "dump",
    "get",
    "load_config_file",
    "parse_override",
    "preset_names",
    "resolve",
    "set_dotted",
    "validate",
]

#: the risk agents (RiskPPO, RiskSAC, RiskDQN) plus the SB3 algorithms a run can train (the latter see
#: one scalar reward per step).
AGENT_ALGOS = ("riskppo", "risksac", "riskdqn", "ppo", "a2c", "dqn", "sac", "td3", "ddpg")
#: Extra agents trained next to the risk-averse one, for comparison.
BASELINES = ("mean", "oracle")
RISK_NAMES = ("mean", "cvar", "worst", "mean_std", "entropic", "broil")  # == ruagent.risk.RISK_MEASURES
WRAPPER_MODES = ("auto", "mean", "sample", "sample_step", "lcb", "worst", "cvar")
#: The preset used when no --config is given: the embedded default experiment.
DEFAULT_PRESET = "lavaworld"


class ConfigError(ValueError):
    """A config key or value that cannot be used; the message names the key and the fix."""


@dataclasses.dataclass(frozen=True)
class Option:
    """One config key: its default, accepted type(s), allowed values and help text."""

    default: Any
    help: str
    kind: type | tuple[type, ...]
    choices: tuple | None = None
    nullable: bool = False
    minimum: float | None = None
    maximum: float | None = None


def _opt(default: Any, help: str, kind: type | tuple[type, ...] | None = None, **kwargs: Any) -> Option:
    return Option(default, help, kind if kind is not None else type(default), **kwargs)


#: Every config key, dotted, in the order ``--help`` shows them.
SCHEMA: dict[str, Option] = {
    "name": _opt(None, "run folder name under runs_dir, one plain folder name (default: "
                       "<env>-<algo>-s<seed>-<time>-<4 hex>)", str, nullable=True),
    "runs_dir": _opt("runs", "folder that holds run folders"),
    "seed": _opt(0, "seed for labels, posterior, envs and agents (a run is reproducible from it)", minimum=0),
    "device": _opt("auto", "torch device for the posterior and agents: auto, cpu, cuda, cuda:1, mps"),
    "progress_bar": _opt(True, "show progress bars while fitting and training"),
    "torch_threads": _opt(1, "CPU threads per torch op (0: torch's default); small MLPs run fastest on 1", minimum=0),
    "note": _opt(None, "a caveat printed when the run starts (presets use it to say what is not tuned or known "
                       "not to work)", str, nullable=True),
    # -- environments: labels are gathered in the train variant, agents act in the deployment variant
    "env.id": _opt("ruagent/LavaWorld-v0", "any registered Gymnasium env id"),
    "env.label_kwargs": _opt({"variant": "train"}, "gym.make kwargs of the env the labels come from", dict),
    "env.deploy_kwargs": _opt({"variant": "test"}, "gym.make kwargs of the deployment env agents train in", dict),
    "env.max_episode_steps": _opt(None, "override the env's step cap", int, nullable=True, minimum=1),
    "env.n_envs": _opt(8, "parallel envs for agent training", minimum=1),
    "env.vec_env": _opt("dummy", "VecEnv class for agent training", choices=("dummy", "subproc")),
    # -- labels: evidence about the reward, within a budget
    "labels.kind": _opt("rewards", "reward labels on transitions, or preferences between segments",
                        choices=("rewards", "preferences")),
    "labels.budget": _opt(2000, "labelled transitions (rewards) or preference pairs (preferences)", minimum=1),
    "labels.heldout_fraction": _opt(0.2, "share of reward labels kept out of fitting, for calibration metrics",
                                    float, minimum=0.0, maximum=0.9),
    "labels.query": _opt("random", "preferences: how pairs are chosen",
                         choices=("random", "disagreement", "info_gain")),
    "labels.labeller": _opt("synthetic", "preferences: who answers (synthetic = the env's true reward; human = a "
                            "person in the terminal; web = a person in a browser page, needs the web extra)",
                            choices=("synthetic", "human", "web")),
    "labels.teacher": _opt(None, "preferences, synthetic labeller: one of B-Pref's simulated teachers (oracle: "
                           "perfectly rational; stoc, mistake, skip, equal, myopic: docs/preferences.md); null: "
                           "Boltzmann-rational on true returns with temperature 1", str, nullable=True,
                           choices=("oracle", "stoc", "mistake", "skip", "equal", "myopic")),
    "labels.teacher_scale": _opt(None, "the skip and equal teachers' thresholds are 0.1 x this: B-Pref's mean true "
                                 "return of a segment (mean reward per step x labels.segment_length)", float,
                                 nullable=True, minimum=0.0),
    "labels.segment_length": _opt(25, "preferences: steps per trajectory segment", minimum=1),
    "labels.initial_fraction": _opt(1.0, "preferences: share of the budget asked before agent training; the rest "
                                    "is asked from the risk agent's own rollouts while it trains (Christiano et al. "
                                    "2017)", float, minimum=0.0, maximum=1.0),
    "labels.update_every": _opt(2048, "preferences asked during training: agent steps between label rounds",
                                minimum=1),
    "labels.wait_timeout": _opt(None, "preferences asked during training from a person on the web page: seconds "
                                "a label round waits for the next answer (training is paused meanwhile) before "
                                "it drops the rest of the round and training goes on; null: wait as long as it "
                                "takes", float, nullable=True, minimum=0.001),
    "labels.web_host": _opt("127.0.0.1", "web labeller: address the page listens on (127.0.0.1: this machine only)"),
    "labels.web_port": _opt(0, "web labeller: TCP port of the page (0: a free one, printed with the URL)",
                            minimum=0, maximum=65535),
    # -- the reward posterior
    "reward_model.family": _opt("linear", "posterior family", choices=("ensemble", "linear")),
    "reward_model.n_members": _opt(10, "K, the number of reward hypotheses", minimum=1),
    "reward_model.features": _opt("env", "posterior inputs: the env's reward_features (IRD's φ) or the transition",
                                  choices=("env", "transition")),
    "reward_model.kwargs": _opt({}, "extra constructor kwargs of the family (e.g. prior_reward_scale, hidden_sizes)",
                                dict),
    "reward_model.fit": _opt({}, "extra fit() kwargs (e.g. epochs, lr)", dict),
    "reward_model.standardise": _opt(False, "align the members' label-data means (removes constant offsets between "
                                            "members; keeps the common level and the spread)"),
    # -- the agent(s)
    "agent.algo": _opt("riskppo", "riskppo, risksac (Box actions), riskdqn (Discrete), or an SB3 algorithm "
                       "that sees one scalar reward per step",
                       choices=AGENT_ALGOS),
    "agent.policy": _opt("auto", "SB3 policy name (auto: MultiInputPolicy for Dict observations, else MlpPolicy)"),
    "agent.total_timesteps": _opt(30000, "environment steps per agent", minimum=1),
    "agent.risk": _opt("cvar", "risk measure over reward hypotheses", choices=RISK_NAMES),
    "agent.alpha": _opt(None, "cvar/broil level (default: the measure's own)", float, nullable=True,
                        minimum=0.0, maximum=1.0),
    "agent.lam": _opt(None, "mean_std/lcb weight of the std; broil weight of the mean", float, nullable=True,
                      minimum=0.0),
    "agent.beta": _opt(None, "entropic risk aversion", float, nullable=True, minimum=0.0),
    "agent.mode": _opt("auto", "wrapper's per-step reward (auto: mean for the risk agents, else from agent.risk)",
                       choices=WRAPPER_MODES),
    "agent.risk_anneal_fraction": _opt(0.0, "risk agents: share of training over which risk moves from mean to target",
                                       float, minimum=0.0, maximum=1.0),
    "agent.hyperparams": _opt({}, "extra constructor kwargs of the algorithm (e.g. n_steps, learning_rate)", dict),
    "agent.checkpoint_freq": _opt(10000, "save a resumable checkpoint every this many steps (0: never)", minimum=0),
    "baselines": _opt(["mean"], "agents trained for comparison: mean (risk-neutral, same posterior), "
                      "oracle (trained on the env's true reward)", list, choices=BASELINES),
    # -- evaluation
    "eval.enabled": _opt(True, "evaluate the agents at the end of `train.py` (all stages)"),
    "eval.episodes": _opt(20, "evaluation episodes per agent", minimum=1),
}

_DICT_KEYS = frozenset(key for key, option in SCHEMA.items() if option.kind is dict)


# ---------------------------------------------------------------------------- nested access
def get(config: Mapping[str, Any], key: str) -> Any:
    """Value at a dotted key, e.g. ``get(config, "agent.risk")``."""
    node: Any = config
    for part in key.split("."):
        node = node[part]
    return node


def set_dotted(config: dict[str, Any], key: str, value: Any) -> None:
    """Set a dotted key in place, creating intermediate dicts."""
    *parents, leaf = key.split(".")
    node = config
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"cannot set {key!r}: {part!r} holds a value, not a section")
    node[leaf] = value


def defaults() -> dict[str, Any]:
    """The embedded default config (a fresh nested dict)."""
    config: dict[str, Any] = {}
    for key, option in SCHEMA.items():
        set_dotted(config, key, copy.deepcopy(option.default))
    return config


def _flatten(config: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    """(dotted key, value) pairs; dicts under a dict-valued schema key stay whole."""
    for part, value in config.items():
        key = f"{prefix}{part}"
        if isinstance(value, Mapping) and key not in _DICT_KEYS:
            if not value and not any(k.startswith(key + ".") for k in SCHEMA):
                yield key, value
            yield from _flatten(value, key + ".")
        else:
            yield key, value


# ---------------------------------------------------------------------------- errors with suggestions
def _unknown_key(key: str) -> ConfigError:
    section = key.rsplit(".", 1)[0] + "." if "." in key else ""
    depth = key.count(".")
    siblings = [k for k in SCHEMA if k.startswith(section) and k.count(".") == depth]
    sections = sorted({k.split(".")[depth] for k in SCHEMA if k.startswith(section) and k.count(".") > depth})
    siblings = siblings + [f"{section}{name}.*" for name in sections] or list(SCHEMA)
    close = difflib.get_close_matches(key, list(SCHEMA), n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"unknown config key {key!r}.{hint} Valid keys here: {', '.join(siblings)}")


def _bad_choice(key: str, value: Any, choices: Iterable[Any]) -> ConfigError:
    choices = list(choices)
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"{key}={value!r} is not allowed.{hint} Choose one of: {', '.join(map(str, choices))}")


def _type_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join({bool: "true/false", dict: "a mapping", list: "a list"}.get(k, k.__name__) for k in kinds)


# ---------------------------------------------------------------------------- validation
def _check_value(key: str, option: Option, value: Any) -> Any:
    """Return ``value`` coerced where lossless (int -> float), else raise ConfigError."""
    if value is None:
        if option.nullable:
            return None
        raise ConfigError(f"{key} must not be null; give {_type_name(option.kind)} (default {option.default!r})")
    if option.kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if option.kind is list and isinstance(value, (str, tuple)):
        value = [value] if isinstance(value, str) else list(value)
    # bool is an int subclass: refuse True where a number is meant, and 1 where a flag is meant
    wrong_bool = isinstance(value, bool) and option.kind is not bool
    if wrong_bool or not isinstance(value, option.kind):
        example = f", e.g. the default {option.default!r}" if option.default is not None else ""
        raise ConfigError(
            f"{key}={value!r} has the wrong type ({type(value).__name__}); give {_type_name(option.kind)}{example}"
        )
    if option.choices is not None:
        for item in value if isinstance(value, list) else [value]:
            if item not in option.choices:
                raise _bad_choice(key, item, option.choices)
    if option.minimum is not None and value < option.minimum:
        raise ConfigError(f"{key}={value!r} is too small; it must be >= {option.minimum}")
    if option.maximum is not None and value > option.maximum:
        raise ConfigError(f"{key}={value!r} is too large; it must be <= {option.maximum}")
    return value


def validate(config: Mapping[str, Any]) -> dict[str, Any]:
    """Check every key and value of a (possibly partial) config against :data:`SCHEMA`.

    Risk parameters the chosen measure does not read (e.g. a preset's ``agent.alpha`` after
    ``agent.risk=worst``) are reset to null, so the resolved config shows what is used.

    :return: a full config: the defaults updated with ``config``, values coerced.
    :raises ConfigError: naming the first bad key and its valid choices.
    """
    resolved = defaults()
    for key, value in _flatten(config):
        if key not in SCHEMA:
            raise _unknown_key(key)
        set_dotted(resolved, key, _check_value(key, SCHEMA[key], copy.deepcopy(value)))
    for parameter in _RISK_PARAMETERS_ALL:
        if parameter not in risk_parameters_used(resolved["agent"]):
            resolved["agent"][parameter] = None
    return resolved


#: risk measure -> the agent.* parameters it reads
_RISK_PARAMETERS = {"mean": (), "cvar": ("alpha",), "worst": (), "mean_std": ("lam",),
                    "entropic": ("beta",), "broil": ("lam", "alpha")}
_RISK_PARAMETERS_ALL = ("alpha", "lam", "beta")


def risk_parameters_used(agent: Mapping[str, Any]) -> set[str]:
    """The ``agent.*`` risk parameters that ``agent.risk`` and ``agent.mode`` read."""
    used = set(_RISK_PARAMETERS[agent["risk"]])
    used |= {"lcb": {"lam"}, "cvar": {"alpha"}}.get(agent["mode"], set())
    return used


def _check_overridden_risk_parameters(config: Mapping[str, Any], overridden: Iterable[str]) -> None:
    """A risk parameter set on the command line that the chosen measure ignores is a mistake."""
    agent = config["agent"]
    used = risk_parameters_used(agent)
    for parameter in _RISK_PARAMETERS_ALL:
        if f"agent.{parameter}" in overridden and parameter not in used:
            takes = ", ".join(f"agent.{p}" for p in sorted(used)) or "no parameters"
            raise ConfigError(
                f"agent.{parameter} is not used by agent.risk={agent['risk']!r} (agent.mode={agent['mode']!r}), "
                f"which takes {takes}; remove it or change agent.risk"
            )


def _check_overridden_preference_schedule(config: Mapping[str, Any], overridden: Iterable[str]) -> None:
    """The labelling schedule applies to preferences only; asking it of reward labels is a mistake."""
    for key in ("labels.initial_fraction", "labels.update_every"):
        if key in overridden and config["labels"]["kind"] != "preferences":
            raise ConfigError(
                f"{key} schedules preference labels, but labels.kind={config['labels']['kind']!r} gathers every "
                "label before training; add --labels preferences or remove it"
            )


# ---------------------------------------------------------------------------- overrides and files
def parse_override(text: str) -> tuple[str, Any]:
    """Split ``"agent.alpha=0.1"`` into ``("agent.alpha", 0.1)``; the value is parsed by yaml.safe_load."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {text!r} must look like key=value, e.g. agent.risk=cvar")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot parse the value of override {text!r} as YAML: {exc}") from exc
    return key, value


def apply_overrides(config: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``key=value`` strings to a copy of ``config``; keys inside dict options are allowed
    (``agent.hyperparams.n_steps=64``)."""
    config = copy.deepcopy(config)
    for text in overrides:
        key, value = parse_override(text)
        owner = next((k for k in _DICT_KEYS if key.startswith(k + ".")), None)
        if key not in SCHEMA and owner is None:
            raise _unknown_key(key)
        set_dotted(config, key, value)
    return config


def preset_names() -> list[str]:
    """Names of the presets shipped in ``ruagent/configs/`` (``--config NAME``)."""
    folder = resources.files("ruagent") / "configs"
    # sweep_*.yaml beside them are sweep files (train.py sweep), not run configs
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml") and not p.name.startswith("sweep"))


def load_config_file(name_or_path: str | Path) -> dict[str, Any]:
    """Read a preset by name (``lavaworld``) or a YAML file by path, with ``yaml.safe_load``."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        text = path.read_text(encoding="utf-8")
    else:
        names = preset_names()
        if str(name_or_path) not in names:
            raise _bad_choice("--config", name_or_path, [*names, "<path to a .yaml file>"])
        text = (resources.files("ruagent") / "configs" / f"{name_or_path}.yaml").read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{name_or_path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{name_or_path} must hold a YAML mapping of config keys, got {type(data).__name__}")
    return data


def resolve(config_file: str | Path | None = None, overrides: Iterable[str] = ()) -> dict[str, Any]:
    """Schema defaults <- config file (default: the :data:`DEFAULT_PRESET`) <- overrides, validated."""
    base = load_config_file(config_file if config_file is not None else DEFAULT_PRESET)
    overrides = list(overrides)
    config = validate(apply_overrides(validate(base), overrides))
    overridden = {parse_override(text)[0] for text in overrides}
    _check_overridden_risk_parameters(config, overridden)
    _check_overridden_preference_schedule(config, overridden)
    check_label_split(config)
    return config


def check_label_split(config: Mapping[str, Any]) -> None:
    """Reward labels held out for calibration must leave at least one label to fit the posterior on."""
    labels = config["labels"]
    if labels["kind"] != "rewards":
        return
    n_heldout = round(labels["heldout_fraction"] * labels["budget"])  # as ruagent.cli.stages splits them
    if labels["budget"] - n_heldout < 1:
        raise ConfigError(
            f"labels.budget={labels['budget']} with labels.heldout_fraction={labels['heldout_fraction']} holds out "
            f"{n_heldout} of {labels['budget']} reward labels and leaves none to fit the posterior on; "
            "labels.budget * (1 - labels.heldout_fraction) must leave at least one label: raise labels.budget or "
            "lower labels.heldout_fraction"
        )


def dump(config: Mapping[str, Any]) -> str:
    """YAML text of a config, keys in schema order (what ``config.yaml`` of a run holds)."""
    return yaml.safe_dump(dict(config), sort_keys=False, default_flow_style=False)


def help_text() -> str:
    """Every key with the value ``python train.py`` uses, allowed values and meaning (end of ``--help``)."""
    effective = resolve()
    lines = [f"config keys (set with --set key=value). Values shown are those of `python train.py` (the "
             f"{DEFAULT_PRESET!r} preset); with --config FILE, keys the file leaves out take the schema default "
             "shown in brackets where it differs:"]

    def show(value: Any) -> str:
        return yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix("...").strip()

    for key, option in SCHEMA.items():
        value = get(effective, key)
        schema_default = "" if value == option.default else f"  [schema default {show(option.default)}]"
        choices = f" {{{','.join(map(str, option.choices))}}}" if option.choices else ""
        lines.append(f"  {key}={show(value)}{choices}{schema_default}\n      {option.help}")
    return "\n".join(lines)
