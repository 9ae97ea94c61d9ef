"""The evidence (marginal likelihood) of Bayesian linear regression, as a function of the noise.

For labels y = Φw + ε with w ~ N(0, σ_r² I) and ε ~ N(0, σ_n² I), the evidence is
N(y; 0, σ_r² ΦΦᵀ + σ_n² I). With Φ̃ = σ_r Φ ("whitened" by the prior) and the eigen-decomposition
of Φ̃ᵀΦ̃, every quantity below costs O(P) per σ_n from the sufficient statistics alone (Bishop,
*Pattern Recognition and Machine Learning*, 2006, §3.5; MacKay 1992). The linear reward
posterior estimates σ_n by :func:`maximise_evidence` (type-II maximum likelihood).
"""

from __future__ import annotations

import numpy as np
import scipy.optimize

__all__ = ["evidence_slope", "log_evidence", "maximise_evidence"]

#: log-spaced grid points over [floor, ‖y‖] that locate the maximum before Brent's root finder.
_EVIDENCE_GRID = 48


def log_evidence(log_noise_std: float, s: np.ndarray, b2: np.ndarray, yy: float, n: int) -> float:
    """log N(y; 0, Φ̃Φ̃ᵀ + σ² I) from whitened statistics: eigenvalues ``s`` of Φ̃ᵀΦ̃, squared
    projections ``b2`` of Φ̃ᵀy on its eigenvectors, ``yy`` = yᵀy and N; σ = exp(log_noise_std)."""
    var = np.exp(2.0 * log_noise_std)
    residual = max(yy - float(np.sum(b2 / (var + s))), 0.0)  # yᵀ(I + Φ̃Φ̃ᵀ/σ²)⁻¹y ≥ 0
    log_det = n * np.log(var) + float(np.sum(np.log1p(s / var)))
    return -0.5 * (n * np.log(2 * np.pi) + log_det + residual / var)


def evidence_slope(log_noise_std: float, s: np.ndarray, b2: np.ndarray, yy: float, n: int) -> float:
    """``−2 ∂ log p / ∂ log σ²`` from the same statistics: ``N − γ − ‖y − Φ̃m‖² / σ²`` with
    γ = Σ s_i/(σ² + s_i) and m the posterior mean at σ (Bishop eq. 3.91–3.95); zero at the maximum,
    negative below it."""
    var = np.exp(2.0 * log_noise_std)
    denominator = var + s
    gamma = float(np.sum(s / denominator))
    residual = yy - float(np.sum(b2 / denominator)) - var * float(np.sum(b2 / denominator**2))  # ‖y − Φ̃m‖²
    return n - gamma - max(residual, 0.0) / var


def maximise_evidence(s: np.ndarray, b2: np.ndarray, yy: float, n: int, floor: float) -> float:
    """σ_n in [floor, max(‖y‖, floor)] maximising the evidence.

    A log grid finds the best cell; the stationarity condition (:func:`evidence_slope` = 0)
    is then solved there by Brent's root finder. A root, unlike the flat top of the evidence
    itself, is pinned down to rounding error, so a refit and online updates (the same
    statistics summed in another order) agree on σ̂_n to ~1e-12.
    """
    low, high = np.log(floor), np.log(max(np.sqrt(yy), floor))
    if high - low < 1e-9:
        return floor
    grid = np.linspace(low, high, _EVIDENCE_GRID)
    best = int(np.argmax([log_evidence(g, s, b2, yy, n) for g in grid]))
    left, right = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]

    def slope(g: float) -> float:
        return evidence_slope(g, s, b2, yy, n)

    if slope(left) < 0 < slope(right):
        return float(np.exp(scipy.optimize.brentq(slope, left, right, xtol=1e-15, rtol=4 * np.finfo(float).eps)))
    if best == 0:
        return floor  # the evidence falls from the floor on: (nearly) exact labels
    return float(np.exp(grid[best]))  # a maximum at the upper end, or a flat evidence: the grid's best
