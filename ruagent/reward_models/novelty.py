"""The ensemble's novelty prior: N(0, σ_r²) weights on the input directions the labels never varied.

Random ReLU nets barely react to one new input column among hundreds (one-hot lava entering a
258-wide transition feature moved members by 0.005 where the true penalty is 2), so
:class:`~ruagent.reward_models.ensemble.EnsembleRewardModel` adds to member k a fixed linear
function ``n_kᵀx̃`` whose weights are N(0, σ_r² P), P the projection on the directions of the
normalised label inputs x̃ with variance at most ``null_variance``: columns constant in the
labels and the combinations the labels held fixed (LavaWorld's terrain one-hots of a cell sum
to 1 until lava appears). Along them the data carry no information, so each member keeps its
prior there, as a Bayesian linear model's posterior does; on every label input the term is
zero, so training has nothing to cancel and members stay sharp where the labels are. Its mean
is exactly 0 and its variance at x is ‖P u‖², u = σ_r·x̃, which prediction adds analytically
(:meth:`~ruagent.reward_models.folded.FoldedEnsemble.novelty_variance`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from ruagent.reward_models.label_subspace import label_subspace

__all__ = ["NoveltyPrior"]

#: the prior's tensors, saved as ``novelty_<name>``
TENSOR_NAMES = ("weight", "bias", "scale", "shift", "basis")


@dataclass(frozen=True, eq=False)  # tensors: identity, not elementwise ==
class NoveltyPrior:
    """K linear members on raw inputs (D,) and what their variance needs, float32 tensors.

    :ivar weight, bias: member k's term is ``x @ weight[:, k] + bias[k]``: (D, K) and (K,),
        the input normalisation folded in.
    :ivar scale, shift: u = x·scale + shift (D,), the normalised input in units of σ_r.
    :ivar basis: (D, m) orthonormal basis of the never-varied subspace, or of its complement
        (the varied one) when ``complement``: whichever is smaller.
    """

    weight: torch.Tensor
    bias: torch.Tensor
    scale: torch.Tensor
    shift: torch.Tensor
    basis: torch.Tensor
    complement: bool = False

    @classmethod
    def zeros(cls, in_dim: int, n_members: int, device: torch.device) -> NoveltyPrior:
        """No novelty prior (before any label data)."""
        zeros = partial(torch.zeros, device=device)
        return cls(zeros(in_dim, n_members), zeros(n_members), zeros(in_dim), zeros(in_dim), zeros(in_dim, 0))

    @classmethod
    def draw(
        cls,
        normalised: np.ndarray,
        loc: np.ndarray,
        scale: np.ndarray,
        prior_reward_scale: float,
        n_members: int,
        generator: torch.Generator,
        device: torch.device,
        null_variance: float,
    ) -> NoveltyPrior:
        """Draw K members' weights for label inputs normalised as ``(x − loc) / scale`` (N, D).

        The never-varied subspace comes from :func:`~ruagent.reward_models.label_subspace.label_subspace`
        at cost O(N·D + N·D_v·min(N, D_v)) for D_v varied columns (the D×D covariance and its
        eigendecomposition it replaces took 28 s at D = 5,677).
        """
        subspace = label_subspace(normalised, null_variance)
        # (D, K) on normalised inputs, N(0, σ_r² P)
        weight = prior_reward_scale * subspace.sample_never_varied(n_members, generator)
        as_tensor = partial(torch.as_tensor, dtype=torch.float32, device=device)
        complement = subspace.never_varied is None
        # x̃ᵀ W = ((x - loc) / scale)ᵀ W: the normalisation folded in, as prediction does
        return cls(
            weight=as_tensor(weight / scale[:, None]),
            bias=as_tensor(-(loc / scale) @ weight),
            scale=as_tensor(prior_reward_scale / scale),
            shift=as_tensor(-prior_reward_scale * loc / scale),
            basis=as_tensor(subspace.varied if complement else subspace.never_varied),
            complement=complement,
        )

    def rewards_torch(self, features: torch.Tensor) -> torch.Tensor:
        """Raw features (B, D) shared, or (K, B, D) per member -> the K members' terms (K, B)."""
        if features.dim() == 2:
            return (features @ self.weight).T + self.bias[:, None]
        return torch.einsum("kbd,dk->kb", features, self.weight) + self.bias[:, None]

    def tensors(self) -> dict[str, torch.Tensor]:
        """The tensors to save, named ``novelty_<name>``."""
        return {f"novelty_{name}": getattr(self, name) for name in TENSOR_NAMES}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], in_dim: int, n_members: int,
                     complement: bool) -> NoveltyPrior:
        """Rebuild from :meth:`tensors`' output, checking every shape (ValueError names the one that differs)."""
        d, k, m = in_dim, n_members, tensors["novelty_basis"].shape[1]
        shapes = {"weight": (d, k), "bias": (k,), "scale": (d,), "shift": (d,), "basis": (d, m)}
        for name, shape in shapes.items():
            saved = tensors[f"novelty_{name}"]
            if tuple(saved.shape) != shape:
                raise ValueError(f"tensor novelty_{name} has shape {tuple(saved.shape)}, expected {shape}")
        return cls(**{name: tensors[f"novelty_{name}"].to(torch.float32).clone() for name in TENSOR_NAMES},
                   complement=complement)
