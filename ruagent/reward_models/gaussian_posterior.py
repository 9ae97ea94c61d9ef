r"""The Gaussian posterior of Bayesian linear regression, kept with its sufficient statistics.

For labels ``y = Φw + ε``, a prior ``w ~ N(m₀, Λ₀⁻¹)`` and noise ``ε ~ N(0, σ_n²)`` the
posterior is ``N(μ, Σ)`` with (Bishop, *Pattern Recognition and Machine Learning*, 2006,
eq. 3.50–3.51)

    Λ = Σ⁻¹ = Λ₀ + ΦᵀΦ/σ_n²        μ = Σ (Λ₀m₀ + Φᵀy/σ_n²)

so the labels enter only through ΦᵀΦ, Φᵀy, yᵀy and N (float64), and adding labels is adding
to them. :class:`LinearGaussianPosterior` conditions on them in one of two ways:

* a fixed σ_n (:meth:`~LinearGaussianPosterior.condition` with a ``noise_std``), or online,
  one transition at a time, by the Sherman–Morrison identity on Σ
  (:meth:`~LinearGaussianPosterior.rank_one_updates`: a Kalman-filter step);
* σ_n chosen by maximising the evidence (type-II maximum likelihood; MacKay 1992; Bishop §3.5).
  Whitening by the prior, ``w = m₀ + L₀⁻ᵀv`` with ``Λ₀ = L₀L₀ᵀ`` and ``v ~ N(0, I)``, turns the
  residual labels into ``y − Φm₀ = Φ̃v + ε`` with ``Φ̃ = ΦL₀⁻ᵀ``; one eigen-decomposition
  ``Φ̃ᵀΦ̃ = Q diag(s) Qᵀ`` then makes the evidence O(P) per σ_n
  (:func:`~ruagent.reward_models.evidence.maximise_evidence`), and the posterior at σ̂_n is
  ``v | y ~ N(Q diag(1/(s + σ_n²)) Qᵀ Φ̃ᵀ(y − Φm₀), Q diag(σ_n²/(s + σ_n²)) Qᵀ)``.

Both give the same posterior for the same σ_n to rounding error; online updates equal a refit
on all labels so far to ~1e-9 (tests/reward_models/test_gaussian_posterior.py).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
from tqdm.auto import tqdm

from ruagent.reward_models.evidence import maximise_evidence

__all__ = ["LinearGaussianPosterior"]


class LinearGaussianPosterior:
    """A Gaussian prior over P weights, the label statistics so far and the posterior they give.

    :param prior_mean: m₀ (P,) float64.
    :param prior_precision: Λ₀ (P, P) float64, symmetric positive definite.

    :ivar gram, moment, yy, n_labels, max_abs_label: ΦᵀΦ (P, P), Φᵀy (P,), yᵀy, N and max |y|
        of the labels added since the last :meth:`clear`.
    :ivar mean, cov, precision: the posterior's μ (P,), Σ (P, P) and Λ = Σ⁻¹ (P, P), as of the
        last :meth:`clear`, :meth:`condition` or :meth:`rank_one_updates`.
    :ivar noise_std: σ̂_n of the last evidence maximisation (None before any).
    """

    def __init__(self, prior_mean: np.ndarray, prior_precision: np.ndarray) -> None:
        self.noise_std: float | None = None
        self.set_prior(prior_mean, prior_precision)
        self.clear()

    @property
    def dim(self) -> int:
        """P, the number of weights."""
        return len(self.prior_mean)

    def set_prior(self, mean: np.ndarray, precision: np.ndarray) -> None:
        """Replace the prior; the statistics stay, the posterior waits for :meth:`condition`."""
        mean, precision = np.asarray(mean, np.float64), np.asarray(precision, np.float64)
        p = len(mean)
        assert mean.shape == (p,) and precision.shape == (p, p), (mean.shape, precision.shape)
        self.prior_mean, self.prior_precision = mean.copy(), 0.5 * (precision + precision.T)

    def clear(self) -> None:
        """Forget the labels: zero statistics, posterior = prior."""
        p = self.dim
        self.gram, self.moment = np.zeros((p, p)), np.zeros(p)
        self.yy, self.n_labels, self.max_abs_label = 0.0, 0, 0.0
        self.precision = self.prior_precision.copy()
        self.cov = scipy.linalg.cho_solve(scipy.linalg.cho_factor(self.precision), np.eye(p))
        self.mean = self.prior_mean.copy()

    def add(self, phi: np.ndarray, y: np.ndarray) -> None:
        """Add labels y (N,) at basis rows Φ (N, P) to the statistics (not to the posterior)."""
        assert phi.ndim == 2 and phi.shape == (len(y), self.dim), (phi.shape, len(y), self.dim)
        self.gram = self.gram + phi.T @ phi
        self.moment = self.moment + phi.T @ y
        self.yy += float(y @ y)
        self.n_labels += len(y)
        if len(y):
            self.max_abs_label = max(self.max_abs_label, float(np.max(np.abs(y))))

    def condition(self, noise_std: float | None = None, noise_floor: float = 0.0) -> None:
        """The posterior from the prior and the statistics: at ``noise_std``, or (None) at the
        σ̂_n ≥ ``noise_floor`` maximising the evidence (with no labels: the prior, σ̂_n unchanged)."""
        if noise_std is not None:
            noise_var = noise_std**2
            self.precision = self.prior_precision + self.gram / noise_var
            factor = scipy.linalg.cho_factor(self.precision)
            self.mean = scipy.linalg.cho_solve(factor, self.prior_precision @ self.prior_mean + self.moment / noise_var)
            self.cov = scipy.linalg.cho_solve(factor, np.eye(self.dim))
            return
        if self.n_labels == 0:
            self.clear()
            return
        m0 = self.prior_mean
        chol0 = np.linalg.cholesky(self.prior_precision)
        unwhiten = scipy.linalg.solve_triangular(chol0, np.eye(self.dim), lower=True, trans="T")  # L₀⁻ᵀ
        gram_w = unwhiten.T @ self.gram @ unwhiten
        moment_w = unwhiten.T @ (self.moment - self.gram @ m0)
        yy_w = self.yy - 2 * float(m0 @ self.moment) + float(m0 @ self.gram @ m0)
        s, q = np.linalg.eigh(0.5 * (gram_w + gram_w.T))
        s = np.maximum(s, 0.0)
        b = q.T @ moment_w
        self.noise_std = maximise_evidence(s, b * b, max(yy_w, 0.0), self.n_labels, noise_floor)
        noise_var = self.noise_std**2
        shrink = 1.0 / (1.0 + s / noise_var)  # posterior variances of v along the eigenvectors
        directions = unwhiten @ q  # (P, P): w-space directions of v's eigenvectors
        self.mean = m0 + directions @ (shrink * b / noise_var)
        cov = (directions * shrink) @ directions.T
        self.cov = 0.5 * (cov + cov.T)
        precision = self.prior_precision + self.gram / noise_var
        self.precision = 0.5 * (precision + precision.T)

    def rank_one_updates(self, phi: np.ndarray, y: np.ndarray, noise_std: float, progress_bar: bool = False) -> None:
        """Condition the current posterior on labels y (N,) at Φ (N, P) with a fixed σ_n, one
        row at a time (Sherman–Morrison on Σ). The labels must already be in the statistics
        (:meth:`add`), so that a later :meth:`condition` agrees."""
        noise_var = noise_std**2
        cov, mean = self.cov.copy(), self.mean.copy()
        rows = tqdm(zip(phi, y), total=len(y), desc="update posterior", disable=not progress_bar, leave=False)
        for row, label in rows:
            gain_direction = cov @ row  # Σφ
            denominator = noise_var + row @ gain_direction
            mean += gain_direction * ((label - row @ mean) / denominator)
            cov -= np.outer(gain_direction, gain_direction / denominator)
        self.cov, self.mean = 0.5 * (cov + cov.T), mean
        self.precision = self.precision + phi.T @ phi / noise_var

    def draws(self, standard_normals: np.ndarray) -> np.ndarray:
        """Posterior draws ``w_k = μ + L⁻ᵀ z_k`` (K, P) from standard normals z (K, P), Λ = L Lᵀ."""
        cholesky = np.linalg.cholesky(self.precision)
        offsets = scipy.linalg.solve_triangular(cholesky, standard_normals.T, lower=True, trans="T")
        return self.mean[None, :] + offsets.T

    def moments(self, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean ``φᵀμ`` and std ``√(φᵀΣφ)`` (B,) of ``φᵀw`` at basis rows Φ (B, P)."""
        variance = np.einsum("bi,bi->b", phi @ self.cov, phi)
        return phi @ self.mean, np.sqrt(np.maximum(variance, 0.0))
