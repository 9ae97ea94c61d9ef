"""Calibration of a reward posterior as a report: does it know what it does not know?

A reward posterior should cover the true reward where labels are dense *and* where they are
absent, in reward units (docs/reward_models.md, "Priors in reward units"). This module measures that
on named groups of labelled transitions, using only a posterior's public calls
(``predict_moments``, falling back to ``predict``), so it works for every family:

- :func:`member_interval`: the central ``level`` interval of the K member rewards by empirical
  quantiles (``np.quantile``, linear interpolation; the inverse CDF of the weighted members
  where ``member_probs`` are not uniform): the epistemic interval the risk measures (CVaR,
  worst case) act on.
- :func:`group_calibration`: for one group, coverage of the true reward by the central 50 %
  and 90 % member intervals and their mean widths (reward units); the same coverage from the
  family's Gaussian predictive N(mean, std²) (:func:`ruagent.metrics.interval_coverage`,
  analytic for the linear family); Gaussian NLL of the truth with a std floor
  (:data:`DEFAULT_MIN_STD`); the member spread (std over members) and the posterior std
  (``reward_std``, what the wrapper reports), mean and median; a reliability curve (observed
  vs nominal coverage at central levels 0.1..0.9).
- :func:`calibration_report`: all of it for every group of a dict, plus the OOD AUROC of
  ``reward_std`` of each group against a reference group (``"heldout"``: fresh
  in-distribution transitions): 1 means every transition of the group is more uncertain
  than every in-distribution one.
- :func:`plot_reliability`: the reliability diagram (observed vs nominal coverage of the
  member intervals, one line per group) as a PNG.

The groups of transitions for the testbeds live in :mod:`ruagent.calibration_testbeds`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ruagent import metrics
from ruagent.data import Transitions, labelled_arrays

__all__ = [
    "DEFAULT_MIN_STD",
    "LEVELS",
    "REPORT_SCHEMA",
    "calibration_report",
    "group_calibration",
    "member_coverage",
    "member_interval",
    "plot_reliability",
]

REPORT_SCHEMA = "ruagent.calibration/1"
#: Central levels of the reliability curve.
LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
#: Floor on the predictive std for the NLL, in reward units, added in quadrature
#: (σ = √(std² + 0.001²)): it keeps the NLL finite where every member agrees exactly and is
#: far below any reward scale of the testbeds (rewards of order 0.1 to 100).
DEFAULT_MIN_STD = 1e-3


# ---------------------------------------------------------------------- metrics (numpy)
def _check_level(level: float) -> float:
    if not 0.0 < float(level) < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    return float(level)


def _is_uniform(probs: np.ndarray | None, k: int) -> bool:
    return probs is None or np.allclose(np.asarray(probs, dtype=np.float64), 1.0 / k, rtol=1e-9, atol=1e-12)


def member_interval(
    members: np.ndarray, level: float, member_probs: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Central ``level`` interval of the K member rewards at each transition.

    Uniform members (the default): empirical quantiles
    ``np.quantile(members, [(1 - level) / 2, (1 + level) / 2], axis=0)`` with linear
    interpolation. Weighted members (``member_probs`` not uniform, e.g. a two-hypothesis
    posterior): quantiles of the discrete distribution that puts ``member_probs[k]`` on member
    k (inverse CDF, no interpolation), so a member with weight 0.95 alone makes the 90 % interval.

    :param members: (K, B) member rewards (a posterior's ``predict``).
    :param level: central probability in (0, 1), e.g. 0.9.
    :param member_probs: (K,) member weights; None = uniform.
    :return: ``(low, high)``, each (B,) float64.
    """
    level = _check_level(level)
    members = np.asarray(members, dtype=np.float64)
    if members.ndim != 2 or members.shape[0] < 1:
        raise ValueError(f"members must have shape (K, B) with K >= 1, got {members.shape}")
    quantiles = [(1.0 - level) / 2.0, (1.0 + level) / 2.0]
    if _is_uniform(member_probs, members.shape[0]):
        low, high = np.quantile(members, quantiles, axis=0)
        return low, high
    probs = np.asarray(member_probs, dtype=np.float64)
    if probs.shape != (members.shape[0],) or np.any(probs < 0) or probs.sum() <= 0:
        raise ValueError(f"member_probs must be {members.shape[0]} non-negative weights, got {member_probs!r}")
    order = np.argsort(members, axis=0, kind="stable")
    ranked = np.take_along_axis(members, order, axis=0)
    cdf = np.cumsum((probs / probs.sum())[order], axis=0)  # (K, B), each column rising to 1
    columns = np.arange(members.shape[1])
    # the smallest member whose cumulative weight reaches q (argmax finds the first True)
    low, high = (ranked[np.argmax(cdf >= q - 1e-12, axis=0), columns] for q in quantiles)
    return low, high


def member_coverage(
    truth: np.ndarray, members: np.ndarray, level: float, member_probs: np.ndarray | None = None
) -> np.ndarray:
    """(B,) 0/1: the true reward lies in the central ``level`` member interval (ends included)."""
    truth = np.asarray(truth, dtype=np.float64)
    low, high = member_interval(members, level, member_probs)
    if truth.shape != low.shape:
        raise ValueError(f"truth must have shape {low.shape} (one reward per transition), got {truth.shape}")
    return ((truth >= low) & (truth <= high)).astype(np.float64)


def _summary(values: np.ndarray) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "median": float(np.median(values))}


def group_calibration(
    truth: np.ndarray,
    members: np.ndarray,
    mean: np.ndarray | None = None,
    std: np.ndarray | None = None,
    *,
    member_probs: np.ndarray | None = None,
    levels: tuple[float, ...] = LEVELS,
    min_std: float = DEFAULT_MIN_STD,
    intervals: bool = False,
    seed: int = 0,
) -> dict[str, Any]:
    """Calibration of a posterior's rewards on one group of transitions with known true rewards.

    :param truth: (B,) true rewards.
    :param members: (K, B) member rewards.
    :param mean: (B,) the family's posterior mean (default: the members' mean).
    :param std: (B,) the family's posterior std, ``reward_std`` (default: the members' std).
    :param member_probs: (K,) member weights (None: uniform), for the member intervals and spread.
    :param levels: central levels of the reliability curve.
    :param min_std: NLL std floor (reward units, added in quadrature).
    :param intervals: also give 95 % bootstrap intervals (over transitions) of the coverages,
        widths and NLL under ``"intervals"`` (each :meth:`ruagent.metrics.Interval.to_dict`).
    :param seed: bootstrap seed.
    :return: ``n``; ``coverage_50``/``coverage_90`` (member intervals) and ``width_50``/``width_90``
        (their mean widths); ``gaussian_coverage_50``/``gaussian_coverage_90`` (intervals of
        N(mean, std²)); ``nll`` (mean, nats); ``abs_error`` (mean |truth − mean|); ``spread``
        (std over members: mean, median); ``reward_std`` (posterior std: mean, median);
        ``reliability`` (``member`` and ``gaussian`` coverage at each level). With B = 0 every
        metric is None.
    """
    members = np.asarray(members, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64).ravel()
    if members.ndim != 2 or members.shape[1] != truth.size:
        raise ValueError(f"members must have shape (K, {truth.size}), got {members.shape}")
    member_mean, member_std = metrics.member_mean_std(members, member_probs)
    mean = member_mean if mean is None else np.asarray(mean, dtype=np.float64)
    std = member_std if std is None else np.asarray(std, dtype=np.float64)
    n = int(truth.size)
    keys = ("coverage_50", "coverage_90", "width_50", "width_90", "gaussian_coverage_50", "gaussian_coverage_90",
            "nll", "abs_error", "spread", "reward_std", "reliability")
    if n == 0:
        return {"n": 0, **dict.fromkeys(keys)}
    per_item: dict[str, np.ndarray] = {}
    for level, name in ((0.5, "50"), (0.9, "90")):
        low, high = member_interval(members, level, member_probs)
        per_item[f"coverage_{name}"] = ((truth >= low) & (truth <= high)).astype(np.float64)
        per_item[f"width_{name}"] = high - low
        per_item[f"gaussian_coverage_{name}"] = metrics.interval_coverage(truth, mean, std, level, min_std)
    per_item["nll"] = metrics.gaussian_nll(truth, mean, std, min_std)
    per_item["abs_error"] = np.abs(truth - mean)
    report: dict[str, Any] = {"n": n, **{name: float(values.mean()) for name, values in per_item.items()}}
    report["spread"] = _summary(member_std)
    report["reward_std"] = _summary(std)
    report["reliability"] = {
        "member": [float(member_coverage(truth, members, level, member_probs).mean()) for level in levels],
        "gaussian": [float(metrics.interval_coverage(truth, mean, std, level, min_std).mean()) for level in levels],
    }
    if intervals:
        report["intervals"] = {
            name: {**metrics.bootstrap_interval(values, seed=seed, n_resamples=1000).to_dict(), "unit": "transition"}
            for name, values in per_item.items()
        }
    return report


def _moments(model: Any, obs: Any, action: Any, next_obs: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if hasattr(model, "predict_moments"):
        members, mean, std = model.predict_moments(obs, action, next_obs)
    else:  # a posterior with only the base protocol: the members' moments
        members = model.predict(obs, action, next_obs)
        mean, std = metrics.member_mean_std(members, getattr(model, "member_probs", None))
    return np.asarray(members), np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)


def _group_size(group: Any) -> int:
    if isinstance(group, Transitions):
        return len(group)
    return int(np.asarray(group[3]).shape[0])


def calibration_report(
    model: Any,
    groups: Mapping[str, Transitions | tuple[Any, Any, Any, Any]],
    *,
    reference: str | None = "heldout",
    levels: tuple[float, ...] = LEVELS,
    min_std: float = DEFAULT_MIN_STD,
    intervals: bool = False,
    seed: int = 0,
) -> dict[str, Any]:
    """Calibration report of a reward posterior on named groups of labelled transitions.

    :param model: a reward posterior (``predict_moments``, else ``predict``), bound to its env
        where its features need one (``features="env"``).
    :param groups: name -> :class:`ruagent.data.Transitions` or ``(obs, action, next_obs,
        true_reward)``; a group may be empty (its metrics are None).
    :param reference: the in-distribution group each other group's ``reward_std`` is scored
        against (AUROC); None or absent from ``groups``: no AUROC.
    :param levels: central levels of the reliability curves.
    :param min_std: NLL std floor in reward units (:data:`DEFAULT_MIN_STD`).
    :param intervals: add 95 % bootstrap intervals (coverages, widths, NLL, AUROC).
    :param seed: bootstrap seed.
    :return: ``schema``, ``family``, ``n_members``, ``reference``, ``levels``, ``min_std``,
        ``score`` (``"reward_std"``) and ``groups``: name -> :func:`group_calibration`'s dict
        plus ``auroc_vs_reference`` (float, or None for the reference itself, an empty group
        or no reference; an :class:`~ruagent.metrics.Interval` dict with ``intervals``).
    """
    levels = tuple(_check_level(level) for level in levels)
    found: dict[str, dict[str, Any]] = {}
    stds: dict[str, np.ndarray] = {}
    probs = getattr(model, "member_probs", None)
    for name, group in groups.items():
        if _group_size(group) == 0:
            found[name] = group_calibration(np.zeros(0), np.zeros((1, 0)), levels=levels)
            stds[name] = np.zeros(0)
            continue
        obs, action, next_obs, truth = labelled_arrays(group)
        members, mean, std = _moments(model, obs, action, next_obs)
        found[name] = group_calibration(truth, members, mean, std, member_probs=probs, levels=levels,
                                        min_std=min_std, intervals=intervals, seed=seed)
        stds[name] = std
    have_reference = reference is not None and reference in stds and stds[reference].size > 0
    for name, entry in found.items():
        entry["auroc_vs_reference"] = None
        if have_reference and name != reference and stds[name].size > 0:
            entry["auroc_vs_reference"] = (
                metrics.auroc_interval(stds[name], stds[reference], seed=seed).to_dict() if intervals
                else metrics.auroc(stds[name], stds[reference])
            )
    return {
        "schema": REPORT_SCHEMA,
        "family": getattr(model, "family", type(model).__name__),
        "n_members": int(getattr(model, "n_members", 0)) or None,
        "reference": reference if have_reference else None,
        "levels": list(levels),
        "min_std": float(min_std),
        "score": "reward_std",
        "groups": found,
    }


def plot_reliability(report: Mapping[str, Any], path: str | os.PathLike, title: str | None = None) -> Path:
    """Reliability diagram: observed coverage of the central member intervals vs nominal level.

    One line per group of ``report`` (:func:`calibration_report`; empty groups are skipped),
    the diagonal for a calibrated posterior. Below the diagonal: overconfident (the truth falls
    outside the members' interval more often than the level says).

    :return: the PNG path (written atomically, Agg canvas, no pyplot).
    """
    from matplotlib.figure import Figure

    from ruagent.plots import save_figure

    levels = np.asarray(report["levels"], dtype=np.float64)
    figure = Figure(figsize=(4.6, 4.2))
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], color="0.6", linestyle=":", linewidth=1, label="calibrated")
    for name, group in report["groups"].items():
        if not group.get("n"):
            continue
        axes.plot(levels, group["reliability"]["member"], marker="o", markersize=3,
                  label=f"{name} (n={group['n']})")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.02)
    axes.set_xlabel("nominal central level (member quantile interval)")
    axes.set_ylabel("observed coverage of the true reward")
    axes.set_title(title or f"reliability: {report.get('family', '')}, K={report.get('n_members')}")
    axes.grid(alpha=0.3)
    axes.legend(loc="best", fontsize=8)
    return save_figure(figure, path)
