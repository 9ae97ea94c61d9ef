"""The posterior half of ``evaluate.py``: does a run's reward posterior know what it never saw?

For a run folder and its agents' deployment episodes: the OOD AUROC of ``reward_std`` separating
deployment transitions absent from the label data (and hazard transitions) from the label data,
Gaussian calibration (NLL, central-interval coverage) on held-out and on fresh deployment labels, and
the calibration report of :mod:`ruagent.calibration` per group (held-out, deployment, hazard). Every
number has a 95 % bootstrap interval (:mod:`ruagent.metrics`); the result is eval.json's ``posterior``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from ruagent import metrics
from ruagent.cli.factory import make_env
from ruagent.cli.run_dir import RunDir, RunFileError
from ruagent.rollouts import Episodes, run_episodes

__all__ = ["ood_auroc", "posterior_metrics"]


def _label_transitions(run: RunDir, split: str) -> Any | None:
    if not run.labels_path(split).is_file():
        return None
    from ruagent.data import Transitions

    try:
        return Transitions.load(run.labels_path(split))
    except ValueError as exc:
        raise RunFileError(f"{exc}; delete it and evaluate.py draws fresh random-policy labels of the label variant "
                           "instead") from None


def _rows(batch: Any) -> np.ndarray:
    """(B, D) float64 rows of a batch (dicts/tuples flattened leaf by leaf in a fixed order)."""
    if isinstance(batch, dict):
        return np.concatenate([_rows(batch[key]) for key in sorted(batch)], axis=1)
    if isinstance(batch, tuple):
        return np.concatenate([_rows(part) for part in batch], axis=1)
    array = np.asarray(batch, dtype=np.float64)
    return array.reshape(array.shape[0], -1)


def _transition_keys(obs: Any, action: Any, next_obs: Any) -> list[bytes]:
    rows = np.ascontiguousarray(np.concatenate([_rows(obs), _rows(action), _rows(next_obs)], axis=1))
    return [row.tobytes() for row in rows]


def _calibration(reward_model: Any, obs: Any, action: Any, next_obs: Any, labels: Any, seed: int) -> dict[str, Any]:
    """NLL, central-interval coverage and absolute error of the posterior on labelled transitions."""
    _, mean, std = reward_model.predict_moments(obs, action, next_obs)
    labels = np.asarray(labels, dtype=np.float64)
    # A floor relative to the labels' own spread keeps NLL finite where all members agree exactly.
    min_std = 1e-3 * (float(labels.std()) or 1.0)
    interval = dict(seed=seed, n_resamples=1000)
    return {
        "n_labels": len(labels),
        "min_std": min_std,
        "nll": _unit(metrics.bootstrap_interval(metrics.gaussian_nll(labels, mean, std, min_std), **interval)),
        "coverage_50": _unit(metrics.bootstrap_interval(
            metrics.interval_coverage(labels, mean, std, 0.5, min_std), **interval)),
        "coverage_90": _unit(metrics.bootstrap_interval(
            metrics.interval_coverage(labels, mean, std, 0.9, min_std), **interval)),
        "abs_error": _unit(metrics.bootstrap_interval(np.abs(labels - mean), **interval)),
    }


def _unit(interval: metrics.Interval, unit: str = "transition") -> dict[str, Any]:
    return {**interval.to_dict(), "unit": unit}


def _auroc_or_reason(pos_std: np.ndarray, neg_std: np.ndarray, reason: str, seed: int) -> dict[str, Any]:
    if pos_std.size == 0:
        return {"auroc": None, "n_pos": 0, "n_train": int(neg_std.size), "reason": reason}
    return {"auroc": metrics.auroc_interval(pos_std, neg_std, seed=seed).to_dict(), "n_pos": int(pos_std.size),
            "n_train": int(neg_std.size)}


def ood_auroc(reward_model: Any, train: Any, agents: list[Episodes], random: Episodes, seed: int) -> dict[str, Any]:
    """AUROCs of reward_std against the label data: for the agents' deployment transitions absent
    from the label data (test-only), and for hazard transitions (``info["side_effect"]``) of the
    agents and of random deployment episodes: does the posterior flag what it never saw?"""
    train_keys = set(_transition_keys(train.obs, train.action, train.next_obs))
    test_only = np.concatenate([
        episodes.reward_std()[[k not in train_keys for k in _transition_keys(episodes.obs, episodes.actions,
                                                                              episodes.next_obs)]]
        for episodes in agents
    ])
    hazard = np.concatenate([episodes.reward_std()[episodes.side_effects] for episodes in [*agents, random]])
    _, _, train_std = reward_model.predict_moments(train.obs, train.action, train.next_obs)
    return {
        "test_only": _auroc_or_reason(test_only, train_std, "every deployment transition occurs in the label data",
                                      seed),
        "hazard": _auroc_or_reason(hazard, train_std, "no side effect happened in the deployment episodes", seed),
    }


def _episode_transitions(episodes: list[Episodes], hazard: bool) -> Any:
    """The transitions of ``episodes`` with (``hazard=True``) or without a side effect, truth as reward."""
    from ruagent.data import Transitions

    parts = [Transitions.from_arrays(e.obs, e.actions, e.next_obs, e.env_rewards)[np.flatnonzero(
        e.side_effects == hazard)] for e in episodes]
    return Transitions.concatenate(parts)


def _calibration_report(
    config: dict[str, Any], reward_model: Any, heldout: Any, deploy: list[Episodes], random: Episodes,
    n_episodes: int, seed: int,
) -> dict[str, Any]:
    """:func:`ruagent.calibration.calibration_report` on ``heldout`` (the run's held-out labels, else fresh
    random-policy transitions of the label variant), ``deployment`` (the agents' and random episodes'
    deployment transitions without a side effect) and ``hazard`` (those with one)."""
    from ruagent.calibration import calibration_report

    source = "labels/heldout.npz"
    if heldout is None or len(heldout) == 0:
        from ruagent.data import collect_transitions

        label_env = make_env(config, config["env"]["label_kwargs"])
        heldout = collect_transitions(label_env, max(50 * n_episodes, 500), seed=seed + 3)
        label_env.close()
        source = "fresh random-policy transitions of the label variant"
    episodes = [*deploy, random]
    groups = {"heldout": heldout, "deployment": _episode_transitions(episodes, False),
              "hazard": _episode_transitions(episodes, True)}
    report = calibration_report(reward_model, groups, reference="heldout", intervals=True, seed=seed)
    return {**report, "heldout_source": source}


def posterior_metrics(
    run: RunDir, config: dict[str, Any], env: gym.Env, reward_model: Any, deploy: list[Episodes],
    n_episodes: int, seed: int,
) -> dict[str, Any]:
    """eval.json's ``posterior``: OOD AUROC against the label data, calibration on held-out and on fresh
    deployment labels, and the calibration report (the agents' ``deploy`` episodes give deployment and
    hazard transitions; random-policy deployment episodes are added)."""
    train_labels = _label_transitions(run, "train")
    if train_labels is None:  # the run kept no labels: fresh random-policy transitions stand in for them
        from ruagent.data import collect_transitions

        label_env = make_env(config, config["env"]["label_kwargs"])
        train_labels = collect_transitions(label_env, max(50 * n_episodes, 500), seed=seed + 1)
        label_env.close()
    # Random-policy deployment episodes: labels under shift, and hazards the agents may avoid.
    random = run_episodes(env, None, max(2 * n_episodes, 10), reward_model=reward_model, seed=seed + 2)
    heldout = _label_transitions(run, "heldout")
    return {
        "n_members": reward_model.n_members,
        "ood": ood_auroc(reward_model, train_labels, deploy, random, seed),
        "calibration": {
            "heldout": None if heldout is None or len(heldout) == 0 else _calibration(
                reward_model, heldout.obs, heldout.action, heldout.next_obs, heldout.reward, seed),
            "deployment": _calibration(
                reward_model, random.obs, random.actions, random.next_obs, random.env_rewards, seed),
        },
        "calibration_report": _calibration_report(config, reward_model, heldout, deploy, random, n_episodes, seed),
    }
