"""Build what a config describes: envs, the reward posterior, the agents.

Everything here is checked by :func:`check_buildable` before any training starts: the env
id is registered, keyword arguments name real parameters of the classes they go to, the
algorithm fits the env's action space, and the risk measure has a per-step wrapper mode
when the algorithm is not a risk agent (RiskPPO, RiskSAC, RiskDQN). Errors are
:class:`~ruagent.cli.config.ConfigError` naming the key, the valid choices and the closest match.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from collections.abc import Callable
from typing import Any

import gymnasium as gym
from gymnasium import spaces

from ruagent.cli.config import ConfigError

__all__ = [
    "AgentSpec",
    "agent_specs",
    "algo_class",
    "check_buildable",
    "make_deploy_vec_env",
    "make_env",
    "make_reward_model",
    "resolve_device",
]

#: risk measure -> the wrapper mode that scalarises it per step (for SB3 algorithms)
_STEP_MODE = {"mean": "mean", "cvar": "cvar", "worst": "worst", "mean_std": "lcb"}
_DISCRETE_ONLY = {"dqn", "riskdqn"}
_BOX_ONLY = {"sac", "td3", "ddpg", "risksac"}
#: risk agent -> the SB3 algorithm of its mean and oracle baselines (with K = 1 and the mean, the same algorithm)
_RISK_AGENTS = {"riskppo": "ppo", "risksac": "sac", "riskdqn": "dqn"}


@dataclasses.dataclass(frozen=True)
class AgentSpec:
    """One agent of a run: its folder name, algorithm, how it sees rewards.

    :param name: folder under ``agents/`` (``risk``, ``mean`` or ``oracle``).
    :param algo: key of :func:`algo_class`.
    :param risk: RiskPPO's risk measure name and parameters (None for SB3 algorithms).
    :param mode: the wrapper's per-step reward mode; None trains on the env's true reward
        (the oracle).
    :param wrapper_kwargs: ``lcb_c`` / ``cvar_alpha`` / ``standardise`` for the wrapper.
    """

    name: str
    algo: str
    risk: tuple[str, dict[str, float]] | None
    mode: str | None
    wrapper_kwargs: dict[str, Any]


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; other names pass through (checked by torch)."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"device={device!r} is not a torch device ({exc}); use auto, cpu, cuda or cuda:N") from exc
    return device


# ---------------------------------------------------------------------------- lookups
def algo_class(algo: str) -> type:
    """The class of ``algo``: a risk agent (riskppo, risksac, riskdqn) or SB3's (``ppo`` -> ``PPO``)."""
    if algo in _RISK_AGENTS:
        from ruagent import agents

        return {"riskppo": agents.RiskPPO, "risksac": agents.RiskSAC, "riskdqn": agents.RiskDQN}[algo]
    import stable_baselines3

    return getattr(stable_baselines3, algo.upper())


def reward_model_class(family: str) -> type:
    import ruagent

    return {"ensemble": ruagent.EnsembleRewardModel, "linear": ruagent.BayesianLinearRewardModel}[family]


def _parameters(fn: Callable) -> set[str]:
    """Names ``fn`` accepts; follows ``**kwargs`` up the MRO for constructors."""
    names: set[str] = set()
    targets = [c.__init__ for c in fn.__mro__ if "__init__" in vars(c)] if inspect.isclass(fn) else [fn]
    for target in targets:
        params = inspect.signature(target).parameters
        names |= {n for n, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
            break
    return {name for name in names - {"self"} if not name.startswith("_")}  # (e.g. SB3's _init_setup_model)


def _check_kwargs(key: str, kwargs: dict[str, Any], fn: Callable, reserved: set[str]) -> None:
    """Refuse kwargs ``fn`` does not take, or that train.py sets itself from other keys."""
    accepted = _parameters(fn) - reserved
    for name in kwargs:
        if name in reserved:
            raise ConfigError(f"{key}.{name} is set by train.py from other config keys; use those instead")
        if name not in accepted:
            close = difflib.get_close_matches(name, sorted(accepted), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"{key}.{name} is not a parameter of {getattr(fn, '__qualname__', fn)}.{hint} "
                f"Valid: {', '.join(sorted(accepted)) or 'none (remove the key)'}"
            )


# ---------------------------------------------------------------------------- envs
def make_env(config: dict[str, Any], variant_kwargs: dict[str, Any], **make_kwargs: Any) -> gym.Env:
    """``gym.make`` the configured env id with the variant's kwargs."""
    env_config = config["env"]
    if env_config["max_episode_steps"] is not None:
        make_kwargs.setdefault("max_episode_steps", env_config["max_episode_steps"])
    return gym.make(env_config["id"], **variant_kwargs, **make_kwargs)


def labelling_render_mode(config: dict[str, Any], variant_kwargs: dict[str, Any]) -> str | None:
    """How to show segments to a person: in the terminal (``human``) ``"ansi"`` where the env has it
    (gridworlds), else ``"rgb_array"`` (side-by-side PNGs), else None (raw arrays); on the web page
    ``"rgb_array"`` (animations), or a ConfigError if the env has none; None for the synthetic labeller."""
    labeller = config["labels"]["labeller"]
    if config["labels"]["kind"] != "preferences" or labeller not in ("human", "web"):
        return None
    env = make_env(config, variant_kwargs)
    modes = env.metadata.get("render_modes", [])
    env.close()
    if labeller == "web":
        if "rgb_array" not in modes:
            raise ConfigError(f"labels.labeller=web shows rgb_array frames, and {config['env']['id']} renders only "
                              f"{modes or 'nothing'}; use labels.labeller=human (the terminal) or another env")
        return "rgb_array"
    return next((mode for mode in ("ansi", "rgb_array") if mode in modes), None)


def _check_web_labeller(config: dict[str, Any]) -> None:
    """``labels.labeller=web``: the web extra is installed and the labelling envs render rgb_array frames."""
    if config["labels"]["kind"] != "preferences" or config["labels"]["labeller"] != "web":
        return
    import importlib.util

    missing = [name for name in ("fastapi", "uvicorn", "PIL") if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(f"labels.labeller=web needs the web extra ({', '.join(missing)} missing): "
                          "pip install \"ruagent[web]\" (or pip install -e \".[web]\" in a checkout)")
    labelling_render_mode(config, config["env"]["label_kwargs"])  # raises if there are no rgb_array frames


def make_web_labeller(config: dict[str, Any]) -> Any:
    """The run's browser labeller (one server for the labels before and during training), or None when
    ``labels.labeller`` is not ``web``. Its progress shows the whole ``labels.budget``."""
    labels = config["labels"]
    if labels["kind"] != "preferences" or labels["labeller"] != "web":
        return None
    from ruagent.preferences.web import WebLabeller

    return WebLabeller(host=labels["web_host"], port=labels["web_port"], budget=labels["budget"])


def make_run_labeller(config: dict[str, Any]) -> Any:
    """The one labeller object a run asks before and during training: the browser page
    (:func:`make_web_labeller`), B-Pref's teacher ``labels.teacher`` (a seeded
    :meth:`~ruagent.preferences.labellers.SyntheticLabeller.b_pref`), or None, where the stages build
    ``labels.labeller`` by name."""
    labels = config["labels"]
    if labels["kind"] != "preferences":
        return None
    if labels["teacher"] is not None:
        from ruagent.preferences.labellers import SyntheticLabeller

        return SyntheticLabeller.b_pref(labels["teacher"], segment_return=labels["teacher_scale"] or 1.0,
                                        seed=config["seed"])
    return make_web_labeller(config)


def _check_teacher(config: dict[str, Any]) -> None:
    """``labels.teacher`` is the synthetic labeller's; the skip and equal teachers need their threshold scale."""
    labels = config["labels"]
    if labels["teacher"] is None:
        if labels["teacher_scale"] is not None:
            raise ConfigError("labels.teacher_scale scales the skip and equal teachers' thresholds, but "
                              "labels.teacher is null; set labels.teacher=skip or equal, or remove it")
        return
    if labels["kind"] != "preferences" or labels["labeller"] != "synthetic":
        raise ConfigError(f"labels.teacher={labels['teacher']!r} is a simulated teacher: it answers preferences "
                          "(labels.kind=preferences) in place of the synthetic labeller (labels.labeller=synthetic), "
                          f"not with labels.kind={labels['kind']!r}, labels.labeller={labels['labeller']!r}")
    if labels["teacher"] in ("skip", "equal") and labels["teacher_scale"] is None:
        raise ConfigError(f"labels.teacher={labels['teacher']!r} skips or ties pairs below 0.1 x a segment's mean "
                          "true return, which ruagent cannot know before labelling: give it as labels.teacher_scale "
                          "(e.g. the mean reward per step x labels.segment_length)")


def make_deploy_vec_env(
    config: dict[str, Any], spec: AgentSpec, reward_model: Any, seed: int, render_mode: str | None = None
):
    """The deployment-variant VecEnv an agent trains in: Monitor inside each env, the posterior
    wrapper outside (no wrapper for the oracle, which trains on the env's reward). ``render_mode``
    lets a human labeller see the agent's segments."""
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    env_config = config["env"]
    make_kwargs = {} if render_mode is None else {"render_mode": render_mode}
    venv = make_vec_env(
        lambda: make_env(config, env_config["deploy_kwargs"], **make_kwargs),
        n_envs=env_config["n_envs"],
        seed=seed,
        vec_env_cls=SubprocVecEnv if env_config["vec_env"] == "subproc" else DummyVecEnv,
    )
    if spec.mode is None:
        return venv
    from ruagent.wrappers import VecRewardUncertaintyWrapper

    return VecRewardUncertaintyWrapper(venv, reward_model, mode=spec.mode, seed=seed, **spec.wrapper_kwargs)


# ---------------------------------------------------------------------------- posterior
def make_reward_model(config: dict[str, Any], env: gym.Env, device: str) -> Any:
    """An unfitted posterior of the configured family, for ``env``'s spaces."""
    rm = config["reward_model"]
    cls = reward_model_class(rm["family"])
    kwargs = dict(n_members=rm["n_members"], features=rm["features"], seed=config["seed"], **rm["kwargs"])
    if "device" in _parameters(cls):
        kwargs["device"] = device
    model = cls(env.observation_space, env.action_space, **kwargs)
    model.bind(env)
    return model


# ---------------------------------------------------------------------------- agents
def agent_specs(config: dict[str, Any]) -> list[AgentSpec]:
    """The risk-averse agent plus the configured baselines, in training order."""
    agent = config["agent"]
    params = {p: agent[p] for p in ("alpha", "lam", "beta") if agent[p] is not None}
    wrapper_kwargs = {
        "lcb_c": agent["lam"] if agent["lam"] is not None else 1.0,
        "cvar_alpha": agent["alpha"] if agent["alpha"] is not None else 0.1,
        "standardise": config["reward_model"]["standardise"],
    }
    risk_params = {k: v for k, v in params.items() if k in _risk_parameter_names(agent["risk"])}
    specs = [_spec("risk", agent["algo"], agent["risk"], risk_params, agent["mode"], wrapper_kwargs)]
    if "mean" in config["baselines"]:
        # The naive agent maximises the posterior mean reward, analytic where the family has one (the
        # wrapper's mean mode); RiskPPO with risk=mean would average the K draws instead, and sampling
        # noise on never-labelled weights would then steer it. With K = 1 and mean, RiskPPO is PPO.
        mean_algo = _RISK_AGENTS.get(agent["algo"], agent["algo"])
        specs.append(_spec("mean", mean_algo, "mean", {}, "auto" if agent["mode"] == "auto" else "mean",
                           wrapper_kwargs))
    if "oracle" in config["baselines"]:
        specs.append(AgentSpec("oracle", _RISK_AGENTS.get(agent["algo"], agent["algo"]), None, None, {}))
    return specs


def _risk_parameter_names(risk_name: str) -> tuple[str, ...]:
    from ruagent.risk import RISK_MEASURES

    return tuple(RISK_MEASURES[risk_name][1])


def _spec(name: str, algo: str, risk_name: str, params: dict, mode: str, wrapper_kwargs: dict) -> AgentSpec:
    if algo in _RISK_AGENTS:
        # the risk agents read all member rewards (info dict / relabelled replay); the scalar reward is only logged
        return AgentSpec(name, algo, (risk_name, params), "mean" if mode == "auto" else mode, wrapper_kwargs)
    if mode == "auto":
        if risk_name not in _STEP_MODE:
            raise ConfigError(
                f"agent.risk={risk_name!r} has no per-step wrapper mode; only the risk agents (agent.algo=riskppo, "
                f"risksac, riskdqn) optimise it; "
                f"with agent.algo={algo!r} choose agent.risk from {', '.join(_STEP_MODE)} or set agent.mode"
            )
        mode = _STEP_MODE[risk_name]
    return AgentSpec(name, algo, None, mode, wrapper_kwargs)


def agent_kwargs(config: dict[str, Any], spec: AgentSpec, observation_space: spaces.Space) -> dict[str, Any]:
    """Constructor kwargs of ``spec``'s algorithm (without ``env``)."""
    agent = config["agent"]
    policy = agent["policy"]
    if policy == "auto":
        policy = "MultiInputPolicy" if isinstance(observation_space, spaces.Dict) else "MlpPolicy"
    kwargs: dict[str, Any] = {"policy": policy, "seed": config["seed"], "verbose": 0, **agent["hyperparams"]}
    if spec.risk is not None:
        kwargs.update(risk=spec.risk[0], risk_kwargs=spec.risk[1], risk_anneal_fraction=agent["risk_anneal_fraction"])
    return kwargs


#: constructor kwargs train.py sets itself (from seed, device, run folder, agent.risk ...)
_RESERVED_ALGO_KWARGS = {"policy", "env", "seed", "device", "tensorboard_log", "risk", "risk_kwargs",
                         "risk_anneal_fraction"}


def check_buildable(config: dict[str, Any]) -> None:
    """Everything about ``config`` that can be checked without training; raises ConfigError."""
    import ruagent  # noqa: F401  (registers the testbeds)

    env_id = config["env"]["id"]
    if env_id not in gym.registry:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=3)
        ours = sorted(k for k in gym.registry if k.startswith("ruagent/") and "-" not in k[8:].rsplit("-v", 1)[0])
        raise ConfigError(
            f"env.id={env_id!r} is not a registered Gymnasium env. "
            + (f"Did you mean {' or '.join(map(repr, close))}? " if close else "")
            + f"ruagent testbeds: {', '.join(ours)}"
        )
    resolve_device(config["device"])
    _check_teacher(config)
    rm = config["reward_model"]
    cls = reward_model_class(rm["family"])
    _check_kwargs("reward_model.kwargs", rm["kwargs"], cls,
                  {"observation_space", "action_space", "n_members", "features", "seed", "device"})
    _check_kwargs("reward_model.fit", rm["fit"], cls.fit, {"data", "env", "transitions", "progress_bar"})
    for variant_key in ("label_kwargs", "deploy_kwargs"):
        try:
            env = make_env(config, config["env"][variant_key])
        except TypeError as exc:
            raise ConfigError(f"env.{variant_key}={config['env'][variant_key]!r} is not accepted by {env_id}: "
                              f"{exc}") from exc
        except gym.error.DependencyNotInstalled as exc:  # a testbed of an optional extra (SpeedLimitCheetah: mujoco)
            raise ConfigError(f"env.id={env_id!r}: {exc}") from None
        action_space = env.action_space
        if rm["features"] == "env":
            try:
                env.get_wrapper_attr("reward_features")
            except AttributeError:
                raise ConfigError(
                    f"reward_model.features='env' but {env_id} has no reward_features(obs, action, next_obs); "
                    "use reward_model.features=transition (the featurised transition) or the env's preset"
                ) from None
        env.close()
    _check_web_labeller(config)
    specs = agent_specs(config)
    for spec in specs:
        if spec.algo in _DISCRETE_ONLY and not isinstance(action_space, spaces.Discrete):
            raise ConfigError(f"agent.algo={spec.algo!r} needs Discrete actions but {env_id} has {action_space}; "
                              "choose riskppo, risksac, ppo, a2c or sac")
        if spec.algo in _BOX_ONLY and not isinstance(action_space, spaces.Box):
            raise ConfigError(f"agent.algo={spec.algo!r} needs Box actions but {env_id} has {action_space}; "
                              "choose riskppo, riskdqn, ppo, a2c or dqn")
    for spec in specs:
        try:
            _check_kwargs("agent.hyperparams", config["agent"]["hyperparams"], algo_class(spec.algo),
                          _RESERVED_ALGO_KWARGS)
        except ConfigError as exc:
            raise ConfigError(f"{exc}. (agent.hyperparams come from the preset or config file, tuned for its "
                              "algorithm; start afresh with --set 'agent.hyperparams={}')") from None
