"""Conjugate Bayesian linear regression of rewards on features, with K fixed posterior draws.

Model: ``r = φ(x)ᵀw + ε``, prior ``w ~ N(0, σ_p² I)``, noise ``ε ~ N(0, σ_n²)``. For a design
matrix Φ (N, P) and labels y (N,) the posterior is Gaussian (Bishop, *Pattern Recognition
and Machine Learning*, 2006, eq. 3.53–3.54):

    Λ = I/σ_p² + ΦᵀΦ/σ_n²      (precision)      μ = Λ⁻¹ Φᵀy / σ_n²      (mean)

:meth:`BayesianLinearRewardModel.update` adds transitions one at a time by the
Sherman–Morrison identity on Σ = Λ⁻¹ (a Kalman-filter step), in float64, and equals a full
refit to ~1e-9. Members are K draws ``w_k = μ + L⁻ᵀ z_k`` with ``Λ = L Lᵀ`` and standard
normals ``z_k`` fixed until :meth:`~BayesianLinearRewardModel.resample`, so member k changes
smoothly as evidence arrives. Drawing through the Cholesky factor of the precision (which
only ever grows by PSD terms) avoids factorising an ill-conditioned covariance.

φ is the model's input features (featuriser, env ``reward_features`` as in IRD, or a
callable), optionally mapped by random Fourier features (Rahimi & Recht, NIPS 2007) after
standardising by the first label data, plus a constant bias column.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import scipy.linalg
import torch
from tqdm.auto import tqdm

from ruagent.data import labelled_arrays
from ruagent.features import RandomFourierFeatures, RewardInputs
from ruagent.reward_models.feature_model import FeatureRewardModel

__all__ = ["BayesianLinearRewardModel"]


class BayesianLinearRewardModel(FeatureRewardModel):
    """Gaussian posterior over linear reward weights; K posterior draws as members.

    :param observation_space: the env's observation space.
    :param action_space: the env's action space.
    :param n_members: K, the number of weight draws.
    :param prior_std: σ_p, prior standard deviation of every weight.
    :param noise_std: σ_n, standard deviation of the label noise.
    :param features: ``"transition"``, ``"env"`` (the env's ``reward_features``) or a callable
        ``(obs, action, next_obs) -> (B, D)``.
    :param random_fourier_features: M, map inputs through M random Fourier features; None
        regresses on the inputs themselves.
    :param rff_lengthscale: ℓ of the RBF kernel the Fourier features approximate, in units
        of standardised inputs.
    :param bias: append a constant 1 to the basis (an intercept weight).
    :param normalise_inputs: standardise inputs by the first label data (frozen after);
        default: only with random Fourier features, where the lengthscale needs it.
    :param seed: seeds the Fourier frequencies and the draws.
    """

    family = "linear"

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        n_members: int = 10,
        prior_std: float = 1.0,
        noise_std: float = 0.1,
        features: str | Callable = "transition",
        random_fourier_features: int | None = None,
        rff_lengthscale: float = 1.0,
        bias: bool = True,
        normalise_inputs: bool | None = None,
        seed: int | None = None,
        member_probs: np.ndarray | None = None,
        check_finite: bool = True,
    ) -> None:
        super().__init__(observation_space, action_space, n_members, features, member_probs, check_finite)
        if prior_std <= 0 or noise_std <= 0:
            raise ValueError(f"prior_std and noise_std must be > 0, got {prior_std}, {noise_std}")
        self.prior_std = float(prior_std)
        self.noise_std = float(noise_std)
        self.n_fourier = None if random_fourier_features is None else int(random_fourier_features)
        self.rff_lengthscale = float(rff_lengthscale)
        self.bias = bool(bias)
        self.normalise_inputs = self.n_fourier is not None if normalise_inputs is None else bool(normalise_inputs)
        self.seed = seed
        self._rff_seed, self._draw_seed = np.random.SeedSequence(seed).spawn(2)
        self.input_loc: np.ndarray | None = None
        self.input_scale: np.ndarray | None = None
        self._build_if_width_known()

    # ------------------------------------------------------------------ construction
    def _build(self, in_dim: int) -> None:
        self.in_dim = in_dim
        self.rff = (
            RandomFourierFeatures(in_dim, self.n_fourier, self.rff_lengthscale, seed=self._rff_seed)
            if self.n_fourier is not None
            else None
        )
        #: P, the basis width (inputs or Fourier features, plus the bias column).
        self.basis_dim = (self.n_fourier or in_dim) + int(self.bias)
        self._reset_to_prior()
        draws = np.random.default_rng(self._draw_seed)
        self._standard_normals = draws.standard_normal((self.n_members, self.basis_dim))

    def _reset_to_prior(self) -> None:
        p = self.basis_dim
        self._precision = np.eye(p) / self.prior_std**2
        self._precision_mean = np.zeros(p)  # Φᵀy / σ_n², so that Λ μ = this
        self._cov = np.eye(p) * self.prior_std**2
        self._mean = np.zeros(p)
        self._weights32: np.ndarray | None = None

    # ------------------------------------------------------------------ posterior
    @property
    def posterior_mean(self) -> np.ndarray:
        """μ (P,), float64."""
        return self._mean.copy()

    @property
    def posterior_cov(self) -> np.ndarray:
        """Σ = Λ⁻¹ (P, P), float64."""
        return self._cov.copy()

    @property
    def posterior_precision(self) -> np.ndarray:
        """Λ (P, P), float64."""
        return self._precision.copy()

    @property
    def weights(self) -> np.ndarray:
        """The K member weight draws (K, P), float64: ``w_k = μ + L⁻ᵀ z_k`` with Λ = L Lᵀ."""
        cholesky = np.linalg.cholesky(self._precision)
        offsets = scipy.linalg.solve_triangular(cholesky, self._standard_normals.T, lower=True, trans="T")
        return self._mean[None, :] + offsets.T

    def set_posterior(self, mean: np.ndarray, precision: np.ndarray) -> None:
        """Replace the posterior by N(mean, precision⁻¹), e.g. a Laplace approximation for a
        preference (Bradley–Terry) likelihood. Draws keep their standard normals."""
        if self.in_dim is None:
            raise RuntimeError(
                "the model has not seen any features yet, so its basis width is unknown; call features() or fit() first"
            )
        mean, precision = np.asarray(mean, np.float64), np.asarray(precision, np.float64)
        p = self.basis_dim
        if mean.shape != (p,) or precision.shape != (p, p):
            raise ValueError(f"need mean ({p},) and precision ({p}, {p}); got {mean.shape}, {precision.shape}")
        precision = 0.5 * (precision + precision.T)
        self._precision, self._mean = precision, mean
        self._precision_mean = precision @ mean
        self._cov = scipy.linalg.cho_solve(scipy.linalg.cho_factor(precision), np.eye(p))
        self._weights32 = None

    def resample(self, seed: int | None = None) -> None:
        """Draw K new members (fresh standard normals) from the current posterior."""
        self._standard_normals = np.random.default_rng(seed).standard_normal((self.n_members, self.basis_dim))
        self._weights32 = None

    def basis(self, features: np.ndarray, dtype: type = np.float64) -> np.ndarray:
        """φ: raw features (B, D) -> basis (B, P) (standardised, Fourier-mapped, bias column)."""
        assert features.ndim == 2 and features.shape[1] == self.in_dim, (features.shape, self.in_dim)
        x = features.astype(dtype, copy=False)
        if self.normalise_inputs and self.input_loc is not None:
            x = (x - self.input_loc.astype(dtype)) / self.input_scale.astype(dtype)
        if self.rff is not None:
            x = self.rff(x)
        if self.bias:
            x = np.concatenate([x, np.ones((x.shape[0], 1), dtype=dtype)], axis=1)
        assert x.shape == (features.shape[0], self.basis_dim), (x.shape, self.basis_dim)
        return x

    def set_input_normalisation(self, features: np.ndarray) -> None:
        """Standardise inputs by these label features (N, D) from now on (no-op unless ``normalise_inputs``).

        Changes the basis, so call it before fitting (``fit`` and the first ``update`` do).
        """
        if self.normalise_inputs:
            std = features.std(axis=0, dtype=np.float64)
            self.input_loc = features.mean(axis=0, dtype=np.float64)
            self.input_scale = np.where(std > 1e-6, std, 1.0)
            self._weights32 = None

    # the name ruagent.preferences.fit used before the method was public
    _set_input_normalisation = set_input_normalisation

    # ------------------------------------------------------------------ fitting
    def _labelled_basis(self, data: Any, env: gym.Env | None, first: bool) -> tuple[np.ndarray, np.ndarray, Any]:
        if env is not None:
            self.bind(env)
        obs, action, next_obs, rewards = labelled_arrays(data)
        features = self.features(obs, action, next_obs)
        if first:
            self.set_input_normalisation(features)
        return self.basis(features), np.asarray(rewards, dtype=np.float64), features

    def fit(self, data: Any, env: gym.Env | None = None, progress_bar: bool = False) -> BayesianLinearRewardModel:
        """Closed-form posterior from the prior and these labels (forgets earlier data).

        :param data: :class:`ruagent.data.Transitions` or ``(obs, action, next_obs, reward)``.
        :param env: binds ``features="env"`` (and checks spaces) first.
        :param progress_bar: accepted for the same call as the ensemble's ``fit``; one
            Cholesky solve needs no bar.
        :return: the model (fitted in place).
        """
        del progress_bar
        if self.in_dim is not None:
            self.input_loc = self.input_scale = None
        phi, y, features = self._labelled_basis(data, env, first=True)
        self._reset_to_prior()
        noise_var = self.noise_std**2
        self._precision = self._precision + phi.T @ phi / noise_var
        self._precision_mean = phi.T @ y / noise_var
        factor = scipy.linalg.cho_factor(self._precision)
        self._mean = scipy.linalg.cho_solve(factor, self._precision_mean)
        self._cov = scipy.linalg.cho_solve(factor, np.eye(self.basis_dim))
        self.set_reward_statistics(features)
        return self

    def update(self, data: Any, env: gym.Env | None = None, progress_bar: bool = False) -> BayesianLinearRewardModel:
        """Add labels to the posterior by rank-one (Sherman–Morrison) updates, one transition each.

        Equivalent to refitting on all labels seen so far. Input standardisation (for
        Fourier features) stays frozen at the first data. ``reward_loc``/``reward_scale`` are
        set on the first data only; call :meth:`set_reward_statistics` to refresh them.
        """
        first = self.input_loc is None and self.reward_loc is None
        phi, y, features = self._labelled_basis(data, env, first=first)
        noise_var = self.noise_std**2
        cov, mean = self._cov, self._mean.copy()
        rows = tqdm(zip(phi, y), total=len(y), desc="update posterior", disable=not progress_bar, leave=False)
        for row, label in rows:
            gain_direction = cov @ row  # Σφ
            denominator = noise_var + row @ gain_direction
            mean += gain_direction * ((label - row @ mean) / denominator)
            cov -= np.outer(gain_direction, gain_direction / denominator)
        self._cov = 0.5 * (cov + cov.T)
        self._mean = mean
        self._precision = self._precision + phi.T @ phi / noise_var
        self._precision_mean = self._precision_mean + phi.T @ y / noise_var
        self._weights32 = None
        if self.reward_loc is None:
            self.set_reward_statistics(features)
        return self

    # ------------------------------------------------------------------ prediction
    def _predict_features(self, features: np.ndarray) -> np.ndarray:
        """(B, D) raw features -> (K, B) float32: ``φ W_kᵀ`` for the K draws."""
        if self._weights32 is None:
            self._weights32 = np.ascontiguousarray(self.weights.T.astype(np.float32))  # (P, K)
        return (self.basis(features, np.float32) @ self._weights32).T

    # ------------------------------------------------------------------ persistence
    def _get_state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        config = {
            "n_members": self.n_members,
            "prior_std": self.prior_std,
            "noise_std": self.noise_std,
            "random_fourier_features": self.n_fourier,
            "rff_lengthscale": self.rff_lengthscale,
            "bias": self.bias,
            "normalise_inputs": self.normalise_inputs,
            "seed": self.seed,
            "features": self._inputs.describe(),
            "in_dim": self.in_dim,
        }
        tensors: dict[str, torch.Tensor] = {}
        if self.in_dim is not None:
            arrays = {
                "precision": self._precision,
                "precision_mean": self._precision_mean,
                "cov": self._cov,
                "mean": self._mean,
                "standard_normals": self._standard_normals,
            }
            if self.rff is not None:
                arrays.update(rff_frequencies=self.rff.frequencies, rff_phases=self.rff.phases)
            if self.input_loc is not None:
                arrays.update(input_loc=self.input_loc, input_scale=self.input_scale)
            tensors = {name: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64)) for name, a in arrays.items()}
        return config, tensors

    @classmethod
    def _from_state(
        cls,
        observation_space: gym.Space,
        action_space: gym.Space,
        config: dict[str, Any],
        tensors: dict[str, torch.Tensor],
    ) -> BayesianLinearRewardModel:
        inputs = RewardInputs.from_record(observation_space, action_space, config["features"])
        model = cls(
            observation_space,
            action_space,
            n_members=config["n_members"],
            prior_std=config["prior_std"],
            noise_std=config["noise_std"],
            features="env",  # built below from the saved arrays
            random_fourier_features=config["random_fourier_features"],
            rff_lengthscale=config["rff_lengthscale"],
            bias=config["bias"],
            normalise_inputs=config["normalise_inputs"],
            seed=config["seed"],
        )
        model._inputs = inputs
        if config["in_dim"] is not None:
            arrays = {name: t.numpy().astype(np.float64) for name, t in tensors.items()}
            model._build(int(config["in_dim"]))
            if model.rff is not None:
                model.rff = RandomFourierFeatures.from_arrays(
                    arrays["rff_frequencies"], arrays["rff_phases"], model.rff_lengthscale
                )
            p = model.basis_dim
            expected = {"precision": (p, p), "precision_mean": (p,), "cov": (p, p), "mean": (p,)}
            for name, shape in {**expected, "standard_normals": (model.n_members, p)}.items():
                if arrays[name].shape != shape:
                    raise ValueError(f"array {name} has shape {arrays[name].shape}, expected {shape}")
            model._precision, model._precision_mean = arrays["precision"], arrays["precision_mean"]
            model._cov, model._mean = arrays["cov"], arrays["mean"]
            model._standard_normals = arrays["standard_normals"]
            model.input_loc, model.input_scale = arrays.get("input_loc"), arrays.get("input_scale")
        return model

    def __repr__(self) -> str:
        return (
            f"BayesianLinearRewardModel(K={self.n_members}, prior_std={self.prior_std}, noise_std={self.noise_std}, "
            f"features={self.features_mode!r}, random_fourier_features={self.n_fourier}, in_dim={self.in_dim})"
        )
