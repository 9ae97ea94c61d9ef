"""Segment returns of stacked ReLU MLPs, with a hand-written backward: the hot loop of preference fitting.

Bradley–Terry training (:mod:`ruagent.preferences.fit`) needs, per step, the returns
``R_k(σ) = Σ_t m_t f_k(x_t)`` of S segments of T steps under K member MLPs ``f_k`` that share
the input batch, and their gradients. Autograd does this correctly but, at these sizes
(S·T of a few thousand rows, widths 32–64), spends as long on allocation and element-wise
passes as on the matmuls: every ReLU keeps a mask, every backward allocates its outputs.
Here the forward keeps only the post-ReLU activations, written into a reusable
:class:`Workspace`, and the backward is the chain rule written out:

* the output layer is linear, so it is applied to the segments' summed last activations
  (``Σ_t m_t (h_t·w + b) = (Σ_t m_t h_t)·w + b·Σ_t m_t``);
* padded steps (m_t = 0) have their last activations zeroed in the forward, so the
  ReLU-backward of the last layer (``threshold_backward``: the gradient where the output is
  positive) also masks them, in the same pass;
* each hidden layer's gradient is one ``bmm`` into the workspace and one in-place
  ``threshold_backward``; weight gradients are ``bmm``s of the saved activations.

Measured on 2 CPU threads (K=5, minibatches of 64 pairs of 25-step segments): a training
step alone 2–3x as fast as the autograd formulation; whole fits 1.3–2.2x the pairs/s of the
same fitter with autograd segment returns (``bench/preferences.py``, same run; numbers in
docs/preferences.md). ``tests/reward_models/test_segment_returns.py`` checks it against
autograd and with ``gradcheck``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.autograd.function import once_differentiable

__all__ = ["Workspace", "stacked_segment_returns"]

_threshold_backward = torch.ops.aten.threshold_backward


class Workspace:
    """Reusable activation buffers for :func:`stacked_segment_returns` (one per training loop).

    Buffers are views into flat tensors that only grow, so minibatches of any size reuse
    them. While a forward's activations wait for their backward, the workspace is busy and a
    second forward allocates fresh tensors instead of overwriting them.
    """

    def __init__(self) -> None:
        self._flat: dict[int, torch.Tensor] = {}
        self.busy = False

    def buffer(self, slot: int, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """An uninitialised tensor of ``shape`` with ``like``'s dtype and device, reused per ``slot``."""
        numel = 1
        for size in shape:
            numel *= size
        flat = self._flat.get(slot)
        if flat is None or flat.numel() < numel or flat.dtype != like.dtype or flat.device != like.device:
            flat = self._flat[slot] = torch.empty(numel, dtype=like.dtype, device=like.device)
        return flat[:numel].view(shape)


def _forward(
    x: torch.Tensor, mask: torch.Tensor, tensors: Sequence[torch.Tensor], workspace: Workspace | None
) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
    """Returns (K, S), the post-ReLU activations [(K, S·T, H_i)], and the summed last layer (K, S, H)."""
    s, t = mask.shape
    weight_out, bias_out = tensors[-2], tensors[-1]  # (K, H, 1), (K, 1, 1)
    k = weight_out.shape[0]
    h = x.expand(k, *x.shape)  # members share the input batch: a view
    activations = []
    for i in range(0, len(tensors) - 2, 2):
        weight, bias = tensors[i], tensors[i + 1]
        shape = (k, s * t, weight.shape[-1])
        out = workspace.buffer(len(activations), shape, x) if workspace is not None else None
        h = torch.baddbmm(bias, h, weight, out=out).relu_()
        activations.append(h)
    if activations:
        last = h.reshape(k, s, t, -1)
        if not bool(mask.all()):
            # zero padded steps: their sum is then a plain sum, and threshold_backward masks them too
            last.mul_(mask.reshape(1, s, t, 1))
        summed = last.sum(dim=2)
    else:  # linear members: the input itself, masked, shared by all members
        summed = (x.reshape(s, t, -1) * mask.unsqueeze(-1)).sum(dim=1).expand(k, s, -1)
    returns = torch.bmm(summed, weight_out).squeeze(-1) + bias_out.reshape(k, 1) * mask.sum(dim=1)
    return returns, activations, summed


class _SegmentReturns(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, mask, workspace, *tensors):
        returns, activations, summed = _forward(x, mask, tensors, workspace)
        ctx.save_for_backward(x, mask, summed, *tensors, *activations)
        ctx.n_tensors = len(tensors)
        ctx.workspace = workspace
        return returns

    @staticmethod
    @once_differentiable  # the hand-written backward is not itself differentiable
    def backward(ctx, grad_returns):
        if ctx.needs_input_grad[0]:
            raise NotImplementedError("stacked_segment_returns does not differentiate with respect to the features")
        x, mask, summed, *rest = ctx.saved_tensors
        tensors, activations = rest[: ctx.n_tensors], rest[ctx.n_tensors :]
        k, s = grad_returns.shape
        t = mask.shape[1]
        weight_out = tensors[-2]
        grads: list[torch.Tensor | None] = [None] * len(tensors)
        grads[-2] = torch.bmm(summed.transpose(1, 2), grad_returns.unsqueeze(-1))  # (K, H, 1)
        grads[-1] = (grad_returns * mask.sum(dim=1)).sum(dim=1).reshape(k, 1, 1)
        if activations:
            grad_summed = grad_returns.unsqueeze(-1) * weight_out.reshape(k, 1, -1)  # (K, S, H)
            last = activations[-1]
            grad = _threshold_backward(  # (K, S·T, H): ∂/∂ pre-activation of the last hidden layer
                grad_summed.unsqueeze(2).expand(k, s, t, -1), last.reshape(k, s, t, -1), 0
            ).reshape(last.shape)
            for layer in range(len(activations) - 1, -1, -1):
                below = activations[layer - 1] if layer > 0 else x.expand(k, *x.shape)
                grads[2 * layer] = torch.bmm(below.transpose(1, 2), grad)  # (K, fan_in, fan_out)
                grads[2 * layer + 1] = grad.sum(dim=1, keepdim=True)
                if layer > 0:
                    weight = tensors[2 * layer]
                    out = ctx.workspace.buffer(-1 - layer, below.shape, grad) if ctx.workspace is not None else None
                    grad = torch.bmm(grad, weight.transpose(1, 2), out=out)
                    _threshold_backward.grad_input(grad, below, 0, grad_input=grad)
        if ctx.workspace is not None:
            ctx.workspace.busy = False
        return (None, None, None, *grads)


def stacked_segment_returns(
    x: torch.Tensor, mask: torch.Tensor, tensors: Sequence[torch.Tensor], workspace: Workspace | None = None
) -> torch.Tensor:
    """Member returns of segments under K stacked ReLU MLPs, differentiable in ``tensors``.

    :param x: (S·T, D) inputs of S segments of T steps, shared by all members (no gradient).
    :param mask: (S, T) 1.0 on valid steps, 0.0 on padding (values other than 0 and 1 are not supported).
    :param tensors: ``[W_0, b_0, ..., W_out, b_out]`` with W_i (K, fan_in, fan_out), b_i (K, 1, fan_out)
        and a (K, H, 1) output layer; no hidden layer makes each member linear.
    :param workspace: buffers reused between calls (see :class:`Workspace`); None allocates.
    :return: (K, S) returns ``Σ_t m_t f_k(x_t)``.
    """
    s, t = mask.shape
    assert x.dim() == 2 and x.shape[0] == s * t, (x.shape, mask.shape)
    assert len(tensors) >= 2 and len(tensors) % 2 == 0 and tensors[-2].shape[-1] == 1, [w.shape for w in tensors]
    if workspace is not None and workspace.busy:
        workspace = None  # a forward's activations still wait for their backward: do not overwrite them
    if not (torch.is_grad_enabled() and any(w.requires_grad for w in tensors)):
        with torch.no_grad():
            return _forward(x, mask, tensors, workspace)[0]
    if workspace is not None:
        workspace.busy = True
    return _SegmentReturns.apply(x, mask, workspace, *tensors)
