"""Stacked MLPs: one batched op per layer equals K separate nets; chunking changes nothing."""

import numpy as np
import pytest
import torch

from ruagent.reward_models import stacked as stacked_module
from ruagent.reward_models.stacked import in_chunks, init_stacked, stacked_mlp

K, SIZES = 4, (3, 8, 5, 1)


@pytest.fixture
def tensors():
    return init_stacked(K, SIZES, torch.Generator().manual_seed(0))


def one_net(x, tensors, k):
    """Member k on its own, as nn.Linear layers would compute it (the reference, a loop on purpose)."""
    h = x
    for i in range(0, len(tensors), 2):
        h = h @ tensors[i][k] + tensors[i + 1][k][0]
        if i + 2 < len(tensors):
            h = torch.relu(h)
    return h[:, 0]


def test_shapes_and_nn_linear_bounds(tensors):
    assert [tuple(t.shape) for t in tensors] == [(K, 3, 8), (K, 1, 8), (K, 8, 5), (K, 1, 5), (K, 5, 1), (K, 1, 1)]
    for weight, fan_in in zip(tensors[::2], SIZES[:-1]):
        assert float(weight.abs().max()) <= 1 / np.sqrt(fan_in)


def test_shared_and_per_member_inputs_equal_k_separate_nets(tensors):
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(1))
    expected = torch.stack([one_net(x, tensors, k) for k in range(K)])
    torch.testing.assert_close(stacked_mlp(x, tensors), expected)
    torch.testing.assert_close(stacked_mlp(x.expand(K, 6, 3), tensors), expected)


def test_in_chunks_equals_one_pass(tensors, monkeypatch):
    x = torch.randn(23, 3, generator=torch.Generator().manual_seed(2))
    whole = stacked_mlp(x, tensors)
    monkeypatch.setattr(stacked_module, "ROWS_PER_CHUNK", 5)  # 5 chunks, the last one short
    calls = []
    chunked = in_chunks(lambda rows: calls.append(rows.shape[-2]) or stacked_mlp(rows, tensors), x)
    assert calls == [5, 5, 5, 5, 3]
    torch.testing.assert_close(chunked, whole)
