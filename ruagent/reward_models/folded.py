"""The ensemble's inference weights, with normalisation and output scaling folded in.

:class:`~ruagent.reward_models.ensemble.EnsembleRewardModel` trains 2K nets (K trainable
members and their K randomised priors) on normalised inputs and targets, plus a linear
novelty prior. At inference all of that is one function of the raw features, and the
wrapper calls it once per vec step on a handful of rows, where Python overhead, not
arithmetic, is the cost. So the first layers of all 2K nets *and* the novelty prior's K
columns share one (D, 2K·H + K) matmul, the remaining layers are batched matmuls over the
2K nets, and nothing is converted per call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["FoldedEnsemble"]


@dataclass(frozen=True)
class FoldedEnsemble:
    """Inference weights of K members (2K nets and a K-column novelty prior) on raw features (B, D).

    :ivar first_weight: (D, 2K·H + K) float32: every net's first layer (trainable nets first),
        then the novelty prior's K columns.
    :ivar first_bias: (1, 2K·H + K) float32.
    :ivar layers: the remaining layers as (weight (2K, H_i, H_{i+1}), bias (2K, 1, H_{i+1}))
        float32 pairs, flattened; empty when members are linear (``hidden_sizes=()``, H = 1).
    :ivar n_net_columns: 2K·H, where the novelty columns start.
    :ivar novelty_complement: the novelty variance is ‖u‖² − ‖Vᵀu‖² (the directions the labels
        never varied are the complement of ``basis``) rather than ‖Vᵀu‖².
    :ivar basis: (D, r) float64 orthonormal basis V of the novelty subspace.
    :ivar scaled_basis: (D, r) float64, ``scale[:, None] * basis``.
    :ivar projected_shift: (r,) float64, ``shift @ basis``.
    :ivar novelty_scale, novelty_shift: (D,) float64: u = x · scale + shift.
    """

    first_weight: np.ndarray
    first_bias: np.ndarray
    layers: tuple[np.ndarray, ...]
    n_net_columns: int
    novelty_complement: bool
    basis: np.ndarray
    scaled_basis: np.ndarray
    projected_shift: np.ndarray
    novelty_scale: np.ndarray
    novelty_shift: np.ndarray

    @classmethod
    def fold(
        cls,
        trainable: Sequence[torch.Tensor],
        prior: Sequence[torch.Tensor],
        *,
        input_loc: torch.Tensor,
        input_scale: torch.Tensor,
        target_loc: torch.Tensor,
        target_scale: torch.Tensor,
        prior_gain: torch.Tensor,
        novelty: dict[str, torch.Tensor],
        novelty_complement: bool,
    ) -> FoldedEnsemble:
        """Fold an ensemble's stacked layers and normalisation into inference weights.

        :param trainable, prior: the K trainable and K prior nets as stacked (weight (K, in, out),
            bias (K, 1, out)) tensors, flattened, computing on normalised inputs (x − loc) / scale.
        :param target_loc, target_scale, prior_gain: a member's reward is
            ``target_loc + target_scale · f(x̃) + prior_gain · p(x̃)``.
        :param novelty: the novelty prior's ``weight`` (D, K) and ``bias`` (K,) on raw inputs, and
            ``scale``, ``shift`` (D,) and ``basis`` (D, r) of its variance.
        """
        layers = [torch.cat([a, b], dim=0).detach().double().cpu() for a, b in zip(trainable, prior)]
        k = len(trainable[0])
        loc, scale = input_loc.double().cpu(), input_scale.double().cpu()
        # x̃ = (x - loc) / scale  =>  x̃ W + b = x (W / scale) + (b - (loc / scale) W)
        first_weight = layers[0] / scale[:, None]
        layers[1] = layers[1] - torch.matmul((loc / scale)[None, None, :], layers[0])
        layers[0] = first_weight
        # output: μ_y + σ_t f + g p: scale the last layers, put μ_y on the trainable half's bias
        out_scale = torch.cat([torch.full((k,), float(target_scale)), torch.full((k,), float(prior_gain))])
        out_scale = out_scale.double()[:, None, None]
        layers[-2] = layers[-2] * out_scale
        layers[-1] = layers[-1] * out_scale
        layers[-1][:k] += target_loc.double().cpu()
        # the first layer's input is shared by all 2K nets and by the novelty prior: ONE
        # (D, 2K·H + K) matmul, the novelty prior's K columns last
        d, width = layers[0].shape[1], layers[0].shape[2]
        novelty64 = {name: tensor.detach().double().cpu() for name, tensor in novelty.items()}
        layers[0] = torch.cat([layers[0].permute(1, 0, 2).reshape(d, 2 * k * width), novelty64["weight"]], dim=1)
        layers[1] = torch.cat([layers[1].reshape(2 * k * width), novelty64["bias"]])[None, :]
        as_numpy = [np.ascontiguousarray(t.float().numpy()) for t in layers]
        # the novelty variance stays float64 (see novelty_variance)
        scale64, shift64, basis64 = novelty64["scale"], novelty64["shift"], novelty64["basis"]
        return cls(
            first_weight=as_numpy[0],
            first_bias=as_numpy[1],
            layers=tuple(as_numpy[2:]),
            n_net_columns=2 * k * width,
            novelty_complement=novelty_complement,
            basis=np.ascontiguousarray(basis64.numpy()),
            scaled_basis=np.ascontiguousarray((scale64[:, None] * basis64).numpy()),
            projected_shift=(shift64 @ basis64).numpy(),
            novelty_scale=scale64.numpy(),
            novelty_shift=shift64.numpy(),
        )

    @property
    def has_hidden(self) -> bool:
        return bool(self.layers)

    def forward_numpy(self, features: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw features (B, D) float32 -> member rewards (K, B) and the nets' rewards alone (K, B), float32."""
        n_rows = features.shape[0]
        h = features @ self.first_weight
        h += self.first_bias
        novelty = h[:, self.n_net_columns :]
        h = h[:, : self.n_net_columns]
        if self.has_hidden:
            np.maximum(h, 0.0, out=h)
        # (B, 2K·H) -> (2K, B, H): a strided view, no copy
        h = h.reshape(n_rows, 2 * k, -1).transpose(1, 0, 2)
        layers = self.layers
        for i in range(0, len(layers), 2):
            h = np.matmul(h, layers[i])
            h += layers[i + 1]
            if i < len(layers) - 2:
                np.maximum(h, 0.0, out=h)
        out = h[..., 0]
        nets = out[:k] + out[k:]
        return nets + novelty.T, nets

    def forward_torch(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """Raw features (B, D) float32 tensor -> (2K, B): the nets' rewards (K rows), then the novelty prior's (K rows).

        For large batches, where torch's threaded kernels beat numpy's.
        """
        # torch.from_numpy shares the arrays' memory: nothing is copied per call
        first_weight, first_bias, *layers = map(torch.from_numpy, (self.first_weight, self.first_bias, *self.layers))
        n_rows = x.shape[0]
        h = torch.addmm(first_bias, x, first_weight)
        novelty = h[:, self.n_net_columns :]
        h = h[:, : self.n_net_columns]
        h = torch.relu(h) if layers else h
        h = h.reshape(n_rows, 2 * k, -1).transpose(0, 1)
        for i in range(0, len(layers), 2):
            h = torch.baddbmm(layers[i + 1], h, layers[i])
            if i < len(layers) - 2:
                h = torch.relu(h)
        out = h[..., 0]
        return torch.cat([out[:k] + out[k:], novelty.T])

    def novelty_variance(self, features: np.ndarray) -> np.ndarray:
        """The novelty prior's variance ‖P u‖² at raw features (B, D): (B,) float64, ≥ 0.

        In float64, because in the complement form ‖u‖² − ‖Vᵀu‖² must cancel to ~0 where the
        labels are.
        """
        if self.novelty_complement:
            u = features * self.novelty_scale
            u += self.novelty_shift
            variance = np.square(u).sum(axis=1)
            if self.basis.shape[1]:
                variance -= np.square(u @ self.basis).sum(axis=1)
            return np.maximum(variance, 0.0, out=variance)
        if not self.scaled_basis.shape[1]:
            return np.zeros(features.shape[0])
        # not einsum: its Python dispatch costs more than the arithmetic at wrapper batch sizes
        projected = features @ self.scaled_basis
        projected += self.projected_shift
        return np.square(projected, out=projected).sum(axis=1)
