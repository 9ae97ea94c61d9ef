"""Evaluation metrics with 95 % bootstrap intervals.

Every metric here is a plain function of NumPy arrays, so it can be checked on synthetic
data and reused outside :mod:`ruagent.cli.evaluate`:

- :func:`bootstrap_interval`: a statistic with a bootstrap confidence interval
  (``scipy.stats.bootstrap``, BCa by default; Efron & Tibshirani 1993). With several
  seeds the seed is the unit of replication: the interval resamples per-seed means, as
  Henderson et al. (AAAI 2018) and Agarwal et al. (NeurIPS 2021, "rliable") recommend,
  so seed-to-seed variance is not hidden by many episodes of one seed.
- :func:`auroc` / :func:`auroc_interval`: area under the ROC curve of a score separating
  positives (test-only states) from negatives (training states), with ties counted half
  (the Mann–Whitney U statistic divided by n_pos·n_neg).
- :func:`gaussian_nll` / :func:`interval_coverage`: calibration of a posterior's
  predictive Gaussian N(mean, std²) on held-out labels (Lakshminarayanan et al.,
  NeurIPS 2017 use the same NLL for deep ensembles).
- :func:`member_mean_std`: the posterior's predictive mean and std from member rewards.

Regret and the goodhart gap are per-episode differences (oracle − true, proxy − true);
their intervals come from :func:`bootstrap_interval` like every other per-episode metric.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import special, stats

__all__ = [
    "CONFIDENCE_LEVEL",
    "Interval",
    "auroc",
    "auroc_interval",
    "bootstrap_interval",
    "difference_interval",
    "gaussian_nll",
    "interval_coverage",
    "member_mean_std",
]

#: Two-sided confidence level of every interval ruagent reports.
CONFIDENCE_LEVEL = 0.95
#: values per bootstrap batch (memory bound of :func:`bootstrap_interval`)
_BATCH_VALUES = 4_000_000


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided confidence interval.

    :param estimate: the statistic on the full data.
    :param low: lower end of the interval (equal to ``estimate`` when the data cannot vary).
    :param high: upper end of the interval.
    :param n: how many independent units the interval resamples (episodes, or seeds).
    :param unit: what those units are: ``"episode"``, ``"seed"``, ``"transition"``...
    """

    estimate: float
    low: float
    high: float
    n: int
    unit: str = "episode"

    def to_dict(self) -> dict[str, float | int | str]:
        """JSON-ready mapping (the schema used in eval.json)."""
        return asdict(self)

    def __str__(self) -> str:
        return f"{_short(self.estimate)} [{_short(self.low)}, {_short(self.high)}]"


def _short(value: float) -> str:
    # Three significant digits; float32 round-off (e.g. a gap of -3e-07 between equal returns) prints as 0.
    return f"{round(value, 6) + 0.0:.3g}"


def _degenerate(estimate: float, n: int, unit: str) -> Interval:
    return Interval(float(estimate), float(estimate), float(estimate), n, unit)


def bootstrap_interval(
    samples: Sequence[float] | np.ndarray | Sequence[Sequence[float]],
    statistic: Callable[..., np.ndarray] = np.mean,
    *,
    confidence_level: float = CONFIDENCE_LEVEL,
    n_resamples: int = 2000,
    seed: int | np.random.Generator | None = 0,
    method: str = "BCa",
) -> Interval:
    """Bootstrap interval of ``statistic`` over episodes, or over seeds.

    :param samples: a 1-D array of per-episode values (unit: episode), or a sequence of
        1-D arrays, one per seed (unit: seed; each seed is summarised by its mean first and
        the interval resamples those means). A single seed falls back to its episodes.
    :param statistic: vectorised reduction with an ``axis`` keyword (``np.mean`` by default).
    :param confidence_level: two-sided level (0.95).
    :param n_resamples: bootstrap resamples.
    :param seed: seed for the resampling, so intervals are reproducible.
    :param method: ``"BCa"`` (default), ``"percentile"`` or ``"basic"`` (scipy's names).
    :return: :class:`Interval`; with fewer than 2 units, or all units equal, the interval
        collapses to the estimate (there is no spread to resample).
    """
    values, unit = _units(samples)
    if values.size == 0:
        raise ValueError("bootstrap_interval got no samples; evaluate at least one episode")
    if not np.isfinite(values).all():
        raise ValueError(f"bootstrap_interval got non-finite samples at indices {np.flatnonzero(~np.isfinite(values))}")
    estimate = float(statistic(values, axis=-1))
    if values.size < 2 or np.ptp(values) == 0:
        return _degenerate(estimate, values.size, unit)
    with warnings.catch_warnings():
        # BCa warns (and returns NaN) on near-degenerate data; we fall back below.
        warnings.simplefilter("ignore", category=stats.DegenerateDataWarning)
        result = stats.bootstrap(
            (values,),
            statistic,
            confidence_level=confidence_level,
            n_resamples=n_resamples,
            method=method,
            rng=np.random.default_rng(seed),
            vectorized=True,
            # resamples (and BCa's jackknife) in batches of ~4 M values: 10,000 per-transition values
            # would otherwise take a (10,000 x 9,999) jackknife array, 800 MB, at once
            batch=max(1, _BATCH_VALUES // values.size),
        )
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    if not (math.isfinite(low) and math.isfinite(high)):
        # BCa's acceleration is undefined for some skewed tiny samples; percentile is always defined.
        return bootstrap_interval(
            values, statistic, confidence_level=confidence_level, n_resamples=n_resamples, seed=seed,
            method="percentile",
        )
    return Interval(estimate, min(low, estimate), max(high, estimate), values.size, unit)


def _units(samples: Sequence[float] | np.ndarray | Sequence[Sequence[float]]) -> tuple[np.ndarray, str]:
    """1-D array of the units to resample, and their name."""
    if isinstance(samples, np.ndarray) or not samples or np.isscalar(samples[0]):
        values = np.asarray(samples, dtype=np.float64)
        if values.ndim != 1:
            raise ValueError(
                f"samples must be 1-D (episodes) or a list of 1-D arrays (seeds), got shape {values.shape}"
            )
        return values, "episode"
    per_seed = [np.asarray(s, dtype=np.float64).ravel() for s in samples]
    if any(s.size == 0 for s in per_seed):
        raise ValueError("a seed has no episodes; drop it or evaluate at least one episode per seed")
    if len(per_seed) == 1:
        return per_seed[0], "episode"
    return np.array([s.mean() for s in per_seed]), "seed"


# ---------------------------------------------------------------------- OOD detection
def auroc(scores_pos: np.ndarray, scores_neg: np.ndarray) -> float:
    """Area under the ROC curve: P(score_pos > score_neg) + ½ P(tie).

    Computed from midranks in O(n log n) (the Mann–Whitney U statistic / (n_pos·n_neg)).

    :param scores_pos: (P,) scores of the positives (e.g. reward_std on test-only states).
    :param scores_neg: (N,) scores of the negatives (e.g. reward_std on training states).
    :return: AUROC in [0, 1]; 0.5 means the score does not separate the two sets.
    """
    pos = np.asarray(scores_pos, dtype=np.float64).ravel()
    neg = np.asarray(scores_neg, dtype=np.float64).ravel()
    if pos.size == 0 or neg.size == 0:
        raise ValueError(f"auroc needs positives and negatives, got {pos.size} and {neg.size}")
    ranks = stats.rankdata(np.concatenate([pos, neg]))
    u_pos = ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2.0
    return float(u_pos / (pos.size * neg.size))


def auroc_interval(
    scores_pos: np.ndarray,
    scores_neg: np.ndarray,
    *,
    confidence_level: float = CONFIDENCE_LEVEL,
    n_resamples: int = 1000,
    seed: int | None = 0,
) -> Interval:
    """:func:`auroc` with a percentile bootstrap interval resampling each class separately.

    Percentile rather than BCa: BCa's jackknife costs one AUROC per data point.
    """
    pos = np.asarray(scores_pos, dtype=np.float64).ravel()
    neg = np.asarray(scores_neg, dtype=np.float64).ravel()
    estimate = auroc(pos, neg)
    n = pos.size + neg.size
    if pos.size < 2 or neg.size < 2 or np.ptp(np.concatenate([pos, neg])) == 0:
        return _degenerate(estimate, n, "transition")
    result = stats.bootstrap(
        (pos, neg),
        lambda p, q: auroc(p, q),
        confidence_level=confidence_level,
        n_resamples=n_resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
        vectorized=False,
        paired=False,
    )
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    return Interval(estimate, min(low, estimate), max(high, estimate), n, "transition")


# ---------------------------------------------------------------------- calibration
def member_mean_std(
    member_rewards: np.ndarray, member_probs: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Posterior predictive mean and std per transition from member rewards.

    :param member_rewards: (K, B) rewards of every member (a RewardModel's ``predict``).
    :param member_probs: (K,) posterior weights; uniform when None.
    :return: (mean, std), each (B,) float64; std is the weighted population std over members.
    """
    rewards = np.asarray(member_rewards, dtype=np.float64)
    if rewards.ndim != 2:
        raise ValueError(f"member_rewards must have shape (K, B), got {rewards.shape}")
    k = rewards.shape[0]
    probs = np.full(k, 1.0 / k) if member_probs is None else np.asarray(member_probs, dtype=np.float64)
    assert probs.shape == (k,), (probs.shape, k)
    mean = probs @ rewards
    std = np.sqrt(np.maximum(probs @ (rewards - mean) ** 2, 0.0))
    assert mean.shape == std.shape == (rewards.shape[1],)
    return mean, std


def _predictive_std(std: np.ndarray, min_std: float) -> np.ndarray:
    if min_std < 0:
        raise ValueError(f"min_std must be >= 0, got {min_std}")
    # Members that agree exactly would give zero variance and infinite NLL; the floor keeps
    # the metric finite and is reported alongside it.
    return np.sqrt(np.square(std) + min_std**2)


def gaussian_nll(labels: np.ndarray, mean: np.ndarray, std: np.ndarray, min_std: float = 0.0) -> np.ndarray:
    """Per-label negative log-likelihood under N(mean, std² + min_std²), in nats.

    For labels drawn from the predicted Gaussian itself, its expectation is the Gaussian's
    differential entropy ½·log(2πe·σ²): lower means sharper *and* right.

    :param labels: (B,) held-out true rewards.
    :param mean: (B,) predictive means.
    :param std: (B,) predictive stds.
    :param min_std: std floor (see :func:`_predictive_std`).
    :return: (B,) NLL per label.
    """
    labels, mean, std = (np.asarray(a, dtype=np.float64) for a in (labels, mean, std))
    if not labels.shape == mean.shape == std.shape or labels.ndim != 1:
        raise ValueError(f"labels, mean and std must be (B,) arrays, got {labels.shape}, {mean.shape}, {std.shape}")
    sigma = _predictive_std(std, min_std)
    if np.any(sigma == 0):
        raise ValueError("a predictive std is 0 (all members agree); pass min_std > 0 to get a finite NLL")
    return 0.5 * np.log(2.0 * np.pi * sigma**2) + 0.5 * ((labels - mean) / sigma) ** 2


def interval_coverage(
    labels: np.ndarray, mean: np.ndarray, std: np.ndarray, level: float = 0.9, min_std: float = 0.0
) -> np.ndarray:
    """Per-label indicator that the label lies in the central ``level`` interval of N(mean, std²).

    Its mean is the empirical coverage; a calibrated posterior covers ``level`` of labels,
    an overconfident one fewer.

    :return: (B,) float64 array of 0/1.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    labels, mean, std = (np.asarray(a, dtype=np.float64) for a in (labels, mean, std))
    if not labels.shape == mean.shape == std.shape or labels.ndim != 1:
        raise ValueError(f"labels, mean and std must be (B,) arrays, got {labels.shape}, {mean.shape}, {std.shape}")
    half_width = special.ndtri(0.5 + level / 2.0) * _predictive_std(std, min_std)
    return (np.abs(labels - mean) <= half_width).astype(np.float64)


def difference_interval(
    a: np.ndarray,
    b: np.ndarray,
    *,
    confidence_level: float = CONFIDENCE_LEVEL,
    n_resamples: int = 2000,
    seed: int | None = 0,
) -> Interval:
    """mean(a) − mean(b) for two independent samples, with a bootstrap interval resampling each.

    Used for regret against an oracle *agent* (oracle returns minus the agent's returns),
    where the two sets of episodes are not paired.

    :param a: (N,) e.g. the oracle's true returns.
    :param b: (M,) e.g. the agent's true returns.
    """
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if a.size == 0 or b.size == 0:
        raise ValueError(f"difference_interval needs two non-empty samples, got sizes {a.size} and {b.size}")
    estimate = float(a.mean() - b.mean())
    n = a.size + b.size
    if a.size < 2 or b.size < 2 or (np.ptp(a) == 0 and np.ptp(b) == 0):
        return _degenerate(estimate, n, "episode")
    result = stats.bootstrap(
        (a, b),
        lambda x, y, axis=-1: x.mean(axis=axis) - y.mean(axis=axis),
        confidence_level=confidence_level,
        n_resamples=n_resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
        vectorized=True,
        paired=False,
    )
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    return Interval(estimate, min(low, estimate), max(high, estimate), n, "episode")
