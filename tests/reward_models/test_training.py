"""train_members: per-member losses, bootstrap, per-member early stopping with best-epoch restore."""

import numpy as np
import pytest
import torch

from ruagent.reward_models.training import train_members


def _problem(n_members=3, n_items=60, seed=0):
    """Each member fits a scalar to noisy targets: member k's optimum is the mean of its items."""
    generator = torch.Generator().manual_seed(seed)
    targets = torch.randn(n_items, generator=generator) * 2 + 1
    params = torch.zeros(n_members, 1, requires_grad=True)

    def member_loss(indices):  # (K, b) -> (K,)
        return (params - targets[indices]).pow(2).mean(dim=1)

    return params, targets, member_loss


def test_each_member_keeps_its_best_held_out_epoch():
    params, _, member_loss = _problem()
    held_out = []  # (indices, per-member loss) of every held-out evaluation

    def recording_loss(indices):
        loss = member_loss(indices)
        if not torch.is_grad_enabled():
            held_out.append((indices, loss.detach().clone()))
        return loss

    history = train_members(
        [params], recording_loss, n_items=60, n_members=3, epochs=40, batch_size=8, lr=0.3, patience=40,
        generator=torch.Generator().manual_seed(1), progress_bar=False,
    )
    per_epoch = torch.stack([loss for _, loss in held_out])  # (epochs, K)
    best = per_epoch.min(dim=0)
    np.testing.assert_array_equal(history["best_epoch"], best.indices.numpy())
    assert history["epochs"] == 40 and len(history["val_loss"]) == 40
    with torch.no_grad():  # the restored parameters are each member's best epoch
        np.testing.assert_allclose(member_loss(held_out[0][0]).numpy(), best.values.numpy(), rtol=1e-6)


def test_bootstrap_resamples_differ_between_members():
    params, targets, member_loss = _problem(n_members=4, n_items=40)
    train_members(
        [params], member_loss, n_items=40, n_members=4, epochs=200, batch_size=40, lr=0.1, val_fraction=0.0,
        patience=5, bootstrap=True, generator=torch.Generator().manual_seed(0), progress_bar=False,
    )
    # full-batch gradient descent converges to each member's resample mean: all different
    values = params.detach().numpy().ravel()
    assert len(np.unique(np.round(values, 4))) == 4
    assert abs(values.mean() - targets.mean().item()) < 3 * targets.std().item() / np.sqrt(40)


def test_without_bootstrap_full_batch_members_coincide():
    params, targets, member_loss = _problem(n_members=3, n_items=30)
    train_members(
        [params], member_loss, n_items=30, n_members=3, epochs=300, batch_size=30, lr=0.1, val_fraction=0.0,
        patience=5, bootstrap=False, progress_bar=False,
    )
    np.testing.assert_allclose(params.detach().numpy().ravel(), targets.mean().item(), atol=1e-4)


def test_bad_arguments_are_named():
    params, _, member_loss = _problem()
    with pytest.raises(ValueError, match="val_fraction"):
        train_members([params], member_loss, n_items=10, n_members=3, val_fraction=1.0, progress_bar=False)
    with pytest.raises(ValueError, match="no labelled data"):
        train_members([params], member_loss, n_items=0, n_members=3, progress_bar=False)
