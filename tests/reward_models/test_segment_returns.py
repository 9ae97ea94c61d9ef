"""The ensemble's split forward (fixed prior part + trainable part) and its segment-summed returns.

Preference fitting trains through ``trainable_segment_returns_torch`` plus a once-per-fit
``fixed_rewards_torch``; both must give exactly the returns and gradients of summing
``member_rewards_torch`` over each segment's valid steps.
"""

import itertools

import gymnasium as gym
import numpy as np
import pytest
import torch

from ruagent.data import collect_transitions
from ruagent.reward_models import stacked as stacked_module
from ruagent.reward_models.ensemble import EnsembleRewardModel
from ruagent.reward_models.segment_returns import Workspace, stacked_segment_returns

K, S, T = 3, 6, 5  # members, segments, steps per segment


def _fitted_model(hidden_sizes):
    env = gym.make("CartPole-v1")
    data = collect_transitions(env, S * T, seed=0)
    model = EnsembleRewardModel(env.observation_space, env.action_space, n_members=K, hidden_sizes=hidden_sizes, seed=0)
    model.fit(data, epochs=2, progress_bar=False)  # non-trivial input and target normalisation
    return model, model.features_torch(data.obs, data.action, data.next_obs)


def _padding_mask():
    mask = torch.ones(S, T)
    mask[1, 3:] = 0  # a segment cut short by an episode end
    mask[4, 1:] = 0
    return mask


@pytest.mark.parametrize("hidden_sizes", [(16, 8), ()])
def test_segment_returns_and_gradients_equal_summing_member_rewards(hidden_sizes):
    model, features = _fitted_model(hidden_sizes)
    mask = _padding_mask()
    rewards = model.member_rewards_torch(features)  # (K, S·T)
    np.testing.assert_allclose(
        rewards.detach().numpy(),
        (model.fixed_rewards_torch(features) + model.trainable_rewards_torch(features)).detach().numpy(),
        rtol=1e-6,
        atol=1e-6,
    )
    reference = (rewards.reshape(K, S, T) * mask).sum(dim=-1)  # (K, S)
    fixed = (model.fixed_rewards_torch(features).reshape(K, S, T) * mask).sum(dim=-1)
    returns = fixed + model.trainable_segment_returns_torch(features, mask)
    assert returns.shape == (K, S)
    np.testing.assert_allclose(returns.detach().numpy(), reference.detach().numpy(), rtol=1e-5, atol=1e-5)
    weights = torch.randn(K, S, generator=torch.Generator().manual_seed(0))  # any downstream loss
    expected = torch.autograd.grad((weights * reference).sum(), model.parameters())
    actual = torch.autograd.grad((weights * returns).sum(), model.parameters())
    for e, a in zip(expected, actual):
        np.testing.assert_allclose(a.numpy(), e.numpy(), rtol=1e-4, atol=1e-5)


def test_fixed_part_has_no_gradient_and_is_chunked_without_changing_values(monkeypatch):
    model, features = _fitted_model((8,))
    whole = model.fixed_rewards_torch(features)
    assert not whole.requires_grad
    monkeypatch.setattr(stacked_module, "ROWS_PER_CHUNK", 7)  # S·T = 30 rows: 5 chunks, the last one short
    np.testing.assert_allclose(model.fixed_rewards_torch(features).numpy(), whole.numpy(), rtol=1e-6)


# ---------------------------------------------------------------- the hand-written backward itself
def _stacked_tensors(sizes, dtype=torch.float64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    tensors = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        tensors.append(torch.randn(K, fan_in, fan_out, generator=generator, dtype=dtype).requires_grad_(True))
        tensors.append((0.1 * torch.randn(K, 1, fan_out, generator=generator, dtype=dtype)).requires_grad_(True))
    return tensors


def _autograd_returns(x, mask, tensors):
    """The plain autograd formulation: every step through every layer, then masked sums."""
    h = x.expand(K, *x.shape)
    for i in range(0, len(tensors) - 2, 2):
        h = torch.relu(torch.baddbmm(tensors[i + 1], h, tensors[i]))
    rewards = torch.baddbmm(tensors[-1], h, tensors[-2]).squeeze(-1)  # (K, S·T)
    return (rewards.reshape(K, S, T) * mask).sum(dim=-1)


@pytest.mark.parametrize("hidden", [(), (4,), (5, 3), (4, 6, 3)])
def test_stacked_segment_returns_pass_gradcheck(hidden):
    x = torch.randn(S * T, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    mask = _padding_mask().double()
    tensors = _stacked_tensors((3, *hidden, 1))
    torch.testing.assert_close(stacked_segment_returns(x, mask, tensors), _autograd_returns(x, mask, tensors))
    assert torch.autograd.gradcheck(lambda *ts: stacked_segment_returns(x, mask, ts), tensors)


def test_workspace_reuse_gives_the_same_gradients_and_never_overwrites_pending_activations():
    x = torch.randn(S * T, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    mask = _padding_mask().double()
    tensors = _stacked_tensors((3, 5, 4, 1))
    weights = torch.randn(K, S, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    expected = torch.autograd.grad((weights * _autograd_returns(x, mask, tensors)).sum(), tensors)
    workspace = Workspace()
    for _ in range(2):  # the second step reuses the first step's buffers
        actual = torch.autograd.grad((weights * stacked_segment_returns(x, mask, tensors, workspace)).sum(), tensors)
        for e, a in zip(expected, actual):
            torch.testing.assert_close(a, e)
    # two forwards before their backwards (e.g. a loss over two batches): the second must not reuse the buffers
    other_x = x.flip(0).contiguous()
    first = stacked_segment_returns(x, mask, tensors, workspace)
    second = stacked_segment_returns(other_x, mask, tensors, workspace)
    actual = torch.autograd.grad((weights * (first + second)).sum(), tensors)
    reference = _autograd_returns(x, mask, tensors) + _autograd_returns(other_x, mask, tensors)
    for e, a in zip(torch.autograd.grad((weights * reference).sum(), tensors), actual):
        torch.testing.assert_close(a, e)


def test_stacked_segment_returns_refuse_a_gradient_for_the_features():
    x = torch.randn(S * T, 3, dtype=torch.float64, requires_grad=True)
    returns = stacked_segment_returns(x, _padding_mask().double(), _stacked_tensors((3, 4, 1)))
    with pytest.raises(NotImplementedError, match="features"):
        returns.sum().backward()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_segment_returns_and_gradients_on_cuda_match_the_cpu():
    x = torch.randn(S * T, 3, generator=torch.Generator().manual_seed(4))
    mask = _padding_mask()
    tensors = _stacked_tensors((3, 8, 8, 1), dtype=torch.float32)
    weights = torch.randn(K, S, generator=torch.Generator().manual_seed(5))
    expected = torch.autograd.grad((weights * stacked_segment_returns(x, mask, tensors)).sum(), tensors)
    on_gpu = [t.detach().cuda().requires_grad_(True) for t in tensors]
    workspace = Workspace()
    for _ in range(2):  # the second step reuses device buffers
        returns = stacked_segment_returns(x.cuda(), mask.cuda(), on_gpu, workspace)
        actual = torch.autograd.grad((weights.cuda() * returns).sum(), on_gpu)
        for e, a in zip(expected, actual):
            torch.testing.assert_close(a.cpu(), e, rtol=1e-4, atol=1e-5)
