"""Fit a reward posterior to preference labels: the batched ensemble and the Laplace linear model.

* :class:`EnsemblePreferenceFitter` trains all K members of an
  :class:`~ruagent.reward_models.ensemble.EnsembleRewardModel` at once on the Bradley–Terry
  loss (the ensemble's :func:`~ruagent.reward_models.training.train_members` loop, with
  per-member early stopping). Per fit, the fixed part of every return (the prior nets, Osband
  et al. 2018) is computed once. Per step, all members share one minibatch of b pairs and
  weight it by their bootstrap counts (``shared_batches``), so the b·2·T transitions go
  through ONE forward of the stacked trainable nets; the linear output layer is applied to
  the masked sums of the last hidden layer, giving returns (K, b, 2), and one backward pass
  (hand-written: :mod:`ruagent.reward_models.segment_returns`, with activation buffers
  reused by every step of the fit) trains every member.
* :class:`LinearPreferenceFitter` keeps a :class:`~ruagent.preferences.laplace.LaplacePosterior`
  over the weights of a :class:`~ruagent.reward_models.linear.BayesianLinearRewardModel` on the
  differences of segment feature sums, and writes its mean and covariance into the model
  (which then draws its K members from it).

Both fit on every label so far (``fit(pairs, labels)``); both report the loss and the share
of labels the posterior mean agrees with. The ensemble retrains on all of them; the Laplace
posterior adds only the labels after its first ``n_absorbed`` (those already in the model's
posterior when the fitter was made must be declared there, or they would count twice).
"""

from __future__ import annotations

import abc
from typing import Any

import numpy as np
import torch

from ruagent.preferences.bradley_terry import bradley_terry_loss, nll_derivatives
from ruagent.preferences.laplace import LaplacePosterior
from ruagent.preferences.segments import SegmentPairs, Segments, _SegmentArrays
from ruagent.reward_models.segment_returns import Workspace
from ruagent.reward_models.stacked import in_chunks
from ruagent.reward_models.training import train_members

__all__ = ["EnsemblePreferenceFitter", "LinearPreferenceFitter", "PreferenceFitter", "make_fitter"]


def _valid(labels: np.ndarray) -> np.ndarray:
    return np.isfinite(np.asarray(labels, dtype=np.float64))


def _agreement(delta: np.ndarray, labels: np.ndarray) -> float:
    """Share of decisive labels (0 or 1) whose sign the return difference ``delta`` (B,) matches."""
    decisive = labels != 0.5
    if not decisive.any():
        return float("nan")
    return float(np.mean((delta[decisive] > 0) == (labels[decisive] > 0.5)))


class PreferenceFitter(abc.ABC):
    """Fits ``reward_model`` to labelled pairs under the Bradley–Terry likelihood.

    :param reward_model: the posterior to fit (updated in place).
    :param label_noise: ε, the assumed probability of a uniformly random label.
    :param temperature: τ, the assumed Boltzmann temperature of the labeller.
    """

    def __init__(self, reward_model: Any, label_noise: float = 0.0, temperature: float = 1.0) -> None:
        self.reward_model = reward_model
        self.label_noise = float(label_noise)
        self.temperature = float(temperature)

    @abc.abstractmethod
    def fit(self, pairs: SegmentPairs, labels: np.ndarray, progress_bar: bool = False) -> dict[str, float]:
        """Fit on all labelled pairs (B, 2, T, ...) with labels (B,) (NaN rows skipped); return metrics."""

    def delta_moments(self, segments: Segments, index: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Gaussian mean and variance of Δ for candidate pairs, where the posterior is Gaussian; else None."""
        return None


class EnsemblePreferenceFitter(PreferenceFitter):
    """Bradley–Terry training of all ensemble members in one batched computation.

    Uses the ensemble's own training loop (:func:`ruagent.reward_models.training.train_members`:
    bootstrap per member as integer weights on shared minibatches, held-out early stopping per
    member) with a Bradley–Terry member loss.

    :param epochs: maximum passes over the labelled pairs per :meth:`fit`.
    :param batch_size: pairs per member per gradient step.
    :param lr: Adam learning rate.
    :param val_fraction: share of pairs held out for early stopping (none below 10 labels).
    :param patience: epochs without improvement of any member before stopping.
    :param seed: seeds the bootstrap resamples, held-out split and minibatch order.
    """

    def __init__(
        self,
        reward_model: Any,
        label_noise: float = 0.0,
        temperature: float = 1.0,
        epochs: int = 100,
        batch_size: int = 64,
        lr: float = 3e-3,
        val_fraction: float = 0.1,
        patience: int = 15,
        seed: int | None = None,
    ) -> None:
        super().__init__(reward_model, label_noise, temperature)
        for name in ("member_rewards_torch", "parameters", "features_torch", "set_normalisation"):
            if not hasattr(reward_model, name):
                raise TypeError(
                    f"EnsemblePreferenceFitter needs an EnsembleRewardModel (no {name}); got {reward_model!r}"
                )
        self.epochs = int(epochs)
        self.batch_size = int(batch_size)
        self.lr = float(lr)
        self.val_fraction = float(val_fraction)
        self.patience = int(patience)
        self.generator = torch.Generator()
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(int(seed))
        self._normalised = False

    def member_returns_torch(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Differentiable member returns of pairs.

        :param features: (B·2·T, D) shared by all members, or (K, B·2·T, D) one batch per member.
        :param mask: (B, 2, T) shared, or (K, B, 2, T); 1 on valid steps.
        :return: (K, B, 2) — from ONE batched forward of the stacked members.
        """
        return self._returns(self.reward_model.member_rewards_torch(features), mask)

    @staticmethod
    def _returns(rewards: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Member rewards (K, B·2·T) and mask (B, 2, T) or (K, B, 2, T) -> masked segment sums (K, B, 2)."""
        return (rewards.reshape(rewards.shape[0], *mask.shape[-3:]) * mask).sum(dim=-1)

    def _model_is_normalised(self) -> bool:
        """Whether the model already has input statistics (fitted before), which must be kept."""
        model = self.reward_model
        return bool((model.input_loc != 0).any() or (model.input_scale != 1).any())

    def fit(self, pairs: SegmentPairs, labels: np.ndarray, progress_bar: bool = False) -> dict[str, float]:
        labels = np.asarray(labels, dtype=np.float32)
        if labels.shape != (len(pairs),):
            raise ValueError(f"labels must have shape ({len(pairs)},) like the pairs, got {labels.shape}")
        keep = _valid(labels)
        if not keep.any():
            return {"loss": float("nan"), "accuracy": float("nan"), "n_labels": 0}
        pairs, labels = pairs[np.flatnonzero(keep)], labels[keep]
        obs, actions, next_obs = pairs.flat_transitions()
        flat = self.reward_model.features_torch(obs, actions, next_obs)  # (B·2·T, D)
        valid_rows = pairs.mask.reshape(-1)
        if not self._normalised and not self._model_is_normalised():
            # standardise inputs by the first label data, then keep it fixed so refits train the same function
            self.reward_model.set_normalisation(flat.cpu().numpy()[valid_rows])
        self._normalised = True
        n, t, d, k = len(pairs), pairs.segment_length, flat.shape[-1], self.reward_model.n_members
        features = flat.reshape(n, 2 * t, d)
        mask = torch.as_tensor(pairs.mask, dtype=flat.dtype, device=flat.device)  # (B, 2, T)
        y = torch.as_tensor(labels, device=flat.device)
        # the prior nets and normalisation are fixed: their share of every return, once per fit
        fixed_rewards = self.reward_model.fixed_rewards_torch(flat)  # (K, B·2·T)
        fixed_returns = self._returns(fixed_rewards, mask)  # (K, B, 2)
        workspace = Workspace()  # activation buffers shared by this fit's steps

        def member_loss(indices: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:  # (b,), (K, b) -> (K,)
            # one minibatch for all members, bootstrap as weights: a single (b·2·T, D) input batch
            b = indices.shape[0]
            trainable = self.reward_model.trainable_segment_returns_torch(
                features[indices].reshape(b * 2 * t, d), mask[indices].reshape(b * 2, t), workspace
            )  # (K, b·2)
            returns = trainable.reshape(k, b, 2) + fixed_returns[:, indices]
            return bradley_terry_loss(returns, y[indices], self.label_noise, self.temperature, weights)

        train_members(
            self.reward_model.parameters(),
            member_loss,
            n_items=n,
            n_members=k,
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            weight_decay=getattr(self.reward_model, "weight_decay", 0.0),
            val_fraction=self.val_fraction if n >= 10 else 0.0,
            patience=self.patience,
            bootstrap=getattr(self.reward_model, "bootstrap", True),
            generator=self.generator,
            progress_bar=progress_bar,
            description="fit preferences",
            shared_batches=True,
        )
        # the model caches folded inference weights; they are stale after training
        self.reward_model._cache = None
        with torch.no_grad():
            rewards = fixed_rewards + in_chunks(self.reward_model.trainable_rewards_torch, flat)  # (K, B·2·T)
        self.reward_model.set_reward_statistics(flat.cpu().numpy()[valid_rows], rewards.cpu().numpy()[:, valid_rows])
        return self._metrics(self._returns(rewards, mask), y)

    @torch.no_grad()
    def _metrics(self, returns: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """Loss and agreement of the fitted members' returns (K, B, 2) with the labels (B,)."""
        loss = bradley_terry_loss(returns, y, self.label_noise, self.temperature)  # (K,)
        probs = torch.as_tensor(self.reward_model.member_probs, dtype=returns.dtype, device=returns.device)
        mean_returns = torch.einsum("k,kbs->bs", probs, returns)
        delta = (mean_returns[:, 0] - mean_returns[:, 1]).cpu().numpy()
        return {
            "loss": float(probs @ loss),
            "accuracy": _agreement(delta, y.cpu().numpy()),
            "n_labels": int(y.shape[0]),
        }


class LinearPreferenceFitter(PreferenceFitter):
    """Laplace posterior over linear reward weights, written into a linear reward model.

    The prior is the model's posterior when the fitter first needs it (its N(0, σ_r² I) prior, or
    what reward labels already taught it), so preferences and reward labels combine. A model
    whose ``prior_reward_scale`` was neither declared nor derived from reward labels gets
    σ_r = 1.0 here (preferences carry no reward magnitude; Bradley–Terry units), announced
    on the ``ruagent`` logger.

    """

    def __init__(self, reward_model: Any, label_noise: float = 0.0, temperature: float = 1.0) -> None:
        super().__init__(reward_model, label_noise, temperature)
        for name in ("features", "basis", "set_posterior"):
            if not hasattr(reward_model, name):
                raise TypeError(
                    f"LinearPreferenceFitter needs a BayesianLinearRewardModel (no {name}); got {reward_model!r}"
                )
        self.posterior: LaplacePosterior | None = None
        #: how many of the pairs given to ``fit`` (its first ones) the model's posterior already holds;
        #: ``fit`` adds only the later ones, so no label counts twice
        self.n_absorbed = 0

    def _basis(self, segments: _SegmentArrays) -> np.ndarray:
        """φ of every step: (*lead, T, P) float64, zero on padded steps."""
        model = self.reward_model
        features = model.features(*segments.flat_transitions())
        if model.normalise_inputs and model.input_loc is None:
            # Fourier features need standardised inputs; take the statistics of the first label data
            model._set_input_normalisation(features[segments.mask.reshape(-1)])
        phi = model.basis(features).reshape(*segments.mask.shape, -1)
        return phi * segments.mask[..., None]

    def feature_sums(self, segments: _SegmentArrays) -> np.ndarray:
        """Φ(σ) = Σ_t φ_t of every segment over valid steps: (*lead, P) float64."""
        return self._basis(segments).sum(axis=-2)

    def _ensure_posterior(self, dim: int) -> LaplacePosterior:
        if self.posterior is None:
            model = self.reward_model
            resolve = getattr(model, "resolve_prior_reward_scale", None)
            if resolve is not None:  # σ_r not declared nor taken from reward labels: 1.0, Bradley–Terry units
                resolve()
            self.posterior = LaplacePosterior(
                model.posterior_mean, model.posterior_precision, self.label_noise, self.temperature
            )
            assert self.posterior.dim == dim, (self.posterior.dim, dim)
        return self.posterior

    def fit(self, pairs: SegmentPairs, labels: np.ndarray, progress_bar: bool = False) -> dict[str, float]:
        labels = np.asarray(labels, dtype=np.float64)
        if labels.shape != (len(pairs),):
            raise ValueError(f"labels must have shape ({len(pairs)},) like the pairs, got {labels.shape}")
        sums = self.feature_sums(pairs)  # (B, 2, P)
        d = sums[:, 0] - sums[:, 1]
        posterior = self._ensure_posterior(d.shape[1])
        # the posterior keeps the pairs it absorbed; only the new ones are added
        if self.n_absorbed > len(pairs):
            raise ValueError(f"the posterior already holds {self.n_absorbed} labels but fit got {len(pairs)} pairs; "
                             "pass every label so far, in the order they were asked")
        posterior.update(d[self.n_absorbed :], labels[self.n_absorbed :])
        self.n_absorbed = len(pairs)
        self.reward_model.set_posterior(posterior.mean, posterior.precision)
        obs, actions, next_obs = pairs.flat_transitions()
        valid_rows = pairs.mask.reshape(-1)
        self.reward_model.set_reward_statistics(self.reward_model.features(obs, actions, next_obs)[valid_rows])
        keep = _valid(labels)
        delta = d[keep] @ posterior.mean / self.temperature
        nll, _, _ = nll_derivatives(delta, labels[keep], self.label_noise)
        return {
            "loss": float(nll.mean()) if keep.any() else float("nan"),
            "accuracy": _agreement(delta, labels[keep]),
            "n_labels": int(keep.sum()),
        }

    def delta_moments(self, segments: Segments, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance (B,) of Δ = wᵀ(Φ¹ − Φ²)/τ under the current posterior."""
        sums = self.feature_sums(segments)  # (N, P): one featuriser call for the pool
        posterior = self._ensure_posterior(sums.shape[1])
        return posterior.delta_moments(sums[index[:, 0]] - sums[index[:, 1]])


def make_fitter(reward_model: Any, **kwargs: Any) -> PreferenceFitter:
    """The fitter for ``reward_model``'s family (ensemble or linear), with its keyword arguments."""
    family = getattr(reward_model, "family", None)
    if family == "ensemble":
        return EnsemblePreferenceFitter(reward_model, **kwargs)
    if family == "linear":
        return LinearPreferenceFitter(reward_model, **kwargs)
    raise TypeError(
        f"preference learning supports the 'ensemble' and 'linear' reward-model families, got {family!r} "
        f"({type(reward_model).__name__}); use EnsembleRewardModel or BayesianLinearRewardModel"
    )
