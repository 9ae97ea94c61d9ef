"""The ensemble's split forward (fixed prior part + trainable part) and its segment-summed returns.

Preference fitting trains through ``trainable_segment_returns_torch`` plus a once-per-fit
``fixed_rewards_torch``; both must give exactly the returns and gradients of summing
``member_rewards_torch`` over each segment's valid steps.
"""

import gymnasium as gym
import numpy as np
import pytest
import torch

from ruagent.data import collect_transitions
from ruagent.reward_models import ensemble as ensemble_module
from ruagent.reward_models.ensemble import EnsembleRewardModel

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
    monkeypatch.setattr(ensemble_module, "ROWS_PER_CHUNK", 7)  # S·T = 30 rows: 5 chunks, the last one short
    np.testing.assert_allclose(model.fixed_rewards_torch(features).numpy(), whole.numpy(), rtol=1e-6)
