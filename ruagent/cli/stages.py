"""The stages of a run, each usable alone: labels + posterior fit, agent training, evaluation.

They follow ruagent's experiment protocol (docs/cli.md): labels come from the *training* variant of the env
(``env.label_kwargs``); agents train in the *deployment* variant (``env.deploy_kwargs``)
through :class:`ruagent.VecRewardUncertaintyWrapper`, so they never see the env's reward
(except the oracle baseline, which is trained on it to measure regret); evaluation scores
them by the env's reward in the deployment variant.

Each stage skips what a previous (possibly killed) attempt finished, which is what
``train.py --resume`` relies on: a saved posterior is reused, an agent with a complete final
``model.zip`` is skipped (a torn one is set aside), an agent with checkpoints continues from the
newest complete one.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from ruagent import risk as risk_measures
from ruagent.cli import factory
from ruagent.cli.checkpoints import (
    AtomicCheckpointCallback,
    is_complete_model_zip,
    latest_checkpoint,
    load_without_unpickling,
)
from ruagent.cli.run_dir import RunDir, RunNotFoundError
from ruagent.io import atomic_write

__all__ = ["fit_reward", "import_reward_model", "run_stages", "train_agents", "train_one_agent"]

console = Console(stderr=True, soft_wrap=True)


# ---------------------------------------------------------------------------- labels and posterior
def fit_reward(config: dict[str, Any], run: RunDir, labeller: Any = None) -> Path:
    """Gather labels in the training variant, fit the posterior, save it as ``reward_model.pt``.

    Reward labels: ``labels.budget`` transitions of a uniformly random policy, of which
    ``labels.heldout_fraction`` are kept out of fitting (``labels/heldout.npz``, for the
    calibration metrics of evaluate.py). Preferences: the preference-learning loop of
    :mod:`ruagent.preferences` with ``labels.initial_fraction`` of the ``labels.budget``
    queries (the rest are asked during agent training, see :func:`train_one_agent`).
    ``labeller``: a Labeller object to use instead of ``labels.labeller`` by name (train.py passes the
    run's one :class:`~ruagent.preferences.web.WebLabeller`, so both stages share its page).
    """
    if run.reward_model_path.is_file():
        console.print(f"posterior: reusing {run.reward_model_path}")
        return run.reward_model_path
    labels = config["labels"]
    device = factory.resolve_device(config["device"])
    label_kwargs = config["env"]["label_kwargs"]
    render_mode = factory.labelling_render_mode(config, label_kwargs)  # a human labeller sees the segments
    env = factory.make_env(config, label_kwargs, **({} if render_mode is None else {"render_mode": render_mode}))
    model = factory.make_reward_model(config, env, device)
    if labels["kind"] == "rewards":
        history, n_labels = _fit_on_reward_labels(config, run, env, model)
    else:
        history, n_labels = _fit_on_preferences(config, run, env, model, labeller)
    from ruagent.callbacks import log_posterior_fit

    log_posterior_fit(run.tensorboard_dir / "posterior", history, n_labels=n_labels)
    model.save(run.reward_model_path)
    env.close()
    console.print(f"posterior: {config['reward_model']['family']} with K={model.n_members} fitted on {n_labels} "
                  f"{labels['kind'][:-1]} labels -> {run.reward_model_path}")
    return run.reward_model_path


def _fit_on_reward_labels(config: dict[str, Any], run: RunDir, env: Any, model: Any) -> tuple[dict, int]:
    from ruagent.data import collect_transitions

    labels, seed = config["labels"], config["seed"]
    transitions = collect_transitions(env, labels["budget"], seed=seed, progress_bar=config["progress_bar"])
    order = np.random.default_rng(seed).permutation(len(transitions))
    n_heldout = round(labels["heldout_fraction"] * len(transitions))
    train, heldout = transitions[np.sort(order[n_heldout:])], transitions[np.sort(order[:n_heldout])]
    train.save(run.labels_path("train"))
    if n_heldout:
        heldout.save(run.labels_path("heldout"))
    history = model.fit(train, progress_bar=config["progress_bar"], **config["reward_model"]["fit"])
    return _as_history(history), len(train)


def _fit_on_preferences(config: dict[str, Any], run: RunDir, env: Any, model: Any,
                        labeller: Any = None) -> tuple[dict, int]:
    from ruagent.preferences import learn_reward_from_preferences

    labels = config["labels"]
    # the labelling session is autosaved, so --resume after a crash loses no answered query
    model, label_log = learn_reward_from_preferences(
        env, model, budget=labels_before_training(labels), query=labels["query"],
        labeller=labels["labeller"] if labeller is None else labeller,
        segment_length=labels["segment_length"], seed=config["seed"], progress_bar=config["progress_bar"],
        session=run.labels_path("preferences"),
    )
    rounds = label_log.meta.get("history", [])  # one dict of fit metrics per labelling round
    history = {key: [float(r[key]) for r in rounds if np.isscalar(r.get(key))] for key in (rounds[0] if rounds else {})}
    return {key: values for key, values in history.items() if values}, len(label_log)


def labels_before_training(labels: dict[str, Any]) -> int:
    """Preference labels asked before agent training: ``initial_fraction`` of the budget, at least one."""
    return max(1, round(labels["initial_fraction"] * labels["budget"]))


def labels_during_training(config: dict[str, Any], spec: factory.AgentSpec) -> bool:
    """Whether ``spec`` is the agent whose rollouts the rest of the preference budget is asked on.

    That is the first agent reading the posterior (the risk agent): it refines the run's one
    posterior while it trains, and the agents after it train on the refined posterior.
    """
    labels = config["labels"]
    if labels["kind"] != "preferences" or labels_before_training(labels) >= labels["budget"]:
        return False
    return spec.name == next(s.name for s in factory.agent_specs(config) if s.mode is not None)


def _as_history(history: Any) -> dict[str, list[float]]:
    """Loss curves as {name: per-epoch values}, whatever a family's fit returned."""
    if not isinstance(history, dict):
        return {}
    # per-epoch curves only (ensembles also report e.g. best_epoch per member)
    return {str(k): [float(x) for x in np.atleast_1d(v)] for k, v in history.items()
            if str(k).endswith("loss") and np.ndim(v) == 1 and len(v)}


def import_reward_model(source: str | Path, run: RunDir) -> Path:
    """Copy a saved posterior (a ``.pt`` file or a run folder holding one) into ``run``, with
    the source run's held-out labels when there are any, so evaluation can use them."""
    source = Path(source)
    source_run = RunDir(source) if source.is_dir() else None
    path = source_run.reward_model_path if source_run else source
    if not path.is_file():
        raise RunNotFoundError(f"--reward-model {source}: no reward model at {path}; give a reward_model.pt "
                               "or a run folder made by `train.py fit-reward`")
    with atomic_write(run.reward_model_path, "wb") as f:
        f.write(path.read_bytes())
    if source_run is not None:
        for split in ("train", "heldout"):
            if source_run.labels_path(split).is_file():
                run.labels_path(split).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source_run.labels_path(split), run.labels_path(split))
    return run.reward_model_path


# ---------------------------------------------------------------------------- agents
def _preference_callback(config: dict[str, Any], run: RunDir, reward_model: Any, record_frames: bool,
                         labeller: Any = None) -> Any:
    """The callback that asks the rest of the preference budget on the agent's rollouts and refits.

    It continues the run's labelling session (``labels/preferences``), so a resumed run refits
    on every label answered before the crash and asks only the ones still due. Training pauses while
    a round waits for a person's answers, at most ``labels.wait_timeout`` seconds without one.
    """
    from ruagent.preferences import PreferenceLearningCallback

    labels = config["labels"]
    return PreferenceLearningCallback(
        reward_model, budget=labels["budget"], query=labels["query"],
        labeller=labels["labeller"] if labeller is None else labeller,
        segment_length=labels["segment_length"], update_every=labels["update_every"],
        wait_timeout=labels["wait_timeout"],
        initial_fraction=labels_before_training(labels) / labels["budget"],
        session=run.labels_path("preferences"), record_frames=record_frames, seed=config["seed"],
    )


def train_agents(config: dict[str, Any], run: RunDir, labeller: Any = None) -> list[str]:
    """Train every agent of the config that has no final model yet; returns the agent names.
    ``labeller``: as for :func:`fit_reward`, for the preferences asked during training."""
    specs = factory.agent_specs(config)
    for spec in specs:
        train_one_agent(config, run, spec, labeller)
    return [spec.name for spec in specs]


def train_one_agent(config: dict[str, Any], run: RunDir, spec: factory.AgentSpec, labeller: Any = None) -> Path:
    """Train (or continue) one agent in the deployment variant and save ``agents/<name>/model.zip``.

    Continues from the newest checkpoint if there is one, with ``reset_num_timesteps=False``
    and the remaining steps, so the total equals an uninterrupted run's.
    """
    final = run.model_path(spec.name)
    # a posterior refitted during training is committed in two steps around model.zip (see below)
    refitted = run.reward_model_path.with_name("reward_model.refitted.pt")
    if final.is_file() and not is_complete_model_zip(final):
        # not written by train.py (its writes are atomic): a copy cut short, a damaged disk
        torn = final.with_name("model.torn.zip")
        os.replace(final, torn)
        console.print(f"agent {spec.name}: {final} is incomplete (not a whole SB3 zip with its 'data' entry); moved "
                      f"it to {torn.name} and continuing from the last checkpoint")
    if final.is_file():
        if refitted.is_file():  # killed between model.zip and the rename: finish the commit
            os.replace(refitted, run.reward_model_path)
        console.print(f"agent {spec.name}: done already ({final})")
        return final
    from ruagent.callbacks import GoodhartEvalCallback, RewardUncertaintyCallback

    agent, seed, device = config["agent"], config["seed"], factory.resolve_device(config["device"])
    reward_model_path = str(run.reward_model_path)
    labelling_here = spec.mode is not None and labels_during_training(config, spec)
    render_mode = factory.labelling_render_mode(config, config["env"]["deploy_kwargs"]) if labelling_here else None
    venv = factory.make_deploy_vec_env(config, spec, reward_model_path, seed, render_mode)
    algo = factory.algo_class(spec.algo)
    checkpoint = latest_checkpoint(run.checkpoint_dir(spec.name))
    kwargs = factory.agent_kwargs(config, spec, venv.observation_space)
    model = algo(env=venv, device=device, tensorboard_log=str(run.tensorboard_dir), **kwargs)
    if checkpoint is not None:
        path, steps = checkpoint
        console.print(f"agent {spec.name}: resuming from {path} (step {steps})")
        # what SB3 would unpickle from the file (spaces, schedules, policy class) comes from this fresh model
        model = load_without_unpickling(algo, path, template=model, device=device)
        model.tensorboard_log = str(run.tensorboard_dir)  # the run folder may have moved
    callbacks = []
    if agent["checkpoint_freq"]:
        callbacks.append(AtomicCheckpointCallback(agent["checkpoint_freq"], run.checkpoint_dir(spec.name)))
    labelling = None
    if spec.mode is not None:
        reward_model = venv.reward_model  # the wrapper's posterior: what the agent sees, refitted in place if online
        if labelling_here:
            labelling = _preference_callback(config, run, reward_model, record_frames=render_mode is not None,
                                             labeller=labeller)
            callbacks.append(labelling)
        eval_env = factory.make_env(config, config["env"]["deploy_kwargs"])
        callbacks += [
            RewardUncertaintyCallback(reward_model=reward_model),
            GoodhartEvalCallback(eval_env, reward_model=reward_model, n_eval_episodes=3, seed=seed,
                                 eval_freq=max(agent["total_timesteps"] // 10, 1)),
        ]
    remaining = agent["total_timesteps"] - model.num_timesteps
    if remaining > 0:
        sees = "the env's true reward" if spec.mode is None else f"posterior rewards (wrapper mode {spec.mode})"
        risk = f", risk {risk_measures.make(spec.risk[0], **spec.risk[1])}" if spec.risk else ""
        console.print(f"agent {spec.name}: {spec.algo} for {remaining} steps on {sees}{risk}")
        model.learn(remaining, callback=callbacks, tb_log_name=spec.name, reset_num_timesteps=checkpoint is None,
                    progress_bar=config["progress_bar"])
    if labelling is not None:
        if remaining <= 0:  # resumed after the last step: the wrapper holds the up-front posterior
            labelling.refit_on_session()
        # reward_model.pt must stay the up-front posterior until model.zip exists (a resume refits it
        # from the session, and a Laplace posterior must not absorb the same labels twice): save the
        # refitted one beside it, and rename it over reward_model.pt once the agent counts as done
        venv.reward_model.save(refitted)
    with atomic_write(final, "wb") as f:
        model.save(f)
    if labelling is not None:
        os.replace(refitted, run.reward_model_path)
        console.print(f"posterior: refitted on {labelling.log.n_labels} preference labels "
                      f"({len(labelling.log)} asked) -> {run.reward_model_path}")
    venv.close()
    console.print(f"agent {spec.name}: {model.num_timesteps} steps -> {final}")
    return final


def run_stages(config: dict[str, Any], run: RunDir, stage: str, reward_model: str | None = None) -> int:
    """Run ``stage`` (``all``, ``fit-reward`` or ``agent``) of a run folder whose config.yaml is written;
    a resumed run keeps the stage recorded in its run.json. Used by train.py and by each trial of a sweep."""
    if config["torch_threads"]:
        import torch

        # rl-zoo3 does the same on CPU: for small MLPs, thread synchronisation costs more than it gains,
        # and on a shared machine oversubscribed threads slow every op by an order of magnitude
        torch.set_num_threads(config["torch_threads"])
    stage = run.read_meta().get("stage", stage)
    console.print(f"run folder: {run.path}")
    if stage == "agent" and reward_model:
        import_reward_model(reward_model, run)
    labeller = factory.make_run_labeller(config)  # one page (or teacher) for the labels before and during training
    try:
        if stage in ("all", "fit-reward"):
            fit_reward(config, run, labeller)
        if stage in ("all", "agent"):
            train_agents(config, run, labeller)
    finally:
        if labeller is not None:
            labeller.close()
    if stage == "all" and config["eval"]["enabled"]:
        from ruagent.cli.summary import evaluate_and_summarise

        evaluate_and_summarise(config, run)
    run.update_meta(status="finished")
    print(f"run folder: {run.path}")
    return 0
