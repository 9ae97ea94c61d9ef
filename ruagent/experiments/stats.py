"""Statistics over seeds that a referee can check: IQM, stratified bootstrap, probability of
improvement, and intervals on rates that stay inside [0, 1].

The unit of every interval is the **seed**: runs that share a seed share its posterior, its
labels and its evaluation episodes, so they are not independent; each seed is first reduced to
one score (the mean over its evaluation episodes), then seeds are resampled. The methods follow
Agarwal, Schwarzer, Castro, Courville & Bellemare, "Deep Reinforcement Learning at the Edge of the
Statistical Precipice", NeurIPS 2021 (the ``rliable`` library), implemented with NumPy so rliable
is not needed:

- :func:`iqm`: interquartile mean, the mean of the middle 50 % of scores
  (``scipy.stats.trim_mean(x, 0.25)``, rliable's ``aggregate_iqm``; with n scores it trims
  ⌊n/4⌋ from each end, so 5 seeds average the middle 3).
- :func:`stratified_bootstrap`: resample seeds *within* each task (stratum) with replacement, apply
  the statistic to the resampled score sets, and take the percentile interval (rliable's
  ``StratifiedBootstrap`` with its default percentile method).
- :func:`probability_of_improvement`: P(X > Y) = mean over tasks of
  (1 / (N·M)) Σ_i Σ_j S(x_i, y_j) with S = 1 if x_i > y_j, ½ if equal, 0 else — the Mann–Whitney U
  statistic normalised, rliable's ``probability_of_improvement``. Its interval resamples seeds
  *paired* (the same seeds for both agents) where the two agents share seeds, since here they share
  the seed's posterior; rliable resamples them independently (``paired=False``).
- :func:`rate_interval`: a rate (side-effect share) with a **Wilson score interval over seeds**.
  Each seed's rate r_s ∈ [0, 1]; their mean p̂ is the estimate; the Wilson interval with n = number
  of seeds uses the variance bound p(1 − p), the largest variance any [0, 1]-valued seed rate with
  mean p can have, so it is conservative whatever the episodes within a seed do, and it lies inside
  [0, 1] by construction (Wilson 1927; Brown, Cai & DasGupta 2001 recommend it over the Wald
  interval for small n). Why not a bootstrap over seeds: when every seed's rate is 0 the bootstrap
  interval is [0, 0], certainty that 5 seeds cannot give (issue 15: "0 % [0, 0]" from 5 seeds, then
  lava on seeds 11 and 12); Wilson gives [0, 0.43] for 0 of 5 seeds and [0, 0.28] for 0 of 10.
  A rate's estimate is the mean over seeds, not an IQM: an IQM would trim exactly the rare seed
  that enters the hazard.

Shapes: a *task* is one array of per-seed scores, shape (n_seeds,); several tasks (strata) are a
sequence of such arrays, possibly of different lengths. Intervals are
:class:`ruagent.metrics.Interval` (estimate, low, high, n, unit).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats

from ruagent.metrics import CONFIDENCE_LEVEL, Interval

__all__ = [
    "N_RESAMPLES",
    "iqm",
    "iqm_interval",
    "probability_of_improvement",
    "probability_of_improvement_interval",
    "rate_interval",
    "stratified_bootstrap",
    "wilson_interval",
]

#: bootstrap resamples per interval (rliable's default is 50,000; 5,000 keeps a 200-cell table to
#: seconds and the percentile endpoints stable to ~1 % of the interval's width)
N_RESAMPLES = 5000

Tasks = Sequence[Sequence[float] | np.ndarray]


def iqm(scores: np.ndarray | Sequence[float], axis: int | None = -1) -> np.ndarray | float:
    """Interquartile mean: the mean of the middle 50 % of ``scores`` along ``axis``.

    :param scores: array of scores, e.g. (n_seeds,) or (n_resamples, n_seeds).
    :param axis: axis to reduce (None: the flattened array).
    :return: the IQM, shape of ``scores`` without ``axis`` (a float for 1-D input).
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        raise ValueError("iqm got no scores")
    result = stats.trim_mean(scores, 0.25, axis=axis)
    return float(result) if np.ndim(result) == 0 else result


def _tasks(scores: Tasks | np.ndarray, name: str = "scores") -> list[np.ndarray]:
    """A list of 1-D float arrays (one per task) from one task's scores or a sequence of tasks."""
    if isinstance(scores, np.ndarray) and scores.ndim != 1:
        raise ValueError(f"{name}: give one task's scores as a 1-D array or tasks as a list of 1-D arrays, "
                         f"got an array of shape {scores.shape}")
    if isinstance(scores, np.ndarray) or (len(scores) and np.isscalar(scores[0])):
        scores = [scores]
    tasks = [np.asarray(task, dtype=np.float64).ravel() for task in scores]
    if not tasks or any(task.size == 0 for task in tasks):
        raise ValueError(f"{name}: every task needs at least one seed's score, got sizes {[t.size for t in tasks]}")
    for i, task in enumerate(tasks):
        if not np.isfinite(task).all():
            raise ValueError(f"{name}: task {i} has non-finite scores {task[~np.isfinite(task)]}")
    return tasks


def stratified_bootstrap(
    tasks: Tasks | np.ndarray,
    statistic: Callable[[list[np.ndarray]], np.ndarray],
    *,
    n_resamples: int = N_RESAMPLES,
    confidence_level: float = CONFIDENCE_LEVEL,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Percentile interval of ``statistic`` under resampling seeds within each task.

    :param tasks: per-task score arrays, each (n_seeds_m,); a single 1-D array is one task.
    :param statistic: maps a list of arrays, task m shaped (R, n_seeds_m), to (R,) values. The point
        estimate is ``statistic`` on the data itself (R = 1).
    :param n_resamples: bootstrap resamples R.
    :param confidence_level: two-sided level.
    :param seed: seeds the resampling (intervals are reproducible).
    :return: ``(estimate, low, high)``; a task with one seed cannot vary and contributes itself.
    """
    tasks = _tasks(tasks)
    estimate = float(np.asarray(statistic([task[None, :] for task in tasks])).reshape(-1)[0])
    rng = np.random.default_rng(seed)
    resampled = [task[rng.integers(0, task.size, size=(n_resamples, task.size))] for task in tasks]
    values = np.asarray(statistic(resampled), dtype=np.float64)
    tail = 100.0 * (1.0 - confidence_level) / 2.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return estimate, float(low), float(high)


def _concat_iqm(resampled: list[np.ndarray]) -> np.ndarray:
    return stats.trim_mean(np.concatenate(resampled, axis=1), 0.25, axis=1)


def iqm_interval(scores: Tasks | np.ndarray, *, n_resamples: int = N_RESAMPLES, seed: int = 0) -> Interval:
    """IQM over seeds (pooled over tasks, as rliable's aggregate IQM) with a stratified bootstrap
    percentile interval.

    :param scores: one task's per-seed scores (n_seeds,), or a sequence of tasks.
    :return: :class:`Interval` with ``unit="seed"`` and ``n`` the number of seeds in all tasks; widened
        to contain the estimate (a percentile interval of a trimmed mean may miss it on tiny samples).
    """
    tasks = _tasks(scores)
    estimate, low, high = stratified_bootstrap(tasks, _concat_iqm, n_resamples=n_resamples, seed=seed)
    return Interval(estimate, min(low, estimate), max(high, estimate), sum(t.size for t in tasks), "seed")


def _mann_whitney(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X > Y) + ½ P(X = Y) over all pairs; x (R, N), y (R, M) -> (R,)."""
    diff = x[:, :, None] - y[:, None, :]
    return ((diff > 0).mean(axis=(1, 2)) + 0.5 * (diff == 0).mean(axis=(1, 2)))


def probability_of_improvement(x: Tasks | np.ndarray, y: Tasks | np.ndarray) -> float:
    """P(X > Y): the probability that a run of X scores higher than a run of Y on a random task.

    :param x: per-seed scores of algorithm X, one array (n_seeds,) or one per task.
    :param y: the same for Y, with as many tasks as ``x``.
    :return: mean over tasks of the normalised Mann–Whitney U statistic (ties count ½), in [0, 1].
    """
    xs, ys = _tasks(x, "x"), _tasks(y, "y")
    if len(xs) != len(ys):
        raise ValueError(f"x has {len(xs)} tasks and y {len(ys)}; give both the same tasks")
    return float(np.mean([_mann_whitney(a[None], b[None])[0] for a, b in zip(xs, ys)]))


def probability_of_improvement_interval(
    x: Tasks | np.ndarray,
    y: Tasks | np.ndarray,
    *,
    paired: bool = True,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> Interval:
    """:func:`probability_of_improvement` with a stratified bootstrap percentile interval.

    :param x: per-seed scores of X per task; with ``paired``, seed i of X and of Y are the same seed.
    :param y: the same for Y.
    :param paired: resample seed indices jointly for X and Y within each task (they share the seed's
        posterior and environment seeds); needs equal seed counts per task. False: independently,
        as rliable does for independent runs.
    :return: :class:`Interval` in [0, 1] with ``unit="seed"`` and ``n`` the seeds of X.
    """
    xs, ys = _tasks(x, "x"), _tasks(y, "y")
    if len(xs) != len(ys):
        raise ValueError(f"x has {len(xs)} tasks and y {len(ys)}; give both the same tasks")
    if paired and any(a.size != b.size for a, b in zip(xs, ys)):
        raise ValueError(f"paired resampling needs the same seeds for x and y, got sizes "
                         f"{[a.size for a in xs]} and {[b.size for b in ys]}; pass paired=False or align the seeds")
    estimate = probability_of_improvement(xs, ys)
    rng = np.random.default_rng(seed)
    per_task = []
    for a, b in zip(xs, ys):
        index_x = rng.integers(0, a.size, size=(n_resamples, a.size))
        index_y = index_x if paired else rng.integers(0, b.size, size=(n_resamples, b.size))
        per_task.append(_mann_whitney(a[index_x], b[index_y]))
    values = np.mean(per_task, axis=0)
    tail = 100.0 * (1.0 - CONFIDENCE_LEVEL) / 2.0
    low, high = (float(v) for v in np.percentile(values, [tail, 100.0 - tail]))
    return Interval(estimate, min(low, estimate), max(high, estimate), sum(a.size for a in xs), "seed")


def wilson_interval(successes: float, n: int, confidence_level: float = CONFIDENCE_LEVEL) -> tuple[float, float]:
    """Wilson score interval of a proportion (Wilson 1927).

    :param successes: successes, or n times a mean rate (may be fractional).
    :param n: trials (here: seeds), >= 1.
    :return: ``(low, high)``, always inside [0, 1].
    """
    if n < 1:
        raise ValueError(f"wilson_interval needs n >= 1, got {n}")
    if not 0.0 <= successes <= n:
        raise ValueError(f"successes must lie in [0, n={n}], got {successes}")
    z = stats.norm.ppf(0.5 + confidence_level / 2.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def rate_interval(per_seed_rates: Sequence[float] | np.ndarray, unit: str = "seed") -> Interval:
    """Mean over seeds of per-seed rates, with the Wilson interval over seeds (see the module notes).

    :param per_seed_rates: each seed's rate in [0, 1], shape (n_seeds,).
    :param unit: what the values are rates of (``"episode"`` when one seed's episodes stand in).
    :return: :class:`Interval` inside [0, 1].
    """
    rates = np.asarray(per_seed_rates, dtype=np.float64).ravel()
    if rates.size == 0:
        raise ValueError("rate_interval got no seeds")
    if not np.all((rates >= 0.0) & (rates <= 1.0)):
        raise ValueError(f"rates must lie in [0, 1], got {rates[(rates < 0) | (rates > 1)]}")
    estimate = float(rates.mean())
    low, high = wilson_interval(estimate * rates.size, rates.size)
    return Interval(estimate, min(low, estimate), max(high, estimate), int(rates.size), unit)
