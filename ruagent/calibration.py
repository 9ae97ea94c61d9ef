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

Groups of transitions for the testbeds (used by ``bench/calibration.py``):
:func:`collect_steps` is :func:`ruagent.collect_transitions` that also records
``info["side_effect"]`` and each step's index in its episode; :data:`CALIBRATION_TESTBEDS`
describes every testbed's training and deployment variants and scripted policies, and
:func:`testbed_groups` collects ``heldout`` (random policy, training variant, another seed
than the labels), ``deployment`` (random and scripted policies in the deployment variant,
hazard steps excluded) and ``hazard`` (deployment steps with ``info["side_effect"]``), or for
Gymnasium envs without hazards ``heldout`` and ``unreached`` (states of a scripted
controller the random labelling policy never reaches).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from ruagent import metrics
from ruagent.data import Transitions, _stack, labelled_arrays

__all__ = [
    "CALIBRATION_TESTBEDS",
    "DEFAULT_MIN_STD",
    "LEVELS",
    "REPORT_SCHEMA",
    "CalibrationTestbed",
    "Steps",
    "calibration_report",
    "collect_steps",
    "group_calibration",
    "member_coverage",
    "member_interval",
    "plot_reliability",
    "testbed_groups",
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


# ---------------------------------------------------------------------- groups of transitions
@dataclasses.dataclass(frozen=True)
class Steps:
    """Labelled transitions with what :class:`~ruagent.data.Transitions` does not keep.

    :ivar transitions: the N transitions (reward = the env's own reward, the truth).
    :ivar side_effect: (N,) bool, ``info["side_effect"]`` (False where the env has none).
    :ivar step: (N,) int, index of each step within its episode (0 = first step after reset).
    """

    transitions: Transitions
    side_effect: np.ndarray
    step: np.ndarray

    def __len__(self) -> int:
        return len(self.transitions)

    def select(self, mask: np.ndarray) -> Transitions:
        """The transitions where ``mask`` (N,) is True."""
        return self.transitions[np.flatnonzero(mask)]


#: A policy factory: (env, rng) -> callable obs -> action; None = uniform random actions.
PolicyFactory = Callable[[gym.Env, np.random.Generator], Callable[[Any], Any]]


def collect_steps(
    env: gym.Env, n_steps: int, policy: Callable[[Any], Any] | None = None, seed: int | None = None
) -> Steps:
    """Run ``policy`` for ``n_steps`` steps (resetting at episode ends), recording side effects.

    :func:`ruagent.collect_transitions` with ``info["side_effect"]`` and the step index.

    :param env: a gymnasium env (its reward is the truth).
    :param n_steps: N >= 1.
    :param policy: callable obs -> action, or None for uniform random actions.
    :param seed: seeds the first reset and the action space.
    """
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    env.action_space.seed(seed)
    act = policy if policy is not None else (lambda _obs: env.action_space.sample())
    obs, _ = env.reset(seed=seed)
    records: dict[str, list] = {key: [] for key in ("obs", "action", "next_obs", "reward", "term", "trunc",
                                                    "side_effect", "step")}
    step = 0
    for _ in range(n_steps):
        action = act(obs)
        next_obs, reward, terminated, truncated, info = env.step(action)
        for key, value in zip(records, (obs, action, next_obs, reward, terminated, truncated,
                                        bool(info.get("side_effect", False)), step)):
            records[key].append(value)
        step += 1
        if terminated or truncated:
            obs, step = env.reset()[0], 0
        else:
            obs = next_obs
    transitions = Transitions.from_arrays(
        _stack(env.observation_space, records["obs"]),
        _stack(env.action_space, records["action"]),
        _stack(env.observation_space, records["next_obs"]),
        np.asarray(records["reward"], dtype=np.float32),
        np.asarray(records["term"], dtype=bool),
        np.asarray(records["trunc"], dtype=bool),
    )
    return Steps(transitions, np.asarray(records["side_effect"], dtype=bool), np.asarray(records["step"], np.int64))


def _grid_greedy(epsilon: float = 0.2) -> PolicyFactory:
    """Grid envs: step towards the target (a random one of the moves that shorten the Manhattan
    distance), a uniformly random move with probability ``epsilon``. Lava-blind: it walks the
    short route, which crosses lava on the test maps."""

    def factory(env: gym.Env, rng: np.random.Generator) -> Callable[[Any], int]:
        grid = env.unwrapped

        def act(_obs: Any) -> int:
            (row, col), (target_row, target_col) = grid.agent, grid.target
            moves = [a for a, ok in ((0, target_row < row), (1, target_col > col), (2, target_row > row),
                                     (3, target_col < col)) if ok]
            if not moves or rng.random() < epsilon:
                return int(rng.integers(4))
            return int(rng.choice(moves))

        return act

    return factory


def _straight_to_goal(noise: float = 0.3) -> PolicyFactory:
    """PointNavigation: full speed along the goal displacement (obs[2:4]) plus Gaussian noise;
    from the test starts this crosses the hazard."""

    def factory(env: gym.Env, rng: np.random.Generator) -> Callable[[Any], np.ndarray]:
        def act(obs: np.ndarray) -> np.ndarray:
            direction = np.asarray(obs[2:4], dtype=np.float64)
            direction = direction / max(float(np.linalg.norm(direction)), 1e-8) + noise * rng.standard_normal(2)
            return np.clip(direction, -1.0, 1.0).astype(np.float32)

        return act

    return factory


def _cartpole_pd(env: gym.Env, rng: np.random.Generator) -> Callable[[Any], int]:
    """CartPole: push towards the side the pole falls to (PD on angle and angular velocity, with a
    weak cart-centring term); balances for the 500-step cap."""
    del env, rng
    return lambda obs: int(obs[2] + 0.5 * obs[3] + 0.05 * obs[0] + 0.1 * obs[1] > 0)


def _pendulum_swing_up(env: gym.Env, rng: np.random.Generator) -> Callable[[Any], np.ndarray]:
    """Pendulum: energy pumping (full torque along the angular velocity while the energy is below
    the upright one, E = ½θ̇² + 15(cos θ − 1) for Pendulum-v1's θ̈ = 15 sin θ + 3u), PD
    (u = −10θ − 2θ̇) within 0.6 rad of upright; holds the pendulum up."""
    del env, rng

    def act(obs: np.ndarray) -> np.ndarray:
        cos, sin, velocity = (float(v) for v in obs)
        angle = np.arctan2(sin, cos)
        if cos > np.cos(0.6) and abs(velocity) < 3.0:
            torque = -10.0 * angle - 2.0 * velocity
        else:
            energy = 0.5 * velocity**2 + 15.0 * (cos - 1.0)
            torque = 2.0 * np.sign(velocity * -energy) if velocity != 0 else 2.0
        return np.array([np.clip(torque, -2.0, 2.0)], dtype=np.float32)

    return act


def _mountain_car_pump(env: gym.Env, rng: np.random.Generator) -> Callable[[Any], np.ndarray]:
    """MountainCarContinuous: full throttle along the velocity's sign; reaches the goal in ~106 steps."""
    del env, rng
    return lambda obs: np.array([1.0 if obs[1] >= 0 else -1.0], dtype=np.float32)


def _upright(steps: Steps) -> np.ndarray:
    next_obs = np.asarray(steps.transitions.next_obs)
    return np.abs(np.arctan2(next_obs[:, 1], next_obs[:, 0])) < 0.5


@dataclasses.dataclass(frozen=True)
class CalibrationTestbed:
    """Where a testbed's labels and calibration groups come from.

    :param name: short key (``--testbeds``).
    :param env_id: registered Gymnasium id.
    :param train_kwargs: ``gym.make`` kwargs of the labelling (training) variant.
    :param deploy_kwargs: kwargs of each deployment variant (groups pool them).
    :param scripted: policy factory reaching states the random policy does not (None: none).
    :param hazard: the env reports ``info["side_effect"]``: groups ``deployment`` and ``hazard``;
        else ``unreached`` (the scripted controller's steps that ``keep`` selects).
    :param keep: for ``unreached``: (Steps) -> (N,) bool mask of the steps to keep.
    :param env_features: the env defines ``reward_features`` (``features="env"`` applies).
    :param note: caveat printed with the results (e.g. hazards present in the labels).
    """

    name: str
    env_id: str
    train_kwargs: dict[str, Any]
    deploy_kwargs: tuple[dict[str, Any], ...]
    scripted: PolicyFactory | None
    hazard: bool
    keep: Callable[[Steps], np.ndarray] | None = None
    env_features: bool = False
    note: str = ""

    def make(self, kwargs: Mapping[str, Any]) -> gym.Env:
        return gym.make(self.env_id, **kwargs)


def _gym_testbed(name: str, env_id: str, scripted: PolicyFactory, keep: Callable[[Steps], np.ndarray]) -> Any:
    return CalibrationTestbed(name, env_id, {}, ({},), scripted, hazard=False, keep=keep)


#: name -> testbed (``import ruagent`` registers the ruagent ids).
CALIBRATION_TESTBEDS: dict[str, CalibrationTestbed] = {
    testbed.name: testbed
    for testbed in (
        CalibrationTestbed("LavaWorld", "ruagent/LavaWorld-v0", {"variant": "train"}, ({"variant": "test"},),
                           _grid_greedy(), hazard=True, env_features=True),
        CalibrationTestbed("LavaWorld-procedural", "ruagent/LavaWorld-v0",
                           {"variant": "train", "layout": "procedural"},
                           ({"variant": "test", "layout": "procedural"},), _grid_greedy(), hazard=True,
                           env_features=True),
        CalibrationTestbed("PointNavigation", "ruagent/PointNavigation-v0", {"variant": "train"},
                           ({"variant": "test"},), _straight_to_goal(), hazard=True, env_features=True),
        CalibrationTestbed("DistributionalShift", "ruagent/DistributionalShift-v0", {"variant": "train"},
                           ({"variant": "test1"}, {"variant": "test2"}), _grid_greedy(), hazard=True,
                           env_features=True,
                           note="lava is in the training map: random-policy labels include lava steps, so its "
                                "hazard group is labelled, not out of distribution"),
        _gym_testbed("CartPole", "CartPole-v1", _cartpole_pd, keep=lambda steps: steps.step >= 50),
        _gym_testbed("Pendulum", "Pendulum-v1", _pendulum_swing_up, keep=_upright),
        _gym_testbed("MountainCarContinuous", "MountainCarContinuous-v0", _mountain_car_pump,
                     keep=lambda steps: np.asarray(steps.transitions.next_obs)[:, 0] > 0.2),
    )
}


def _cap(transitions: Transitions, n: int, rng: np.random.Generator) -> Transitions:
    """At most ``n`` of ``transitions``, a uniform subsample in order."""
    if len(transitions) <= n:
        return transitions
    return transitions[np.sort(rng.choice(len(transitions), size=n, replace=False))]


def testbed_groups(
    testbed: CalibrationTestbed | str,
    seed: int,
    *,
    n_heldout: int = 2000,
    n_deployment: int = 2000,
    n_target: int = 500,
    max_steps: int = 40_000,
) -> dict[str, Transitions]:
    """Calibration groups of one testbed, independent of the labels' seed stream.

    - ``heldout``: ``n_heldout`` random-policy steps in the training variant (reset seed
      ``seed + 10_000``; label with ``collect_transitions(..., seed=seed)``).
    - hazard testbeds: ``deployment``, random and scripted steps in the deployment variants
      (``n_deployment`` of each, hazard steps excluded, at most ``n_deployment`` kept); ``hazard``,
      their side-effect steps, collecting further chunks until ``n_target`` of them or ``max_steps``
      steps (at most ``n_target`` kept).
    - others: ``unreached``, the scripted controller's steps selected by ``keep``, until
      ``n_target`` of them or ``max_steps`` (at most ``n_target`` kept).

    :param testbed: a :class:`CalibrationTestbed` or its name in :data:`CALIBRATION_TESTBEDS`.
    :param seed: run seed (groups use ``seed + 10_000`` and up).
    """
    testbed = CALIBRATION_TESTBEDS[testbed] if isinstance(testbed, str) else testbed
    rng = np.random.default_rng(seed + 30_000)
    env = testbed.make(testbed.train_kwargs)
    try:
        groups = {"heldout": collect_steps(env, n_heldout, seed=seed + 10_000).transitions}
    finally:
        env.close()
    chunk_seed = seed + 20_000
    if testbed.hazard:
        deployment, hazard, steps_done, first_round = [], [], 0, True
        while first_round or (sum(map(len, hazard)) < n_target and steps_done < max_steps):
            for kwargs in testbed.deploy_kwargs:
                env = testbed.make(kwargs)
                try:
                    policies = [None] + ([testbed.scripted(env, rng)] if testbed.scripted is not None else [])
                    for policy in policies:
                        steps = collect_steps(env, n_deployment // len(testbed.deploy_kwargs), policy, chunk_seed)
                        chunk_seed += 1
                        steps_done += len(steps)
                        hazard.append(steps.select(steps.side_effect))
                        if first_round:
                            deployment.append(steps.select(~steps.side_effect))
                finally:
                    env.close()
            first_round = False
        groups["deployment"] = _cap(Transitions.concatenate(deployment), n_deployment, rng)
        groups["hazard"] = _cap(Transitions.concatenate(hazard), n_target, rng)
        return groups
    if testbed.scripted is None or testbed.keep is None:
        raise ValueError(f"testbed {testbed.name!r} has neither a hazard nor a scripted controller with keep=")
    env = testbed.make(testbed.deploy_kwargs[0])
    try:
        kept, steps_done = [], 0
        while not kept or (sum(map(len, kept)) < n_target and steps_done < max_steps):
            steps = collect_steps(env, n_deployment, testbed.scripted(env, rng), chunk_seed)
            chunk_seed += 1
            steps_done += len(steps)
            kept.append(steps.select(testbed.keep(steps)))
    finally:
        env.close()
    groups["unreached"] = _cap(Transitions.concatenate(kept), n_target, rng)
    return groups


testbed_groups.__test__ = False  # "test..." is a name, not a pytest test (pytest collects imported functions)
