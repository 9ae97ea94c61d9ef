"""The ensemble's inference weights, with normalisation and output scaling folded in.

:class:`~ruagent.reward_models.ensemble.EnsembleRewardModel` trains 2K nets (K trainable
members and their K randomised priors) on normalised inputs and targets, plus a linear
novelty prior. At inference all of that is one function of the raw features, and the
wrapper calls it once per vec step on a handful of rows, where per-call overhead, not
arithmetic, is the cost (issue 18). So:

* the first layers of all 2K nets *and* the novelty prior's K columns share one
  (D, 2K·(H+1) + K) matmul;
* every hidden layer carries one constant unit (weight 0, bias 1, and ReLU(1) = 1), so the
  next layer's bias is the last row of its weight: each later layer is ONE batched matmul
  over the 2K nets, with no broadcast add;
* ReLU runs in place through a torch view of the numpy buffer (``Tensor.relu_``), which at
  these sizes costs a quarter of ``np.maximum`` (measured at (20, 8, 65): 1.1 vs 4.5 µs);
* nothing is converted per call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ruagent.reward_models.novelty import TENSOR_NAMES, NoveltyPrior

__all__ = ["FoldedEnsemble"]


@dataclass(frozen=True)
class FoldedEnsemble:
    """Inference weights of K members (2K nets and a K-column novelty prior) on raw features (B, D).

    :ivar first_weight: (D, 2K·W + K) float32: every net's first layer (trainable nets first),
        then the novelty prior's K columns. W = H_1 + 1 (the hidden units and the constant
        unit) when members have hidden layers, W = 1 (the output) when they are linear.
    :ivar first_bias: (1, 2K·W + K) float32 (1 on the constant units).
    :ivar layers: the remaining layers' weights with their biases as the last row, float32:
        (2K, H_i + 1, H_{i+1} + 1) between hidden layers (the last column keeps the constant
        unit), (2K, H_last + 1, 1) for the output; empty when members are linear.
    :ivar n_net_columns: 2K·W, where the novelty columns start.
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
        novelty: NoveltyPrior,
    ) -> FoldedEnsemble:
        """Fold an ensemble's stacked layers and normalisation into inference weights.

        :param trainable, prior: the K trainable and K prior nets as stacked (weight (K, in, out),
            bias (K, 1, out)) tensors, flattened, computing on normalised inputs (x − loc) / scale.
        :param target_loc, target_scale, prior_gain: a member's reward is
            ``target_loc + target_scale · f(x̃) + prior_gain · p(x̃)``.
        :param novelty: the novelty prior (its K columns join the first layer; its variance is kept).
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
        weights, biases = layers[0::2], layers[1::2]
        if len(weights) > 1:
            # a constant unit after every hidden layer: its bias 1 survives ReLU, so the next layer's
            # bias becomes the last row of that layer's weight
            weights[0] = torch.cat([weights[0], weights[0].new_zeros(*weights[0].shape[:2], 1)], dim=2)
            biases[0] = torch.cat([biases[0], biases[0].new_ones(*biases[0].shape[:2], 1)], dim=2)
            for i in range(1, len(weights)):
                weights[i] = _with_constant_unit(weights[i], biases[i], keep_constant=i < len(weights) - 1)
        # the first layer's input is shared by all 2K nets and by the novelty prior: ONE
        # (D, 2K·W + K) matmul, the novelty prior's K columns last
        d, width = weights[0].shape[1], weights[0].shape[2]
        novelty64 = {name: getattr(novelty, name).detach().double().cpu() for name in TENSOR_NAMES}
        first = torch.cat([weights[0].permute(1, 0, 2).reshape(d, 2 * k * width), novelty64["weight"]], dim=1)
        first_bias = torch.cat([biases[0].reshape(2 * k * width), novelty64["bias"]])[None, :]
        layers = [first, first_bias, *weights[1:]]
        as_numpy = [np.ascontiguousarray(t.float().numpy()) for t in layers]
        # the novelty variance stays float64 (see novelty_variance)
        scale64, shift64, basis64 = novelty64["scale"], novelty64["shift"], novelty64["basis"]
        return cls(
            first_weight=as_numpy[0],
            first_bias=as_numpy[1],
            layers=tuple(as_numpy[2:]),
            n_net_columns=2 * k * width,
            novelty_complement=novelty.complement,
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
        for weight in self.layers:
            torch.from_numpy(h).relu_()  # in place, on numpy's memory (see the module docstring)
            if h.ndim == 2:  # (B, 2K·W) -> (2K, B, W): a strided view, no copy
                h = h.reshape(n_rows, 2 * k, -1).transpose(1, 0, 2)
            h = np.matmul(h, weight)
        out = h.reshape(2 * k, n_rows) if self.layers else h.T  # linear members: (B, 2K) outputs
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
        for weight in layers:
            h = torch.relu(h)
            if h.dim() == 2:
                h = h.reshape(n_rows, 2 * k, -1).transpose(0, 1)
            h = torch.bmm(h, weight)
        out = h.reshape(2 * k, n_rows) if layers else h.T
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


def _with_constant_unit(weight: torch.Tensor, bias: torch.Tensor, keep_constant: bool = True) -> torch.Tensor:
    """A layer (weight (2K, n, m), bias (2K, 1, m)) reading a constant unit: (2K, n + 1, m [+ 1]).

    The bias becomes the weight's last row (the row the constant unit multiplies); with
    ``keep_constant`` a last column passes the constant unit on (0 from every unit, 1 from itself).
    """
    augmented = torch.cat([weight, bias], dim=1)
    if not keep_constant:
        return augmented
    constant = torch.zeros(*augmented.shape[:2], 1, dtype=augmented.dtype)
    constant[:, -1] = 1.0
    return torch.cat([augmented, constant], dim=2)
