r"""The Bradley–Terry preference likelihood on segment returns, with label noise.

A labeller prefers segment σ¹ over σ² with probability

.. math::  P(σ¹ ≻ σ²) = ε/2 + (1 − ε)\,\mathrm{sigmoid}(Δ),  \qquad Δ = (R(σ¹) − R(σ²)) / τ,

where R is a segment's summed reward under one reward hypothesis, τ a temperature
(Boltzmann rationality) and ε the probability that the label is a uniformly random answer
(Bradley & Terry 1952; Christiano et al., NeurIPS 2017, who fit with ε = 0.1). Labels y are
in [0, 1]: 1 means σ¹ preferred, 0 σ² preferred, 0.5 equally good. The negative
log-likelihood of one label is ``−y log P − (1 − y) log(1 − P)``; since
``1 − P(Δ) = P(−Δ)``, both logs are computed stably as
``logaddexp(log(ε/2), log(1 − ε) + logsigmoid(±Δ))``.

Torch functions (differentiable, for fitting ensembles) and NumPy functions with analytic
derivatives in Δ (for the Laplace posterior and for query scores) share these formulas.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "bradley_terry_loss",
    "log_preference_probability",
    "nll_derivatives",
    "preference_probability",
]


def _check_noise(label_noise: float) -> None:
    if not 0.0 <= label_noise < 1.0:
        raise ValueError(f"label_noise is a probability of a random answer and must be in [0, 1), got {label_noise}")


def log_preference_probability(delta: torch.Tensor, label_noise: float = 0.0) -> torch.Tensor:
    """log P(σ¹ ≻ σ²) for return differences ``delta`` (any shape), stable for large |Δ|."""
    _check_noise(label_noise)
    if label_noise == 0.0:
        return F.logsigmoid(delta)
    return torch.logaddexp(
        torch.full_like(delta, math.log(label_noise / 2)), math.log1p(-label_noise) + F.logsigmoid(delta)
    )


def bradley_terry_loss(
    member_returns: torch.Tensor,
    labels: torch.Tensor,
    label_noise: float = 0.0,
    temperature: float = 1.0,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean negative log-likelihood of preference labels under each of K reward hypotheses.

    :param member_returns: (K, B, 2) segment returns of every member for B pairs.
    :param labels: (B,) in [0, 1], 1 when the first segment is preferred; or (K, B) when each
        member sees its own minibatch (bootstrap).
    :param label_noise: ε, probability that a label is a uniformly random answer.
    :param temperature: τ, the Boltzmann temperature of the labeller.
    :param weights: (K, B) non-negative per-member weights of pairs (bootstrap counts); None = all 1.
    :return: (K,) per-member weighted mean NLL; sum it to train all members in one backward pass.
    """
    k, b, two = member_returns.shape
    assert two == 2 and labels.shape in ((b,), (k, b)), (member_returns.shape, labels.shape)
    delta = (member_returns[..., 0] - member_returns[..., 1]) / temperature  # (K, B)
    nll = -(
        labels * log_preference_probability(delta, label_noise)
        + (1 - labels) * log_preference_probability(-delta, label_noise)
    )
    if weights is None:
        return nll.mean(dim=1)
    assert weights.shape == (k, b), (weights.shape, (k, b))
    return (weights * nll).sum(dim=1) / weights.sum(dim=1).clamp_min(1e-12)


def _log_sigmoid(x: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -x)


def _log_p(delta: np.ndarray, label_noise: float) -> np.ndarray:
    if label_noise == 0.0:
        return _log_sigmoid(delta)
    return np.logaddexp(np.log(label_noise / 2), np.log1p(-label_noise) + _log_sigmoid(delta))


def preference_probability(delta: np.ndarray, label_noise: float = 0.0) -> np.ndarray:
    """P(σ¹ ≻ σ²) = ε/2 + (1 − ε)·sigmoid(Δ) for ``delta`` of any shape (NumPy)."""
    _check_noise(label_noise)
    return np.exp(_log_p(np.asarray(delta, dtype=np.float64), label_noise))


def nll_derivatives(
    delta: np.ndarray, labels: np.ndarray, label_noise: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """NLL of each label and its derivatives in Δ (NumPy, elementwise, same shapes).

    :return: ``(nll, dnll/dΔ, fisher)`` where ``fisher`` = E_y[(dnll/dΔ)²] =
        P'(Δ)² / (P(1 − P)), the Gauss–Newton curvature. It is non-negative, and for
        ε = 0 it equals the exact second derivative sigmoid(Δ)(1 − sigmoid(Δ)), so Newton
        steps with it are exact IRLS for logistic likelihoods.
    """
    _check_noise(label_noise)
    delta = np.asarray(delta, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    log_p, log_q = _log_p(delta, label_noise), _log_p(-delta, label_noise)
    nll = -(labels * log_p + (1 - labels) * log_q)
    # P'(Δ) = (1 − ε)·sigmoid(Δ)·sigmoid(−Δ); kept in logs so no 0/0 at large |Δ|
    log_dp = np.log1p(-label_noise) + _log_sigmoid(delta) + _log_sigmoid(-delta)
    grad = -(labels * np.exp(log_dp - log_p) - (1 - labels) * np.exp(log_dp - log_q))
    fisher = np.exp(2 * log_dp - log_p - log_q)
    return nll, grad, fisher
