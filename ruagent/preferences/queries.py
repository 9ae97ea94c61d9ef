r"""Which queries to spend a label budget on: random, disagreement, information gain; and when.

Candidates are pairs of segments from a pool (``index`` (B, 2) into a :class:`Segments` of N),
so each segment's returns are computed once however many pairs it appears in. A strategy
scores the B candidates (higher = more useful) and :meth:`PairQuery.select` takes the n best.

* ``random``: uniform scores (the baseline every active method must beat).
* ``disagreement``: variance over members of P_k(σ¹ ≻ σ²) (Christiano et al., NeurIPS 2017;
  imitation's ``PreferenceComparisons`` with an ensemble).
* ``info_gain``: expected information gain about the reward from the label, the mutual
  information I(y; w) = H[E_w P] − E_w H[P] (BALD, Houlsby et al. 2011). Under a Gaussian
  posterior on linear weights, Δ ~ N(m, s²) and both terms are one-dimensional integrals,
  done by Gauss–Hermite quadrature; for an ensemble the expectation is over its members.

The same machinery chooses which transitions to query for reward labels (regression):
:func:`transition_scores` — member variance of r, or for a Gaussian linear posterior the
information gain ½ log(1 + φᵀΣφ / σ²).

:class:`LabelSchedule` spreads a budget over training: a fraction up front, the rest at a
rate that decays like Christiano et al.'s (proportional to t₀ / (t + t₀)).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable

import numpy as np

from ruagent.preferences.bradley_terry import preference_probability
from ruagent.preferences.segments import Segments, candidate_pairs, member_segment_returns

__all__ = [
    "QUERIES",
    "DisagreementQuery",
    "InfoGainQuery",
    "LabelSchedule",
    "PairQuery",
    "RandomQuery",
    "bald_gaussian",
    "bald_members",
    "candidate_pairs",
    "make_query",
    "transition_scores",
]

_HERMITE_NODES, _HERMITE_WEIGHTS = np.polynomial.hermite_e.hermegauss(32)  # ∫ f(x) exp(−x²/2) dx
_HERMITE_WEIGHTS = _HERMITE_WEIGHTS / math.sqrt(2 * math.pi)  # now E_{x ~ N(0,1)}[f(x)] = Σ w f(node)


def _binary_entropy(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return -(p * np.log(p) + (1 - p) * np.log1p(-p))


def bald_members(member_probabilities: np.ndarray, member_weights: np.ndarray | None = None) -> np.ndarray:
    """Mutual information between the label and the member, for P_k of shape (K, B): (B,) nats."""
    k = member_probabilities.shape[0]
    weights = np.full(k, 1.0 / k) if member_weights is None else np.asarray(member_weights, dtype=np.float64)
    mean_p = weights @ member_probabilities
    return _binary_entropy(mean_p) - weights @ _binary_entropy(member_probabilities)


def bald_gaussian(delta_mean: np.ndarray, delta_var: np.ndarray, label_noise: float = 0.0) -> np.ndarray:
    """Mutual information I(y; w) when Δ ~ N(mean, var): (B,) nats, by 32-point Gauss–Hermite."""
    delta = delta_mean[:, None] + np.sqrt(np.maximum(delta_var, 0.0))[:, None] * _HERMITE_NODES  # (B, 32)
    p = preference_probability(delta, label_noise)
    return _binary_entropy(p @ _HERMITE_WEIGHTS) - _binary_entropy(p) @ _HERMITE_WEIGHTS


class PairQuery(abc.ABC):
    """Scores candidate pairs; :meth:`select` returns the rows of the n highest scores."""

    name: str

    @abc.abstractmethod
    def scores(self, segments: Segments, index: np.ndarray) -> np.ndarray:
        """(B,) usefulness of each candidate pair ``(segments[index[b, 0]], segments[index[b, 1]])``."""

    #: whether :meth:`scores` mean something to a labeller (random scores do not)
    scored: bool = True

    def select(self, segments: Segments, index: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        """Rows of ``index`` (B, 2) to query, best first: (min(n, B),) int. Ties break at random."""
        return self.ranked(segments, index, n, rng)[0]

    def ranked(
        self, segments: Segments, index: np.ndarray, n: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`select`'s rows (min(n, B),) int, best first, and their scores (min(n, B),) float64
        (NaN where the strategy's scores mean nothing, as for ``random``): why each pair was chosen."""
        index = np.asarray(index)
        if index.ndim != 2 or index.shape[1] != 2:
            raise ValueError(f"index must have shape (B, 2), got {index.shape}")
        scores = np.asarray(self.scores(segments, index), dtype=np.float64)
        assert scores.shape == (index.shape[0],), (scores.shape, index.shape)
        order = np.lexsort((rng.random(scores.shape[0]), -scores))  # by score, then a random tie-break
        rows = order[: min(n, scores.shape[0])]
        return rows, scores[rows] if self.scored else np.full(rows.shape, np.nan)


class RandomQuery(PairQuery):
    """Uniformly random pairs."""

    name = "random"
    scored = False

    def __init__(self, seed: int | None = None) -> None:
        self.rng = np.random.default_rng(seed)

    def scores(self, segments: Segments, index: np.ndarray) -> np.ndarray:
        return self.rng.random(index.shape[0])


class DisagreementQuery(PairQuery):
    """Variance over members of P_k(σ¹ ≻ σ²) (member-probability weighted).

    :param reward_model: any :class:`~ruagent.reward_models.base.RewardModel` (K > 1 to be useful).
    :param label_noise: ε of the Bradley–Terry likelihood.
    :param temperature: τ of the Bradley–Terry likelihood.
    """

    name = "disagreement"

    def __init__(self, reward_model, label_noise: float = 0.0, temperature: float = 1.0) -> None:
        self.reward_model = reward_model
        self.label_noise = label_noise
        self.temperature = temperature

    def member_probabilities(self, segments: Segments, index: np.ndarray) -> np.ndarray:
        """P_k(first ≻ second) of every member for every candidate: (K, B)."""
        returns = member_segment_returns(self.reward_model, segments)  # (K, N): one batched predict
        delta = (returns[:, index[:, 0]] - returns[:, index[:, 1]]) / self.temperature
        return preference_probability(delta, self.label_noise)

    def scores(self, segments: Segments, index: np.ndarray) -> np.ndarray:
        p = self.member_probabilities(segments, index)
        weights = self.reward_model.member_probs
        mean_p = weights @ p
        return weights @ (p - mean_p) ** 2


class InfoGainQuery(DisagreementQuery):
    """Expected information gain (BALD) of the label about the reward.

    With ``delta_moments`` (a callable mapping segments and index to the Gaussian mean and
    variance of Δ, e.g. from :class:`~ruagent.preferences.fit.LinearPreferenceFitter`) the
    integral is over the Laplace posterior; otherwise over the model's members.
    """

    name = "info_gain"

    def __init__(
        self,
        reward_model,
        label_noise: float = 0.0,
        temperature: float = 1.0,
        delta_moments: Callable[[Segments, np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None,
    ) -> None:
        super().__init__(reward_model, label_noise, temperature)
        self.delta_moments = delta_moments

    def scores(self, segments: Segments, index: np.ndarray) -> np.ndarray:
        if self.delta_moments is not None:
            return bald_gaussian(*self.delta_moments(segments, index), label_noise=self.label_noise)
        return bald_members(self.member_probabilities(segments, index), self.reward_model.member_probs)


#: names accepted by :func:`make_query`
QUERIES = ("random", "disagreement", "info_gain")


def make_query(name: str | PairQuery, reward_model=None, seed: int | None = None, **kwargs) -> PairQuery:
    """A query strategy by name (see :data:`QUERIES`); strategy objects pass through."""
    if isinstance(name, PairQuery):
        return name
    if name == "random":
        return RandomQuery(seed)
    if name == "disagreement":
        return DisagreementQuery(reward_model, **kwargs)
    if name == "info_gain":
        return InfoGainQuery(reward_model, **kwargs)
    raise ValueError(f"query must be one of {QUERIES} or a PairQuery, got {name!r}")


def transition_scores(
    query: str,
    member_rewards: np.ndarray | None = None,
    features: np.ndarray | None = None,
    cov: np.ndarray | None = None,
    noise_var: float = 1.0,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """(B,) usefulness of asking the env reward of B transitions (reward-label regression).

    :param query: ``random``; ``disagreement`` needs ``member_rewards`` (K, B) and scores their
        variance; ``info_gain`` with ``features`` (B, D) and posterior ``cov`` (D, D) scores
        ½ log(1 + φᵀΣφ / σ²) (Gaussian linear model), else ½ log(1 + var_k r / σ²).
    """
    if query == "random":
        n = member_rewards.shape[1] if member_rewards is not None else features.shape[0]
        return (rng or np.random.default_rng()).random(n)
    if query == "info_gain" and features is not None and cov is not None:
        predictive_var = np.einsum("bi,ij,bj->b", features, cov, features)
        return 0.5 * np.log1p(predictive_var / noise_var)
    if member_rewards is None:
        raise ValueError(f"query={query!r} needs member_rewards (K, B) (or features and cov for info_gain)")
    variance = np.asarray(member_rewards, dtype=np.float64).var(axis=0)
    return variance if query == "disagreement" else 0.5 * np.log1p(variance / noise_var)


class LabelSchedule:
    """How many labels may have been asked by timestep t: a budget spread over training.

    ``initial_fraction`` of the budget is asked up front (before the agent trains); the rest
    at a rate ∝ t₀ / (t + t₀) over ``total_timesteps`` (Christiano et al. 2017 decay the
    labelling rate like this so that early, fast-changing behaviour gets more labels), or at
    a constant rate with ``decay=None``.

    :param budget: total labels.
    :param total_timesteps: agent timesteps over which the rest is spread.
    :param initial_fraction: share of the budget asked before training, in [0, 1].
    :param decay: t₀ as a fraction of ``total_timesteps`` (default 0.25), or None for constant.
    """

    def __init__(
        self, budget: int, total_timesteps: int, initial_fraction: float = 0.25, decay: float | None = 0.25
    ) -> None:
        if budget < 0 or total_timesteps <= 0 or not 0.0 <= initial_fraction <= 1.0:
            raise ValueError(
                f"need budget >= 0, total_timesteps > 0 and initial_fraction in [0, 1]; got {budget}, "
                f"{total_timesteps}, {initial_fraction}"
            )
        if decay is not None and decay <= 0:
            raise ValueError(
                f"decay is t0 / total_timesteps and must be > 0 (or None for a constant rate); got {decay}"
            )
        self.budget = int(budget)
        self.total_timesteps = int(total_timesteps)
        self.initial = round(initial_fraction * budget)
        self.decay = decay

    def labels_due(self, timestep: int) -> int:
        """Cumulative labels allowed by ``timestep`` (initial at 0, the whole budget at the end)."""
        progress = min(max(timestep, 0) / self.total_timesteps, 1.0)
        if self.decay is None:
            share = progress
        else:  # ∫ t0/(t + t0) dt from 0 to t, normalised to 1 at the end
            share = math.log1p(progress / self.decay) / math.log1p(1.0 / self.decay)
        return min(self.budget, self.initial + math.floor(share * (self.budget - self.initial) + 1e-9))
