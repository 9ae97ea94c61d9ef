"""Regression of stacked ensemble members on reward labels, on the input columns the labels varied.

A member's reward on a label row is ``fixed + σ_t · f_k(x̃)`` where ``fixed`` (priors, novelty
prior, label mean) is not trained and ``x̃`` is the standardised input. A column constant in
the labels is *exactly* 0 in every label row's ``x̃`` (see
:func:`~ruagent.reward_models.label_subspace.varied_columns`), so the first layer's rows for
it add nothing to any label row's product and receive a zero gradient. Training on the
varied columns alone (first-layer rows gathered, trained, scattered back) is therefore the
same optimisation, at cost O(N·D_v·H) a step instead of O(N·D·H): on a flattened gridworld
(D = 5,677, D_v ≈ 200) the difference between minutes and seconds. Adam is elementwise, so
splitting a tensor changes no update; with ``weight_decay > 0`` Adam still shrinks the
unvaried rows (their gradient is ``weight_decay · w``), so they are then kept in the optimiser
with a zero loss gradient, as before.

The fixed part is computed once per fit for all label rows and gathered per minibatch,
instead of running the prior nets over every minibatch again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ruagent.reward_models.label_subspace import varied_columns
from ruagent.reward_models.training import train_members

__all__ = ["regress_members"]

#: ``forward(x (K, b, D), tensors) -> (K, b)``: the stacked MLP of the trainable nets
Forward = Callable[[torch.Tensor, Sequence[torch.Tensor]], torch.Tensor]


def regress_members(
    trainable: Sequence[torch.Tensor],
    forward: Forward,
    normalised: torch.Tensor,
    fixed: torch.Tensor,
    targets: torch.Tensor,
    target_scale: torch.Tensor,
    *,
    weight_decay: float = 0.0,
    **train_kwargs: Any,
) -> dict[str, Any]:
    """Fit member k's ``fixed[k] + σ_t · forward(x̃)`` to the labels by squared error in units of σ_t.

    :param trainable: ``[W_0 (K, D, H_0), b_0, W_1, ...]`` with ``requires_grad``; updated in
        place (each member ends at its best held-out epoch, see
        :func:`~ruagent.reward_models.training.train_members`).
    :param forward: the stacked MLP, ``(x (K, b, D'), tensors like trainable) -> (K, b)``.
    :param normalised: (N, D) float32 standardised label inputs x̃ (columns constant in the
        labels exactly 0).
    :param fixed: (K, N) the untrained part of each member's reward on the label rows.
    :param targets: (N,) reward labels.
    :param target_scale: σ_t (scalar tensor), the trained part's output unit.
    :param weight_decay: Adam's L2 penalty on the trainable tensors.
    :param train_kwargs: passed to :func:`~ruagent.reward_models.training.train_members`
        (epochs, batch_size, lr, val_fraction, patience, bootstrap, generator, ...).
    :return: :func:`~ruagent.reward_models.training.train_members`'s history.
    """
    first = trainable[0]
    n_members, d = first.shape[:2]
    assert normalised.shape[1] == d and fixed.shape == (n_members, len(targets)), (normalised.shape, fixed.shape)
    device = first.device
    varied = varied_columns(normalised.cpu().numpy())
    columns = torch.as_tensor(varied, device=device)
    split = len(varied) < d
    if split:
        constant = torch.as_tensor(np.setdiff1d(np.arange(d), varied), device=device)
        x = normalised[:, columns]  # (N, D_v): one copy, so minibatch gathers move D_v columns, not D
        first_varied = first.detach()[:, columns].clone().requires_grad_(True)  # (K, D_v, H_0)
        # only weight decay moves the unvaried rows; without it Adam leaves them exactly as they are
        first_constant = first.detach()[:, constant].clone().requires_grad_(True) if weight_decay > 0 else None
        tensors = [first_varied, *trainable[1:]]
    else:
        x, first_constant, tensors = normalised, None, list(trainable)

    def member_loss(indices: torch.Tensor) -> torch.Tensor:  # (K, b) -> (K,)
        predictions = fixed.gather(1, indices) + target_scale * forward(x[indices], tensors)
        loss = ((predictions - targets[indices]) / target_scale).pow(2).mean(dim=1)
        if first_constant is not None:  # a zero gradient, so that Adam applies the decay to these rows
            loss = loss + 0.0 * first_constant.sum(dim=(1, 2))
        return loss

    parameters = tensors if first_constant is None else [*tensors, first_constant]
    history = train_members(parameters, member_loss, n_items=len(targets), n_members=n_members,
                            weight_decay=weight_decay, **train_kwargs)
    if split:
        with torch.no_grad():  # in place: bumps the tensor's version, so folded prediction caches rebuild
            first.index_copy_(1, columns, first_varied.detach())
            if first_constant is not None:
                first.index_copy_(1, constant, first_constant.detach())
    return history
