"""ruagent.reward_models.folded: the folded forward against per-net arithmetic, and the novelty variance both ways."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from ruagent.reward_models.folded import FoldedEnsemble

D, K, H, B = 6, 3, 4, 5


def _folded(rng: np.random.Generator, basis: np.ndarray, complement: bool, hidden: bool = True) -> FoldedEnsemble:
    width = H + 1 if hidden else 1  # H hidden units and the constant unit, or the output
    columns = 2 * K * width + K
    first_weight = rng.standard_normal((D, columns)).astype(np.float32)
    first_bias = rng.standard_normal((1, columns)).astype(np.float32)
    layers = (rng.standard_normal((2 * K, width, 1)).astype(np.float32),) if hidden else ()
    scale, shift = rng.uniform(0.5, 2.0, D), rng.standard_normal(D)
    return FoldedEnsemble(
        first_weight=first_weight,
        first_bias=first_bias,
        layers=layers,
        n_net_columns=2 * K * width,
        novelty_complement=complement,
        basis=basis,
        scaled_basis=scale[:, None] * basis,
        projected_shift=shift @ basis,
        novelty_scale=scale,
        novelty_shift=shift,
    )


def _per_net_reference(folded: FoldedEnsemble, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each of the 2K nets and the novelty prior computed on its own, in float64."""
    w, b = folded.first_weight.astype(np.float64), folded.first_bias.astype(np.float64)
    width = folded.n_net_columns // (2 * K)
    outputs = []
    for net in range(2 * K):
        columns = slice(net * width, (net + 1) * width)
        h = x @ w[:, columns] + b[:, columns]
        if folded.has_hidden:
            (out_w,) = folded.layers
            h = np.maximum(h, 0.0) @ out_w[net].astype(np.float64)
        outputs.append(h[:, 0])
    outputs = np.stack(outputs)
    nets = outputs[:K] + outputs[K:]
    novelty = (x @ w[:, folded.n_net_columns :] + b[:, folded.n_net_columns :]).T
    return nets + novelty, nets


@pytest.mark.parametrize("hidden", [True, False])
def test_numpy_and_torch_forwards_equal_the_nets_computed_one_by_one(hidden):
    rng = np.random.default_rng(0)
    folded = _folded(rng, np.zeros((D, 0)), complement=False, hidden=hidden)
    x = rng.standard_normal((B, D)).astype(np.float32)
    members, nets = folded.forward_numpy(x, K)
    reference_members, reference_nets = _per_net_reference(folded, x.astype(np.float64))
    assert members.shape == nets.shape == (K, B)
    np.testing.assert_allclose(members, reference_members, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(nets, reference_nets, rtol=1e-5, atol=1e-5)
    stacked = folded.forward_torch(torch.from_numpy(x), K).numpy()  # (2K, B): nets, then novelty
    np.testing.assert_allclose(stacked[:K], reference_nets, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(stacked[:K] + stacked[K:], reference_members, rtol=1e-5, atol=1e-5)


def test_novelty_variance_is_the_squared_projection_from_either_basis():
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.standard_normal((D, D)))
    never_varied, varied = q[:, :2], q[:, 2:]  # P projects on never_varied
    direct = _folded(rng, never_varied, complement=False)
    via_complement = _folded(rng, varied, complement=True)
    # the same u = x * scale + shift for both
    via_complement = dataclasses.replace(
        via_complement, novelty_scale=direct.novelty_scale, novelty_shift=direct.novelty_shift
    )
    x = rng.standard_normal((B, D)).astype(np.float32)
    u = x.astype(np.float64) * direct.novelty_scale + direct.novelty_shift
    expected = np.square(u @ never_varied).sum(axis=1)
    np.testing.assert_allclose(direct.novelty_variance(x), expected, rtol=1e-10)
    np.testing.assert_allclose(via_complement.novelty_variance(x), expected, rtol=1e-9, atol=1e-12)
    # no never-varied direction: no novelty variance; every direction never varied: all of ‖u‖²
    np.testing.assert_array_equal(_folded(rng, np.zeros((D, 0)), complement=False).novelty_variance(x), 0.0)
    everything = dataclasses.replace(via_complement, basis=np.zeros((D, 0)))
    np.testing.assert_allclose(everything.novelty_variance(x), np.square(u).sum(axis=1), rtol=1e-12)
