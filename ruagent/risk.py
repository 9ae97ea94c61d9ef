r"""Risk measures over reward hypotheses.

Each function takes ``J``, the values of K members — shape (K,) or (K, B) with members on
axis 0 and B independent columns — and optional member probabilities ``probs`` of shape
(K,) (uniform when None). It returns ``(value, weights)``: ``value`` has shape () or (B,),
``weights`` = dρ/dJ has the shape of ``J``. Where ρ is a risk measure the weights are
non-negative and sum to 1 over members (mean_std with a large λ can give negative weights;
its weights still sum to 1).

These same functions score whole-episode member returns in :class:`ruagent.agents.RiskPPO`
(trajectory-level risk) and scalarise per-step member rewards in the wrappers' modes.

>>> import numpy as np
>>> value, weights = cvar(np.array([3.0, 1.0, 2.0, 4.0]), alpha=0.5)
>>> float(value), weights.tolist()
(1.5, [0.0, 0.5, 0.5, 0.0])

References: Rockafellar & Uryasev (2000) for CVaR; Brown, Niekum & Petrik, "Bayesian
Robust Optimization for Imitation Learning" (NeurIPS 2020) for BROIL; Föllmer & Schied
(2002) for the entropic risk measure.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = [
    "RISK_MEASURES",
    "RiskMeasure",
    "broil",
    "cvar",
    "entropic",
    "make",
    "mean",
    "mean_std",
    "worst",
]


def _prepare(J: Any, probs: Any) -> tuple[np.ndarray, np.ndarray, bool]:
    """Return J as (K, B) float64, probs as (K, 1) and whether the input was 1-D."""
    values = np.asarray(J, dtype=np.float64)
    if values.ndim not in (1, 2) or values.shape[0] == 0:
        raise ValueError(f"J must have shape (K,) or (K, B) with K >= 1, got shape {values.shape}")
    squeeze = values.ndim == 1
    if squeeze:
        values = values[:, None]
    k = values.shape[0]
    if probs is None:
        p = np.full((k, 1), 1.0 / k)
    else:
        p = np.asarray(probs, dtype=np.float64)
        if p.shape != (k,) or np.any(p < 0) or not np.isfinite(p).all() or p.sum() <= 0:
            raise ValueError(f"probs must be {k} non-negative finite numbers, got {probs!r}")
        p = (p / p.sum())[:, None]
    return values, p, squeeze


def _finish(value: np.ndarray, weights: np.ndarray, squeeze: bool) -> tuple[np.ndarray, np.ndarray]:
    if squeeze:
        return value[0], weights[:, 0]
    return value, weights


def mean(J: Any, probs: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Expected value under the posterior: ρ = Σ p_k J_k, weights p."""
    values, p, squeeze = _prepare(J, probs)
    weights = np.broadcast_to(p, values.shape).copy()
    return _finish((weights * values).sum(axis=0), weights, squeeze)


def cvar(J: Any, alpha: float, probs: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Conditional value at risk: the mean of the worst ``alpha`` probability mass.

    With uniform probs, weight 1/(αK) on the worst ⌊αK⌋ members and the remainder on the
    next one; alpha = 1 is the mean, alpha = 1/K the worst member.
    """
    if not 0.0 < float(alpha) <= 1.0:
        raise ValueError(f"cvar alpha must be in (0, 1], got {alpha}")
    values, p, squeeze = _prepare(J, probs)
    order = np.argsort(values, axis=0, kind="stable")
    sorted_p = np.take_along_axis(np.broadcast_to(p, values.shape), order, axis=0)
    mass_before = np.cumsum(sorted_p, axis=0) - sorted_p
    sorted_w = np.clip(np.minimum(sorted_p, alpha - mass_before), 0.0, None) / alpha
    weights = np.empty_like(sorted_w)
    np.put_along_axis(weights, order, sorted_w, axis=0)
    return _finish((weights * values).sum(axis=0), weights, squeeze)


def worst(J: Any, probs: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """The worst member with non-zero probability; all weight on it."""
    values, p, squeeze = _prepare(J, probs)
    masked = np.where(p > 0, values, np.inf)
    idx = np.argmin(masked, axis=0)
    weights = np.zeros_like(values)
    weights[idx, np.arange(values.shape[1])] = 1.0
    return _finish(values[idx, np.arange(values.shape[1])], weights, squeeze)


def mean_std(J: Any, lam: float, probs: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """ρ = mean − λ·std (the lower confidence bound); w_k = p_k − λ p_k (J_k − mean)/std.

    Where std = 0 the weights are p.
    """
    if float(lam) < 0:
        raise ValueError(f"mean_std lam must be >= 0, got {lam}")
    values, p, squeeze = _prepare(J, probs)
    mu = (p * values).sum(axis=0)
    centred = values - mu
    std = np.sqrt((p * centred**2).sum(axis=0))
    safe_std = np.where(std > 0, std, 1.0)
    weights = p - lam * p * np.where(std > 0, centred / safe_std, 0.0)
    return _finish(mu - lam * std, weights, squeeze)


def entropic(J: Any, beta: float, probs: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Entropic risk ρ = −(1/β) log Σ p_k exp(−β J_k); weights softmax(−β J + log p).

    Tends to the mean as β → 0 and to the worst member as β → ∞.
    """
    if not float(beta) > 0:
        raise ValueError(f"entropic beta must be > 0, got {beta}")
    values, p, squeeze = _prepare(J, probs)
    with np.errstate(divide="ignore"):
        logits = -beta * values + np.log(p)
    top = logits.max(axis=0)
    exp = np.exp(logits - top)
    total = exp.sum(axis=0)
    weights = exp / total
    value = -(top + np.log(total)) / beta
    return _finish(value, weights, squeeze)


def broil(J: Any, lam: float, alpha: float, probs: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """BROIL mixture λ·mean + (1 − λ)·cvar(α) (Brown, Niekum & Petrik, NeurIPS 2020)."""
    if not 0.0 <= float(lam) <= 1.0:
        raise ValueError(f"broil lam must be in [0, 1], got {lam}")
    mean_value, mean_weights = mean(J, probs)
    cvar_value, cvar_weights = cvar(J, alpha, probs)
    return lam * mean_value + (1 - lam) * cvar_value, lam * mean_weights + (1 - lam) * cvar_weights


RiskFunction = Callable[..., tuple[np.ndarray, np.ndarray]]

#: name -> (function, {parameter: (default, value at "mean" for annealing)})
RISK_MEASURES: dict[str, tuple[RiskFunction, dict[str, tuple[float, float]]]] = {
    "mean": (mean, {}),
    "cvar": (cvar, {"alpha": (0.1, 1.0)}),
    "worst": (worst, {}),
    "mean_std": (mean_std, {"lam": (1.0, 0.0)}),
    "entropic": (entropic, {"beta": (1.0, 1e-6)}),
    "broil": (broil, {"lam": (0.5, 1.0), "alpha": (0.05, 1.0)}),
}


@functools.lru_cache(maxsize=64)
def _cvar_rank_weights(k: int, alpha: float) -> np.ndarray:
    """(K,) CVaR_α weights of the sorted values of K equally likely members (cached: the wrappers
    ask for the same K and α every step)."""
    weights = np.clip(np.minimum(1.0 / k, alpha - np.arange(k) / k), 0.0, None) / alpha
    weights.flags.writeable = False
    return weights


@dataclasses.dataclass(frozen=True)
class RiskMeasure:
    """A named risk measure with its parameters, callable as ``measure(J, probs=None)``.

    Build one with :func:`make`. ``annealed(f)`` interpolates the parameters between the
    risk-neutral setting (f = 0, equal to the mean) and the target (f = 1), following
    CeSoR (Greenberg et al., NeurIPS 2022), which starts training at risk level 1.
    """

    name: str
    params: dict[str, float] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name not in RISK_MEASURES:
            raise ValueError(f"unknown risk measure {self.name!r}; choose one of {sorted(RISK_MEASURES)}")
        allowed = RISK_MEASURES[self.name][1]
        unknown = set(self.params) - set(allowed)
        if unknown:
            raise ValueError(
                f"risk measure {self.name!r} takes parameters {sorted(allowed) or 'none'}, got {sorted(unknown)}"
            )
        full = {key: float(self.params.get(key, default)) for key, (default, _) in allowed.items()}
        object.__setattr__(self, "params", full)
        self(np.zeros(1))  # validates parameter ranges now, not at the first training step

    def __call__(self, J: Any, probs: Any = None) -> tuple[np.ndarray, np.ndarray]:
        return RISK_MEASURES[self.name][0](J, probs=probs, **self.params)

    def value(self, J: Any, probs: Any = None) -> np.ndarray:
        """ρ(J) alone: equal to ``self(J, probs)[0]``, cheaper on the wrappers' per-step path.

        With uniform probs the CVaR weights by rank are the same for every column, so one
        sort replaces the argsort and scatter that the weights need.
        """
        if probs is None and self.name in ("cvar", "broil"):
            values = np.asarray(J, dtype=np.float64)
            tail = _cvar_rank_weights(values.shape[0], self.params["alpha"]) @ np.sort(values, axis=0)
            if self.name == "cvar":
                return tail
            lam = self.params["lam"]
            return lam * values.mean(axis=0) + (1 - lam) * tail
        return self(J, probs)[0]

    def annealed(self, fraction: float) -> RiskMeasure:
        """This measure with parameters moved ``fraction`` of the way from risk-neutral."""
        fraction = float(np.clip(fraction, 0.0, 1.0))
        if fraction >= 1.0:
            return self  # exactly the target: neutral + 1·(target − neutral) can miss it by rounding
        if self.name == "worst":
            # worst is cvar at the smallest level; anneal through cvar and land on worst.
            return RiskMeasure("cvar", {"alpha": 1.0 - fraction * (1.0 - 1e-6)})
        neutral = {key: start for key, (_, start) in RISK_MEASURES[self.name][1].items()}
        params = {key: neutral[key] + fraction * (value - neutral[key]) for key, value in self.params.items()}
        return RiskMeasure(self.name, params)

    def __str__(self) -> str:
        args = ", ".join(f"{key}={value:g}" for key, value in self.params.items())
        return f"{self.name}({args})"


def make(name: str | RiskMeasure, **params: float) -> RiskMeasure:
    """Build a :class:`RiskMeasure` by name, e.g. ``make("cvar", alpha=0.05)``."""
    if isinstance(name, RiskMeasure):
        if params:
            raise ValueError("pass parameters either in the RiskMeasure or as keywords, not both")
        return name
    return RiskMeasure(name, dict(params))
