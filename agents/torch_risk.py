"""Risk measures of :mod:`ruagent.risk` in torch, differentiable, for the off-policy agents.

:mod:`ruagent.risk` works on numpy arrays and returns ``(value, weights)``; RiskSAC's actor
loss needs ρ as a torch expression it can differentiate, and RiskDQN's greedy action needs ρ
of many (state, action) columns at once on the networks' device. :func:`risk_value` computes
the same ρ as ``measure.value(J, probs)`` over axis 0 of a tensor of any shape
``(K, *batch)``, and its gradient with respect to J is the numpy weights (∂ρ/∂J) wherever ρ
is differentiable (tests check both against :mod:`ruagent.risk` on random inputs).

CVaR's weights depend only on the members' ranks and probabilities, so they are computed in
float64 (exactly as :func:`ruagent.risk.cvar` does) and the value is the weighted sum of the
sorted members: the gradient reaches the tail members through the sort.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch as th

from ruagent import risk as risk_measures

__all__ = ["risk_value"]


def _column(weights: th.Tensor, ndim: int) -> th.Tensor:
    """(K,) -> (K, 1, ..., 1), broadcastable against a (K, *batch) tensor of ``ndim`` dims."""
    return weights.reshape(-1, *([1] * (ndim - 1)))


@functools.lru_cache(maxsize=64)
def _rank_weights(k: int, alpha: float, dtype: th.dtype, device: th.device) -> th.Tensor:
    """Uniform members' CVaR weights by rank (worst first), as :func:`ruagent.risk.cvar` computes them."""
    rank_weights = np.clip(np.minimum(1.0 / k, alpha - np.arange(k) / k), 0.0, None) / alpha
    return th.as_tensor(rank_weights, dtype=dtype, device=device)


def _cvar(values: th.Tensor, alpha: float, probs: np.ndarray | None) -> th.Tensor:
    k = values.shape[0]
    # ties: any order gives the same value (tied members share the tail mass whatever their order)
    sorted_values, order = th.sort(values, dim=0)
    if probs is None:  # the same weights for every column: one (K,) vector by rank
        weights = _column(_rank_weights(k, float(alpha), values.dtype, values.device), values.ndim)
        return (weights * sorted_values).sum(dim=0)
    p = th.as_tensor(probs, dtype=th.float64, device=values.device)
    sorted_p = _column(p, values.ndim).expand(values.shape).gather(0, order)
    mass_before = th.cumsum(sorted_p, dim=0) - sorted_p
    weights = th.clamp(th.minimum(sorted_p, alpha - mass_before), min=0.0) / alpha
    return (weights.to(values.dtype) * sorted_values).sum(dim=0)


def _mean(values: th.Tensor, probs: np.ndarray | None) -> th.Tensor:
    if probs is None:
        return values.mean(dim=0)
    p = _column(th.as_tensor(probs, dtype=values.dtype, device=values.device), values.ndim)
    return (p * values).sum(dim=0)


def _mean_std(values: th.Tensor, lam: float, probs: np.ndarray | None) -> th.Tensor:
    mu = _mean(values, probs)
    variance = _mean((values - mu) ** 2, probs)
    positive = variance > 0
    # sqrt has an infinite slope at 0: where all members agree the std and its gradient are 0
    std = th.where(positive, th.sqrt(th.where(positive, variance, th.ones_like(variance))), th.zeros_like(variance))
    return mu - lam * std


def _entropic(values: th.Tensor, beta: float, probs: np.ndarray | None) -> th.Tensor:
    k = values.shape[0]
    if probs is None:
        log_p = th.full((k,), -math.log(k), dtype=values.dtype, device=values.device)
    else:
        with np.errstate(divide="ignore"):
            log_p = th.as_tensor(np.log(probs), dtype=values.dtype, device=values.device)
    return -th.logsumexp(-beta * values + _column(log_p, values.ndim), dim=0) / beta


def _worst(values: th.Tensor, probs: np.ndarray | None) -> th.Tensor:
    if probs is None:
        return values.min(dim=0).values
    possible = _column(th.as_tensor(probs > 0, device=values.device), values.ndim)
    return th.where(possible, values, th.full_like(values, math.inf)).min(dim=0).values


def risk_value(
    measure: risk_measures.RiskMeasure, values: th.Tensor, probs: np.ndarray | None = None
) -> th.Tensor:
    """ρ over the members (axis 0) of ``values``: ``(K, *batch) -> (*batch)``, differentiable.

    :param measure: a :class:`ruagent.risk.RiskMeasure` (``ruagent.risk.make(name, **params)``).
    :param values: member values, members on axis 0.
    :param probs: (K,) member probabilities summing to 1 (normalised by the caller), or None
        for uniform members (the faster path; the same ρ).
    :return: ρ of every column, the dtype and device of ``values``.
    """
    if values.ndim < 1 or values.shape[0] < 1:
        raise ValueError(f"values must have members on axis 0 (shape (K, ...), K >= 1), got {tuple(values.shape)}")
    if probs is not None:
        probs = np.asarray(probs, dtype=np.float64)
        if probs.shape != (values.shape[0],):
            raise ValueError(f"probs must have shape ({values.shape[0]},), got {probs.shape}")
    params = measure.params
    if measure.name == "mean":
        return _mean(values, probs)
    if measure.name == "cvar":
        return _cvar(values, params["alpha"], probs)
    if measure.name == "worst":
        return _worst(values, probs)
    if measure.name == "mean_std":
        return _mean_std(values, params["lam"], probs)
    if measure.name == "entropic":
        return _entropic(values, params["beta"], probs)
    if measure.name == "broil":
        lam = params["lam"]
        return lam * _mean(values, probs) + (1 - lam) * _cvar(values, params["alpha"], probs)
    raise ValueError(f"no torch implementation of risk measure {measure.name!r}")
