"""Training on the columns the labels varied is the same fit as training on all columns."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from ruagent.reward_models import EnsembleRewardModel
from ruagent.reward_models.training import train_members

from .conftest import obs_only

#: columns 1, 4 and 6 are constant in the labels (at values not exact in binary, so centring must be exact)
CONSTANT = {1: 0.1, 4: 3.3, 6: 0.0}
TRAIN = {"epochs": 12, "batch_size": 32, "lr": 3e-3, "val_fraction": 0.2, "patience": 5}


def _labels(n: int = 160, d: int = 8):
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(n, d)).astype(np.float32)
    for column, value in CONSTANT.items():
        obs[:, column] = value
    reward = (np.sin(obs[:, 0]) + obs[:, 2] * obs[:, 3]).astype(np.float32)
    return obs, np.zeros(n, dtype=np.int64), obs, reward


def _model(weight_decay: float) -> EnsembleRewardModel:
    space = gym.spaces.Box(-np.inf, np.inf, (8,), dtype=np.float32)
    return EnsembleRewardModel(space, gym.spaces.Discrete(1), n_members=4, hidden_sizes=(16, 16), features=obs_only,
                               weight_decay=weight_decay, seed=3)


def _fit_on_all_columns(model: EnsembleRewardModel, labels) -> dict:
    """The reference: every member's full forward over all D columns in every step (the fit as it was)."""
    obs, action, next_obs, rewards = labels
    features = model.features(obs, action, next_obs)
    model.set_normalisation(features, rewards)
    x, y = torch.as_tensor(features), torch.as_tensor(rewards)

    def member_loss(indices):
        return ((model.member_rewards_torch(x[indices]) - y[indices]) / model.target_scale).pow(2).mean(dim=1)

    return train_members(model.parameters(), member_loss, n_items=len(y), n_members=model.n_members,
                         weight_decay=model.weight_decay, generator=model._generator, progress_bar=False, **TRAIN)


@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_training_on_varied_columns_gives_the_fit_on_all_columns(weight_decay):
    labels = _labels()
    fast, reference = _model(weight_decay), _model(weight_decay)
    untrained = _model(weight_decay)
    untrained.features(*labels[:3])  # builds the nets (callable features: width known on first call)
    initial_first = untrained.parameters()[0].detach().clone()
    history = fast.fit(labels, progress_bar=False, **TRAIN)
    reference_history = _fit_on_all_columns(reference, labels)
    assert history["epochs"] == reference_history["epochs"] and history["best_epoch"] == reference_history["best_epoch"]
    np.testing.assert_allclose(history["val_loss"], reference_history["val_loss"], rtol=1e-5)
    for trained, expected in zip(fast.parameters(), reference.parameters()):
        np.testing.assert_allclose(trained.detach().numpy(), expected.detach().numpy(), rtol=1e-4, atol=1e-6)
    constant_rows = initial_first[:, list(CONSTANT)]
    moved = not torch.equal(fast.parameters()[0][:, list(CONSTANT)], constant_rows)
    assert moved == (weight_decay > 0)  # only weight decay moves the first layer's rows of unvaried columns
    assert not torch.equal(fast.parameters()[0][:, 0], initial_first[:, 0])  # trained rows were written back
    # predictions agree on and off the labels (where the constant columns change)
    off = np.random.default_rng(1).normal(size=(32, 8)).astype(np.float32) * 2
    for x in (labels[0][:32], off):
        action = np.zeros(len(x), dtype=np.int64)
        np.testing.assert_allclose(fast.predict(x, action, x), reference.predict(x, action, x), rtol=1e-4, atol=1e-5)
