"""A deep ensemble of reward MLPs with randomised prior functions, as one batched computation.

Member k's reward is

    r_k(x) = μ_y + σ_t · f_k(x̃) + g · p_k(x̃) + n_kᵀ x̃

where ``x̃`` is the input standardised by the label data (columns the labels never varied get
a floor scale, :func:`~ruagent.reward_models.priors.input_normalisation`), ``μ_y`` the label
mean, ``σ_t`` the larger of the label std and σ_r, ``f_k`` a trainable MLP and ``p_k`` a fixed
random MLP of the same shape (randomised prior functions: Osband, Aslanides & Cassirer,
NeurIPS 2018). Each member trains
on its own bootstrap resample. Two priors, both in reward units of σ_r (``prior_reward_scale``):

* ``g · p_k``: the prior nets, scaled so that members spread by σ_r before training. Where the
  labels constrain the reward, training cancels the priors' disagreement; elsewhere inside
  the labels' span it remains.
* ``n_kᵀ x̃``: the *novelty prior* (:mod:`ruagent.reward_models.novelty`), a fixed linear
  function with N(0, σ_r²) weights on the directions along which the label inputs never
  varied (zero on every label input, so training has nothing to cancel): what a Bayesian
  linear model keeps there, its prior, where random ReLU nets barely react to a new column.

All K members live in stacked tensors (``(K, fan_in, fan_out)`` weights) and are evaluated
and trained by batched matmuls: no Python loop over members anywhere.

Prediction is on the hot path of the VecEnv wrapper (a call per env step), so it runs on a
folded copy of the weights: input and output normalisation folded into the first and last
layers, trainable and prior nets stacked as 2K members, cached as contiguous float32 numpy
arrays. For small batches numpy's matmul has less per-call overhead than torch (measured
for B=8, K=10, 64x64 on CPU: ~35 µs numpy vs ~95 µs torch.inference_mode); from
``TORCH_MIN_BATCH`` rows torch's multithreaded bmm wins and is used (sharing the memory).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from ruagent.data import labelled_arrays
from ruagent.features import RewardInputs
from ruagent.reward_models.base import member_mean_variance
from ruagent.reward_models.feature_model import FeatureRewardModel
from ruagent.reward_models.folded import FoldedEnsemble
from ruagent.reward_models.novelty import NoveltyPrior
from ruagent.reward_models.priors import default_prior_reward_scale, input_normalisation, resolve_prior_reward_scale
from ruagent.reward_models.regression import regress_members
from ruagent.reward_models.segment_returns import Workspace, stacked_segment_returns
from ruagent.reward_models.stacked import in_chunks, init_stacked, stacked_mlp

__all__ = ["EnsembleRewardModel"]

#: batches at least this large predict with torch instead of numpy (see module docstring).
TORCH_MIN_BATCH = 64
#: label rows (at most about this many, evenly spaced) at which the prior nets' sensitivity is measured
PRIOR_CALIBRATION_ROWS = 512
#: variance (in normalised units, where a labelled column has variance 1) at or below which a
#: direction of the label inputs counts as never varied, for the novelty prior
NULL_VARIANCE = 1e-6


#: a tensor's in-place update counter (torch bumps it on every optimiser step and ``copy_``)
_VERSION = operator.attrgetter("_version")


class EnsembleRewardModel(FeatureRewardModel):
    """K reward MLPs with randomised priors and bootstrap, trained and evaluated as one batch.

    :param observation_space: the env's observation space.
    :param action_space: the env's action space.
    :param n_members: K.
    :param hidden_sizes: hidden widths of every member's MLP.
    :param prior_reward_scale: σ_r, how large rewards can plausibly be where no label constrains
        them, in reward units: the prior nets are scaled to it (see :meth:`set_normalisation`;
        0 disables the priors). None (default): derived from the labels at the first fit, the
        largest reward magnitude seen (1.0 for preferences), announced on the ``ruagent`` logger.
    :param bootstrap: train each member on its own resample (with replacement) of the labels.
    :param features: ``"transition"`` (featuriser of (obs, action, next_obs)), ``"env"`` (the
        env's ``reward_features``, bound by :meth:`bind` or ``fit(env=...)``) or a callable
        ``(obs, action, next_obs) -> (B, D)``.
    :param weight_decay: L2 penalty (Adam's weight_decay) on the trainable nets.
    :param device: torch device for training; prediction always runs on CPU copies.
    :param seed: seeds the initial and prior weights, bootstrap and batching.
    """

    family = "ensemble"

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        n_members: int = 10,
        hidden_sizes: Sequence[int] = (64, 64),
        prior_reward_scale: float | None = None,
        bootstrap: bool = True,
        features: str | Callable = "transition",
        weight_decay: float = 0.0,
        device: str | torch.device = "cpu",
        seed: int | None = None,
        member_probs: np.ndarray | None = None,
        check_finite: bool = True,
    ) -> None:
        super().__init__(observation_space, action_space, n_members, features, member_probs, check_finite)
        if (prior_reward_scale is not None and not prior_reward_scale >= 0) or weight_decay < 0 or any(
            int(h) < 1 for h in hidden_sizes  # () = linear members
        ):
            raise ValueError(
                f"need prior_reward_scale >= 0 (or None), weight_decay >= 0 and positive hidden sizes; got "
                f"{prior_reward_scale}, {weight_decay}, {tuple(hidden_sizes)}"
            )
        self.hidden_sizes = tuple(int(h) for h in hidden_sizes)
        #: σ_r as declared (None: derived from the reward labels at the first fit).
        self.declared_prior_reward_scale = None if prior_reward_scale is None else float(prior_reward_scale)
        #: σ_r in force: the declared one, or the label-derived default once fitted.
        self.prior_reward_scale = self.declared_prior_reward_scale
        self.bootstrap = bool(bootstrap)
        self.weight_decay = float(weight_decay)
        self.device = torch.device(device)
        self.seed = seed
        self._generator = torch.Generator().manual_seed(
            int(seed) if seed is not None else int(torch.randint(2**62, ()).item())
        )
        self._trainable: list[torch.Tensor] = []
        self._prior: list[torch.Tensor] = []
        self._cache: FoldedEnsemble | None = None
        self._cache_key: tuple | None = None
        self.novelty: NoveltyPrior | None = None  # built with the layers (_build)
        self._build_if_width_known()

    # ------------------------------------------------------------------ construction
    def _build(self, in_dim: int) -> None:
        sizes = (in_dim, *self.hidden_sizes, 1)
        k = self.n_members
        self.in_dim = in_dim
        self._trainable = [t.to(self.device).requires_grad_(True) for t in init_stacked(k, sizes, self._generator)]
        self._prior = [t.to(self.device) for t in init_stacked(k, sizes, self._generator)]
        # Normalisation of inputs and targets, set from the label data by fit.
        self.input_loc = torch.zeros(in_dim, device=self.device)
        self.input_scale = torch.ones(in_dim, device=self.device)
        self.target_loc = torch.zeros((), device=self.device)
        self.target_scale = torch.ones((), device=self.device)
        # Reward units per unit of prior-net output: σ_r / (the prior nets' sensitivity), set by
        # set_normalisation once the label inputs are known.
        self.prior_gain = torch.zeros((), device=self.device)
        #: the novelty prior (drawn by set_normalisation; zero until then)
        self.novelty = NoveltyPrior.zeros(in_dim, k, self.device)
        self._cache = None

    def parameters(self) -> list[torch.Tensor]:
        """The trainable tensors: 2 per layer (stacked over members), independent of K."""
        return list(self._trainable)

    # ------------------------------------------------------------------ features
    def features_torch(self, obs: Any, action: Any, next_obs: Any) -> torch.Tensor:
        """:meth:`features` as a tensor on the training device, for :meth:`member_rewards_torch`."""
        return torch.as_tensor(self.features(obs, action, next_obs), device=self.device)

    # ------------------------------------------------------------------ differentiable forward
    def member_rewards_torch(self, features: torch.Tensor) -> torch.Tensor:
        """Differentiable member rewards: features (B, D) shared, or (K, B, D) per member -> (K, B).

        Gradients flow to :meth:`parameters` only (the priors and normalisation are fixed);
        this is what regression and preference (Bradley–Terry) losses train through.
        """
        return self.fixed_rewards_torch(features) + self.trainable_rewards_torch(features)

    def _check_features_torch(self, features: torch.Tensor) -> torch.Tensor:
        """Shape checks, then the standardised inputs x̃ (same shape as ``features``)."""
        if self.in_dim is None:
            raise RuntimeError("the ensemble has not seen any features yet; call fit() or features() first")
        assert features.shape[-1] == self.in_dim, (features.shape, self.in_dim)
        assert features.dim() == 2 or features.shape[0] == self.n_members, (features.shape, self.n_members)
        return (features - self.input_loc) / self.input_scale

    @torch.no_grad()
    def fixed_rewards_torch(self, features: torch.Tensor) -> torch.Tensor:
        """The part of member rewards training cannot change, ``μ_y + g·p_k(x̃) + n_kᵀx̃``: (B, D) or (K, B, D) -> (K, B).

        The prior nets, the novelty prior and the normalisation are fixed (Osband et al. 2018 add
        the prior net's output to each member and never train it), so a fitter computes this once
        per fit.
        """
        x = self._check_features_torch(features)
        if x.shape[-2] == 0:
            prior = x.new_zeros(self.n_members, 0)
        else:
            prior = in_chunks(lambda rows: stacked_mlp(rows, self._prior), x)
        return self.target_loc + self.prior_gain * prior + self.novelty.rewards_torch(features)

    def trainable_rewards_torch(self, features: torch.Tensor) -> torch.Tensor:
        """The trained part ``σ_t·f_k(x̃)``, differentiable: (B, D) shared or (K, B, D) -> (K, B).

        :meth:`member_rewards_torch` is ``fixed_rewards_torch + trainable_rewards_torch``.
        """
        return self.target_scale * stacked_mlp(self._check_features_torch(features), self._trainable)

    def trainable_segment_returns_torch(
        self, features: torch.Tensor, mask: torch.Tensor, workspace: Workspace | None = None
    ) -> torch.Tensor:
        """Masked sums over segments of :meth:`trainable_rewards_torch`, differentiable in :meth:`parameters`.

        Computed by :func:`~ruagent.reward_models.segment_returns.stacked_segment_returns`
        (output layer applied to the summed last activations, hand-written backward): same
        returns and gradients as summing :meth:`trainable_rewards_torch` over each segment.

        :param features: (S·T, D) raw features of S segments of T steps, shared by all members.
        :param mask: (S, T), 1 on valid steps and 0 on padding.
        :param workspace: activation buffers reused across the steps of a training loop.
        :return: (K, S) member returns.
        """
        x = self._check_features_torch(features)
        assert x.dim() == 2, "segment returns take one input batch shared by all members"
        return self.target_scale * stacked_segment_returns(x, mask, self._trainable, workspace)

    def set_normalisation(self, features: np.ndarray, rewards: np.ndarray | None = None) -> None:
        """Standardise inputs (and targets, given reward labels) by the label data; scale the prior.

        Inputs: :func:`~ruagent.reward_models.priors.input_normalisation`, so a column constant
        in the labels (a one-hot never active) gets a floor scale and stays visible to the
        prior instead of being silenced. Targets: the label mean and std (1 without labels).
        Prior: σ_r is the declared ``prior_reward_scale`` or, if None, the label-derived
        default (:func:`~ruagent.reward_models.priors.default_prior_reward_scale`; 1.0 for
        preferences). The prior nets are scaled so that, before training, members spread by σ_r
        (std over members, averaged over the label inputs): where the labels do not pin a
        member down it keeps a prior of that width in reward units. The novelty prior
        (:class:`~ruagent.reward_models.novelty.NoveltyPrior`) covers the directions the labels never varied.

        :param features: (N, D) raw features of the label data.
        :param rewards: (N,) reward labels, or None to leave the output scale (preferences).
        """
        features = np.asarray(features, dtype=np.float64)
        self._ensure_built(features.shape[1])
        loc, scale = input_normalisation(features)
        self.input_loc = torch.as_tensor(loc, dtype=torch.float32, device=self.device)
        self.input_scale = torch.as_tensor(scale, dtype=torch.float32, device=self.device)
        rewards = None if rewards is None else np.asarray(rewards, dtype=np.float64)
        if self.declared_prior_reward_scale is not None:
            self.prior_reward_scale = self.declared_prior_reward_scale
        elif self.prior_reward_scale is None:  # announce the assumption once, at the first fit
            self.prior_reward_scale = resolve_prior_reward_scale(None, rewards, type(self).__name__)
        elif rewards is not None:
            self.prior_reward_scale = default_prior_reward_scale(rewards)
        if rewards is not None:
            self.target_loc = torch.tensor(rewards.mean(), dtype=torch.float32, device=self.device)
            # the trained part's output unit: the label std, or σ_r if larger, so that training
            # cancels the prior where the labels are at the pace it learns the labels
            unit = max(float(rewards.std()), self.prior_reward_scale)
            self.target_scale = torch.tensor(unit if unit > 1e-6 else 1.0, dtype=torch.float32, device=self.device)
        normalised = (features - loc) / scale
        sample = torch.as_tensor(normalised[:: max(1, len(features) // PRIOR_CALIBRATION_ROWS)], dtype=torch.float32)
        spread = 0.0
        if self.n_members > 1:  # one member has no spread to scale (and std over one row warns)
            with torch.no_grad():
                spread = float(stacked_mlp(sample.to(self.device), self._prior).std(dim=0).mean())
        gain = self.prior_reward_scale / spread if spread > 0 else 0.0
        self.prior_gain = torch.tensor(gain, dtype=torch.float32, device=self.device)
        self.novelty = NoveltyPrior.draw(normalised, loc, scale, self.prior_reward_scale, self.n_members,
                                         self._generator, self.device, NULL_VARIANCE)
        self._cache = None

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        data: Any,
        env: gym.Env | None = None,
        *,
        epochs: int = 300,
        batch_size: int = 256,
        lr: float = 1e-3,
        val_fraction: float = 0.1,
        patience: int = 30,
        progress_bar: bool = True,
    ) -> dict[str, Any]:
        """Regress every member on reward labels, with per-member early stopping.

        Normalisation statistics are recomputed from ``data``; a second ``fit`` continues
        from the current weights (warm start), the priors stay fixed. Training runs on the
        input columns the labels varied only (:func:`~ruagent.reward_models.regression.regress_members`:
        the same fit, at cost linear in N·D_v a step).

        :param data: a :class:`ruagent.data.Transitions` or a tuple ``(obs, action, next_obs, reward)``.
        :param env: binds ``features="env"`` (and checks spaces) before fitting.
        :param val_fraction: share of labels held out for early stopping (0 disables).
        :param patience: stop after this many epochs without any member improving its
            held-out loss; each member keeps its best epoch's weights.
        :return: history dict: ``train_loss``, ``val_loss`` (per epoch, mean over members),
            ``best_epoch`` (per member), ``epochs`` run.
        """
        if env is not None:
            self.bind(env)
        obs, action, next_obs, rewards = labelled_arrays(data)
        features = self.features(obs, action, next_obs)
        self.set_normalisation(features, rewards)
        x = torch.as_tensor(features, device=self.device)
        # the priors are fixed: their part of the label rows' rewards is computed once, and the
        # trainable nets train on the columns the labels varied only (exact; see regression.py)
        history = regress_members(
            self._trainable,
            stacked_mlp,
            self._check_features_torch(x),
            self.fixed_rewards_torch(x),
            torch.as_tensor(rewards, dtype=torch.float32, device=self.device),
            self.target_scale,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            weight_decay=self.weight_decay,
            val_fraction=val_fraction,
            patience=patience,
            bootstrap=self.bootstrap,
            generator=self._generator,
            progress_bar=progress_bar,
            description="fit reward ensemble",
        )
        self._cache = None
        self.set_reward_statistics(features)
        return history

    # ------------------------------------------------------------------ prediction
    def _folded(self) -> FoldedEnsemble:
        """Inference weights (:class:`FoldedEnsemble`), rebuilt when any parameter changed.

        Torch bumps a tensor's ``_version`` on every in-place update (optimiser steps,
        ``copy_``), so training outside :meth:`fit` (e.g. on preferences) is picked up without
        anyone invalidating the cache by hand; normalisation and priors are replaced, not
        updated in place, so their identity is the key.
        """
        # map() keeps the key C-level: this runs on every wrapper step
        key = (
            *map(id, (self.input_loc, self.input_scale, self.target_loc, self.target_scale, self.prior_gain,
                      self.novelty)),
            *map(_VERSION, self._trainable),
            *map(_VERSION, self._prior),
        )
        if self._cache is None or key != self._cache_key:
            self._cache_key = key
            with torch.no_grad():
                self._cache = self._fold()
        return self._cache

    def _fold(self) -> FoldedEnsemble:
        return FoldedEnsemble.fold(
            self._trainable,
            self._prior,
            input_loc=self.input_loc,
            input_scale=self.input_scale,
            target_loc=self.target_loc,
            target_scale=self.target_scale,
            prior_gain=self.prior_gain,
            novelty=self.novelty,
        )

    def _predict_features(self, features: np.ndarray) -> np.ndarray:
        """(B, D) float32 raw features -> (K, B) float32 member rewards."""
        assert features.ndim == 2 and features.shape[1] == self.in_dim, (features.shape, self.in_dim)
        return self._net_and_novelty_rewards(features)[0]

    def _predict_features_with_moments(self, features: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """Members (K, B), and the posterior mean and std (B,) with the novelty prior's part analytic.

        The novelty term of member k is ``z_kᵀ P u`` with ``z_k ~ N(0, σ_r² I)``: its mean is exactly 0
        and its variance ``‖P u‖²``, so the mean is the members' nets alone (the K draws would only
        add sampling noise, ‖P u‖/√K, to it) and the variance adds ``‖P u‖²`` to the nets'.
        """
        folded = self._folded()
        members, nets = self._net_and_novelty_rewards(features, folded)
        mean, variance = member_mean_variance(nets, self.member_probs)
        variance += folded.novelty_variance(features)
        return members, (mean, np.sqrt(variance, out=variance))

    def _net_and_novelty_rewards(
        self, features: np.ndarray, folded: FoldedEnsemble | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Member rewards (K, B) and the rewards of the members' nets alone (K, B), without the novelty prior."""
        assert features.ndim == 2 and features.shape[1] == self.in_dim, (features.shape, self.in_dim)
        folded = folded or self._folded()
        if features.shape[0] >= TORCH_MIN_BATCH:
            with torch.inference_mode():
                x = torch.from_numpy(features)
                out = in_chunks(lambda rows: folded.forward_torch(rows, self.n_members), x).numpy()
            k = self.n_members
            return out[:k] + out[k:], out[:k]
        return folded.forward_numpy(features, self.n_members)

    # ------------------------------------------------------------------ persistence
    def _get_state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        config = {
            "n_members": self.n_members,
            "hidden_sizes": list(self.hidden_sizes),
            "prior_reward_scale": self.declared_prior_reward_scale,
            "resolved_prior_reward_scale": self.prior_reward_scale,
            "bootstrap": self.bootstrap,
            "weight_decay": self.weight_decay,
            "seed": self.seed,
            "features": self._inputs.describe(),
            "in_dim": self.in_dim,
            "novelty_complement": self.novelty is not None and self.novelty.complement,
        }
        # the generator too, so that fitting a loaded model continues exactly like the original
        tensors: dict[str, torch.Tensor] = {"generator_state": self._generator.get_state()}
        if self.in_dim is not None:
            for i, (trainable, prior) in enumerate(zip(self._trainable, self._prior)):
                tensors[f"trainable.{i}"] = trainable
                tensors[f"prior.{i}"] = prior
            for name in ("input_loc", "input_scale", "target_loc", "target_scale", "prior_gain"):
                tensors[name] = getattr(self, name)
            tensors.update(self.novelty.tensors())
        return config, tensors

    @classmethod
    def _from_state(
        cls,
        observation_space: gym.Space,
        action_space: gym.Space,
        config: dict[str, Any],
        tensors: dict[str, torch.Tensor],
    ) -> EnsembleRewardModel:
        inputs = RewardInputs.from_record(observation_space, action_space, config["features"])
        model = cls(
            observation_space,
            action_space,
            n_members=config["n_members"],
            hidden_sizes=config["hidden_sizes"],
            prior_reward_scale=config.get("prior_reward_scale"),
            bootstrap=config["bootstrap"],
            weight_decay=config["weight_decay"],
            seed=config["seed"],
            # built below from the saved tensors; "env" defers building
            features="transition" if inputs.mode == "transition" and config["in_dim"] is None else "env",
        )
        model._inputs = inputs
        if config["in_dim"] is not None:
            model._build(int(config["in_dim"]))
            n_tensors = len(model._trainable)
            with torch.no_grad():
                for i in range(n_tensors):
                    for name, target in (("trainable", model._trainable), ("prior", model._prior)):
                        saved = tensors[f"{name}.{i}"]
                        if saved.shape != target[i].shape:
                            raise ValueError(f"tensor {name}.{i} has shape {saved.shape}, expected {target[i].shape}")
                        target[i].copy_(saved)
            for name in ("input_loc", "input_scale", "target_loc", "target_scale"):
                setattr(model, name, tensors[name].to(torch.float32).clone())
            if "prior_gain" in tensors:
                model.prior_gain = tensors["prior_gain"].to(torch.float32).clone()
                model.novelty = NoveltyPrior.from_tensors(tensors, model.in_dim, model.n_members,
                                                          bool(config.get("novelty_complement", False)))
            else:  # files written before priors in reward units: prior = σ_y · prior_scale · p_k
                model.prior_gain = model.target_scale * float(config.get("prior_scale", 1.0))
        model.prior_reward_scale = config.get("resolved_prior_reward_scale", model.declared_prior_reward_scale)
        if "generator_state" in tensors:  # after _build, which draws from the generator
            model._generator.set_state(tensors["generator_state"])
        return model

    def __repr__(self) -> str:
        return (
            f"EnsembleRewardModel(K={self.n_members}, hidden_sizes={self.hidden_sizes}, "
            f"prior_reward_scale={self.prior_reward_scale}, bootstrap={self.bootstrap}, "
            f"features={self.features_mode!r}, in_dim={self.in_dim})"
        )
