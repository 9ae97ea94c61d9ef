r"""Bayesian linear regression of rewards on features, with K fixed posterior draws.

Model: ``r = φ(x)ᵀw + ε``, prior ``w ~ N(0, σ_r² I)``, noise ``ε ~ N(0, σ_n²)``. For a design
matrix Φ (N, P) and labels y (N,) the posterior is Gaussian (Bishop, *Pattern Recognition
and Machine Learning*, 2006, eq. 3.53–3.54):

    Λ = I/σ_r² + ΦᵀΦ/σ_n²      (precision)      μ = Λ⁻¹ Φᵀy / σ_n²      (mean)

**The prior is in reward units.** σ_r (``prior_reward_scale``) is the prior standard
deviation of every weight, so a feature the labels never exercised (a one-hot that was always
0, IRD's lava) has reward std σ_r: how large rewards can plausibly be where nothing is
labelled. Declared by the user, or derived from the labels by
:func:`ruagent.reward_models.priors.resolve_prior_reward_scale` (``max |y|``, announced on
the ``ruagent`` logger; 1.0, Bradley–Terry units, for preference fits).

**The noise is learned by maximising the evidence** (type-II maximum likelihood, empirical
Bayes; MacKay 1992; Bishop §3.5) unless ``noise_std`` is given. With σ_r fixed, the marginal
likelihood ``y ~ N(0, σ_r² ΦΦᵀ + σ_n² I)`` (Bishop eq. 3.86) is maximised over the single
number σ_n, and the posterior above is taken at σ̂_n. The textbook conjugate alternative, the
Normal–inverse-Gamma prior ``w | σ² ~ N(0, σ² V₀)``, is deliberately *not* used: it scales the
weight prior by the noise variance, so with exact labels (LavaWorld's) σ² → 0 and a
never-labelled weight's spread collapses with it — the opposite of what the posterior is for.
Here the weight prior N(0, σ_r² I) does not depend on the noise, and the unlabelled directions
keep spread σ_r whatever σ̂_n is. Maximum likelihood rather than a MAP under an inverse-Gamma
prior on σ_n²: the evidence is sharply peaked in σ_n once N − γ (γ the effective number of
fitted weights, Bishop eq. 3.91) is more than a handful, an inverse-Gamma prior would bring a
second scale to declare, and the one place it would help — a few noiseless labels, where the
maximum sits at σ_n → 0 — is handled by the floor below. The plug-in σ̂_n ignores its own
uncertainty (a Gaussian rather than a Student-t predictive), which narrows labelled directions
by a factor of about √(1 + 1/(N − γ)); unlabelled directions are not affected.

The posterior algebra — sufficient statistics, the evidence maximisation, exact online
updates — is :class:`~ruagent.reward_models.gaussian_posterior.LinearGaussianPosterior`. The
floor on σ̂_n, ``max(1e-3·max|y|, 1e-4·σ_r)``, keeps the precision well-conditioned when the
labels are exact (the evidence then peaks at σ_n → 0): labels are trusted to 0.1 % of the
largest reward. :meth:`BayesianLinearRewardModel.update` equals a refit on all labels so far
to ~1e-9. Members are K draws ``w_k = μ + L⁻ᵀ z_k`` with ``Λ = L Lᵀ`` and standard normals
``z_k`` fixed until :meth:`~BayesianLinearRewardModel.resample`, so member k changes smoothly
as evidence arrives. The posterior mean and std of the reward, ``φᵀμ`` and ``√(φᵀΣφ)``, are
analytic (:meth:`~ruagent.reward_models.base.RewardModel.predict_moments`).

φ is the model's input features (featuriser, env ``reward_features`` as in IRD, or a
callable), optionally mapped by random Fourier features (Rahimi & Recht, NIPS 2007) after
standardising by the first label data, plus a constant bias column.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import ruagent.reward_models.priors as priors
from ruagent.data import labelled_arrays
from ruagent.features import RandomFourierFeatures, RewardInputs
from ruagent.reward_models.feature_model import FeatureRewardModel
from ruagent.reward_models.gaussian_posterior import LinearGaussianPosterior

__all__ = ["BayesianLinearRewardModel"]

#: learned σ_n is at least this times the largest label magnitude ...
NOISE_FLOOR_LABEL = 1e-3
#: ... and at least this times σ_r (for all-zero labels, and a well-conditioned precision).
NOISE_FLOOR_PRIOR = 1e-4
class BayesianLinearRewardModel(FeatureRewardModel):
    """Gaussian posterior over linear reward weights; K posterior draws as members.

    :param observation_space: the env's observation space.
    :param action_space: the env's action space.
    :param n_members: K, the number of weight draws.
    :param prior_reward_scale: σ_r, the prior std of every weight, in reward units: a feature
        the labels never exercised has reward std σ_r. None: derived at each :meth:`fit` on
        reward labels as ``max |y|`` (tracking the largest label so far through
        :meth:`update`), or 1.0 for preference fits, announced on the ``ruagent`` logger.
        Until then the prior uses 1.0 and :attr:`prior_std` is None.
    :param noise_std: σ_n, the std of the label noise. None (default): estimated by
        maximising the evidence at every fit and update (see the module docstring); a float
        keeps it fixed (the conjugate model with known noise).
    :param features: ``"transition"``, ``"env"`` (the env's ``reward_features``) or a callable
        ``(obs, action, next_obs) -> (B, D)``.
    :param random_fourier_features: M, map inputs through M random Fourier features; None
        regresses on the inputs themselves.
    :param rff_lengthscale: ℓ of the RBF kernel the Fourier features approximate, in units
        of standardised inputs.
    :param bias: append a constant 1 to the basis (an intercept weight).
    :param normalise_inputs: standardise inputs by the first label data (frozen after;
        columns constant in the labels get :data:`~ruagent.reward_models.priors.CONSTANT_INPUT_SCALE`);
        default: only with random Fourier features, where the lengthscale needs it.
    :param seed: seeds the Fourier frequencies and the draws.
    """

    family = "linear"

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        n_members: int = 10,
        prior_reward_scale: float | None = None,
        noise_std: float | None = None,
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
        for name, value in (("prior_reward_scale", prior_reward_scale), ("noise_std", noise_std)):
            if value is not None and not (np.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0 or None, got {value}")
        #: σ_r as declared (None: derived from the labels).
        self.prior_reward_scale = None if prior_reward_scale is None else float(prior_reward_scale)
        self._resolved_scale = self.prior_reward_scale
        #: whether σ_n is estimated from the labels (``noise_std=None``).
        self.learn_noise = noise_std is None
        self._declared_noise_std = None if noise_std is None else float(noise_std)
        self.n_fourier = None if random_fourier_features is None else int(random_fourier_features)
        self.rff_lengthscale = float(rff_lengthscale)
        self.bias = bool(bias)
        self.normalise_inputs = self.n_fourier is not None if normalise_inputs is None else bool(normalise_inputs)
        self.seed = seed
        self._rff_seed, self._draw_seed = np.random.SeedSequence(seed).spawn(2)
        self.input_loc: np.ndarray | None = None
        self.input_scale: np.ndarray | None = None
        #: whether the prior is the base N(0, σ_r² I) (not a Gaussian from :meth:`set_posterior`)
        self._default_prior = True
        self._posterior: LinearGaussianPosterior | None = None  # built with the basis (_build)
        self._weights32: np.ndarray | None = None
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

    def _scale(self) -> float:
        """σ_r in use: resolved, or the provisional 1.0 before anything resolved it."""
        return priors.DEFAULT_PREFERENCE_REWARD_SCALE if self._resolved_scale is None else self._resolved_scale

    def _default_prior_moments(self) -> tuple[np.ndarray, np.ndarray]:
        """The base prior N(0, σ_r² I): its mean (P,) and precision (P, P)."""
        return np.zeros(self.basis_dim), np.eye(self.basis_dim) / self._scale() ** 2

    def _reset_to_prior(self) -> None:
        """Base prior, no labels, no noise estimate."""
        self._posterior = LinearGaussianPosterior(*self._default_prior_moments())
        self._default_prior = True
        self._weights32 = None

    def _condition(self) -> None:
        """The posterior from the prior and the statistics (σ_n re-estimated if learned)."""
        self._posterior.condition(self._declared_noise_std, self.noise_floor())
        self._weights32 = None

    # ------------------------------------------------------------------ hyperparameters
    @property
    def prior_std(self) -> float | None:
        """σ_r in force: the declared ``prior_reward_scale`` or the one derived at the last fit;
        None while neither exists (the prior then uses 1.0)."""
        return self._resolved_scale

    @property
    def noise_std(self) -> float:
        """σ_n: the declared value, or the current evidence estimate σ̂_n; with learned noise
        and no reward labels yet, 1.0 (the Bradley–Terry unit, the scale preference fits assume)."""
        if not self.learn_noise:
            return self._declared_noise_std
        estimate = None if self._posterior is None else self._posterior.noise_std
        return priors.DEFAULT_PREFERENCE_REWARD_SCALE if estimate is None else estimate

    @property
    def n_labels(self) -> int:
        """Reward labels in the sufficient statistics (since the last fit or :meth:`set_posterior`)."""
        return 0 if self._posterior is None else self._posterior.n_labels

    def noise_floor(self) -> float:
        """The least σ_n the evidence may choose: ``max(1e-3·max|y|, 1e-4·σ_r)``."""
        largest = 0.0 if self._posterior is None else self._posterior.max_abs_label
        return max(NOISE_FLOOR_LABEL * largest, NOISE_FLOOR_PRIOR * self._scale())

    def resolve_prior_reward_scale(self, rewards: np.ndarray | None = None) -> float:
        """σ_r: declared, already derived, or derived now from ``rewards`` (None: preference
        data, 1.0), with the one-line notice of :func:`~ruagent.reward_models.priors.resolve_prior_reward_scale`.

        Preference fitters call this before using the model's posterior as their prior; a
        model still at its prior is rebuilt with the σ_r found.
        """
        if self._resolved_scale is None:
            self._resolved_scale = priors.resolve_prior_reward_scale(None, rewards, type(self).__name__)
            if self.in_dim is not None and self._default_prior:
                self._posterior.set_prior(*self._default_prior_moments())
                self._condition()
        return self._resolved_scale

    # ------------------------------------------------------------------ posterior
    @property
    def posterior_mean(self) -> np.ndarray:
        """μ (P,), float64."""
        return self._posterior.mean.copy()

    @property
    def posterior_cov(self) -> np.ndarray:
        """Σ = Λ⁻¹ (P, P), float64."""
        return self._posterior.cov.copy()

    @property
    def posterior_precision(self) -> np.ndarray:
        """Λ (P, P), float64."""
        return self._posterior.precision.copy()

    @property
    def weights(self) -> np.ndarray:
        """The K member weight draws (K, P), float64: ``w_k = μ + L⁻ᵀ z_k`` with Λ = L Lᵀ."""
        return self._posterior.draws(self._standard_normals)

    def set_posterior(self, mean: np.ndarray, precision: np.ndarray) -> None:
        """Replace the posterior by N(mean, precision⁻¹), e.g. a Laplace approximation for a
        preference (Bradley–Terry) likelihood. Draws keep their standard normals.

        The reward-label statistics are cleared and this Gaussian becomes the prior of later
        labels: :meth:`update` conditions it on new reward labels (with a learned σ_n, estimated
        from the labels after this call only), while :meth:`fit` starts over from N(0, σ_r² I).
        """
        if self.in_dim is None:
            raise RuntimeError(
                "the model has not seen any features yet, so its basis width is unknown; call features() or fit() first"
            )
        mean, precision = np.asarray(mean, np.float64), np.asarray(precision, np.float64)
        p = self.basis_dim
        if mean.shape != (p,) or precision.shape != (p, p):
            raise ValueError(f"need mean ({p},) and precision ({p}, {p}); got {mean.shape}, {precision.shape}")
        self._posterior.set_prior(mean, precision)
        self._posterior.clear()
        self._default_prior = False
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

        Columns constant in the labels get scale :data:`~ruagent.reward_models.priors.CONSTANT_INPUT_SCALE`
        (:func:`~ruagent.reward_models.priors.input_normalisation`), so they stay visible.
        Changes the basis, so call it before fitting (``fit`` and the first ``update`` do).
        """
        if self.normalise_inputs:
            self.input_loc, self.input_scale = priors.input_normalisation(features)
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
        """Posterior from the prior N(0, σ_r² I) and these labels (forgets earlier data).

        With ``prior_reward_scale=None`` σ_r is derived from these labels (``max |y|``); with
        ``noise_std=None`` σ_n is estimated by maximising the evidence.

        :param data: :class:`ruagent.data.Transitions` or ``(obs, action, next_obs, reward)``.
        :param env: binds ``features="env"`` (and checks spaces) first.
        :param progress_bar: accepted for the same call as the ensemble's ``fit``; one
            Cholesky solve needs no bar.
        :return: the model (fitted in place).
        """
        del progress_bar
        labelled_arrays(data)  # refuse empty or non-finite labels before any state changes
        if self.in_dim is not None:
            self.input_loc = self.input_scale = None
        phi, y, features = self._labelled_basis(data, env, first=True)
        if self.prior_reward_scale is None and len(y):
            self._resolved_scale = priors.resolve_prior_reward_scale(None, y, type(self).__name__)
        self._reset_to_prior()
        self._posterior.add(phi, y)
        self._condition()
        self.set_reward_statistics(features)
        return self

    def update(self, data: Any, env: gym.Env | None = None, progress_bar: bool = False) -> BayesianLinearRewardModel:
        """Add labels to the posterior; equivalent to refitting on all labels seen so far.

        With a fixed σ_n: rank-one (Sherman–Morrison) updates, one transition each. With a
        learned σ_n: σ_n is re-estimated from the updated statistics and the posterior
        recomputed. A derived σ_r follows the largest label so far (the posterior is then
        recomputed too). After :meth:`set_posterior` the Gaussian set there is the prior of
        these labels. Input standardisation (for Fourier features) stays frozen at the first
        data. ``reward_loc``/``reward_scale`` are set on the first data only; call
        :meth:`set_reward_statistics` to refresh them.
        """
        first = self.input_loc is None and self.reward_loc is None
        phi, y, features = self._labelled_basis(data, env, first=first)
        self._posterior.add(phi, y)
        prior_changed = False
        if self.prior_reward_scale is None and self._default_prior and self.n_labels:
            largest = np.array([self._posterior.max_abs_label])
            if priors.default_prior_reward_scale(largest) != self._resolved_scale:
                self._resolved_scale = priors.resolve_prior_reward_scale(None, largest, type(self).__name__)
                self._posterior.set_prior(*self._default_prior_moments())
                prior_changed = True
        if self.learn_noise or prior_changed:
            self._condition()
        else:
            self._posterior.rank_one_updates(phi, y, self._declared_noise_std, progress_bar)
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

    def _feature_moments(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean ``φᵀμ`` and std ``√(φᵀΣφ)`` (B,) float64 of the reward function (without
        label noise) at raw features (B, D)."""
        return self._posterior.moments(self.basis(features))

    # ------------------------------------------------------------------ persistence
    def _get_state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        config = {
            "n_members": self.n_members,
            "prior_reward_scale": self.prior_reward_scale,
            "prior_reward_scale_resolved": self._resolved_scale,
            "noise_std": self._declared_noise_std,
            "noise_std_estimate": None if self._posterior is None else self._posterior.noise_std,
            "default_prior": self._default_prior,
            "n_labels": self.n_labels,
            "label_sum_of_squares": 0.0 if self._posterior is None else self._posterior.yy,
            "max_abs_label": 0.0 if self._posterior is None else self._posterior.max_abs_label,
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
            posterior = self._posterior
            arrays = {
                "precision": posterior.precision,
                # Λμ: not needed to load, kept so that files stay readable by ruagent before 2026-11-29
                "precision_mean": posterior.precision @ posterior.mean,
                "cov": posterior.cov,
                "mean": posterior.mean,
                "standard_normals": self._standard_normals,
                "prior_mean": posterior.prior_mean,
                "prior_precision": posterior.prior_precision,
                "gram": posterior.gram,
                "moment": posterior.moment,
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
        legacy = "prior_std" in config  # files from before prior_reward_scale and learned noise
        declared_scale = config["prior_std"] if legacy else config["prior_reward_scale"]
        inputs = RewardInputs.from_record(observation_space, action_space, config["features"])
        model = cls(
            observation_space,
            action_space,
            n_members=config["n_members"],
            prior_reward_scale=declared_scale,
            noise_std=config["noise_std"],
            features="env",  # built below from the saved arrays
            random_fourier_features=config["random_fourier_features"],
            rff_lengthscale=config["rff_lengthscale"],
            bias=config["bias"],
            normalise_inputs=config["normalise_inputs"],
            seed=config["seed"],
        )
        model._inputs = inputs
        if not legacy:
            model._resolved_scale = config["prior_reward_scale_resolved"]
        if config["in_dim"] is not None:
            arrays = {name: t.numpy().astype(np.float64) for name, t in tensors.items()}
            model._build(int(config["in_dim"]))
            if model.rff is not None:
                model.rff = RandomFourierFeatures.from_arrays(
                    arrays["rff_frequencies"], arrays["rff_phases"], model.rff_lengthscale
                )
            p = model.basis_dim
            expected = {"precision": (p, p), "cov": (p, p), "mean": (p,)}
            if not legacy:
                expected.update(prior_mean=(p,), prior_precision=(p, p), gram=(p, p), moment=(p,))
            for name, shape in {**expected, "standard_normals": (model.n_members, p)}.items():
                if name not in arrays:
                    raise ValueError(f"array {name} is missing")
                if arrays[name].shape != shape:
                    raise ValueError(f"array {name} has shape {arrays[name].shape}, expected {shape}")
            model._standard_normals = arrays["standard_normals"]
            model.input_loc, model.input_scale = arrays.get("input_loc"), arrays.get("input_scale")
            # legacy files saved no statistics: the saved posterior is the prior of later labels
            prior = ("mean", "precision") if legacy else ("prior_mean", "prior_precision")
            posterior = LinearGaussianPosterior(*(arrays[name] for name in prior))
            posterior.precision, posterior.cov, posterior.mean = arrays["precision"], arrays["cov"], arrays["mean"]
            model._default_prior = False
            if not legacy:
                posterior.gram, posterior.moment = arrays["gram"], arrays["moment"]
                posterior.n_labels = int(config["n_labels"])
                posterior.yy = float(config["label_sum_of_squares"])
                posterior.max_abs_label = float(config["max_abs_label"])
                posterior.noise_std = config["noise_std_estimate"]
                model._default_prior = bool(config["default_prior"])
            model._posterior = posterior
        return model

    def __repr__(self) -> str:
        noise = f"learned {self.noise_std:.4g}" if self.learn_noise else f"{self.noise_std}"
        return (
            f"BayesianLinearRewardModel(K={self.n_members}, prior_reward_scale={self.prior_std}, noise_std={noise}, "
            f"features={self.features_mode!r}, random_fourier_features={self.n_fourier}, in_dim={self.in_dim})"
        )
