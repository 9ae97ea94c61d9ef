"""train_members(shared_batches=True): one minibatch for all members, the bootstrap as integer counts."""

import math

import numpy as np
import torch

from ruagent.reward_models.training import train_members


def _weighted_problem(n_members, n_items, seed=0):
    """Member k fits a scalar to targets: its optimum is the count-weighted mean of its resample."""
    targets = torch.randn(n_items, generator=torch.Generator().manual_seed(seed)) * 2 + 1
    params = torch.zeros(n_members, 1, requires_grad=True)
    calls = []

    def member_loss(indices, weights):  # (b,), (K, b) -> (K,)
        calls.append((indices.clone(), weights.clone(), torch.is_grad_enabled()))
        squared = (params - targets[indices]).pow(2)  # (K, b)
        return (weights * squared).sum(dim=1) / weights.sum(dim=1).clamp_min(1e-12)

    return params, targets, member_loss, calls


def test_members_share_minibatches_and_weight_them_by_bootstrap_counts():
    n_members, n_items = 20, 1000
    params, _, member_loss, calls = _weighted_problem(n_members, n_items)
    train_members(
        [params], member_loss, n_items=n_items, n_members=n_members, epochs=1, batch_size=100, lr=0.1,
        val_fraction=0.0, generator=torch.Generator().manual_seed(0), progress_bar=False, shared_batches=True,
    )  # fmt: skip
    indices = torch.cat([c[0] for c in calls])
    counts = torch.cat([c[1] for c in calls], dim=1)  # (K, N): every item once per epoch, with its counts
    assert all(c[0].dim() == 1 and c[1].shape == (n_members, len(c[0])) for c in calls)
    assert sorted(indices.tolist()) == list(range(n_items))
    assert torch.equal(counts, counts.round()) and (counts.sum(dim=1) == n_items).all()
    # Efron's bootstrap as counts: an item is left out of a resample with probability (1 - 1/N)^N ≈ 1/e
    left_out = (counts == 0).float().mean().item()
    assert abs(left_out - math.exp(-1)) < 4 * math.sqrt(math.exp(-1) * (1 - math.exp(-1)) / counts.numel())
    assert len({tuple(row.tolist()) for row in counts}) == n_members  # each member its own resample


def test_full_batch_members_converge_to_their_resample_means():
    n_members, n_items = 4, 40
    params, targets, member_loss, calls = _weighted_problem(n_members, n_items)
    train_members(
        [params], member_loss, n_items=n_items, n_members=n_members, epochs=300, batch_size=n_items, lr=0.1,
        val_fraction=0.0, patience=300, generator=torch.Generator().manual_seed(0), progress_bar=False,
        shared_batches=True,
    )  # fmt: skip
    indices, counts, _ = calls[0]
    resample_means = (counts * targets[indices]).sum(dim=1) / counts.sum(dim=1)
    np.testing.assert_allclose(params.detach().numpy().ravel(), resample_means.numpy(), atol=1e-3)
    assert len(np.unique(np.round(resample_means.numpy(), 4))) == n_members


def test_without_bootstrap_every_weight_is_one_and_held_out_items_are_shared():
    params, targets, member_loss, calls = _weighted_problem(3, 30)
    train_members(
        [params], member_loss, n_items=30, n_members=3, epochs=200, batch_size=27, lr=0.1, val_fraction=0.1,
        patience=200, bootstrap=False, generator=torch.Generator().manual_seed(0), progress_bar=False,
        shared_batches=True,
    )  # fmt: skip
    assert all((weights == 1).all() for _, weights, _ in calls)
    held_out = [indices for indices, _, grad in calls if not grad]
    assert len(held_out) == 200 and all(torch.equal(h, held_out[0]) and len(h) == 3 for h in held_out)
    values = params.detach().numpy().ravel()  # same data, same steps: the members coincide
    np.testing.assert_allclose(values, values[0], rtol=1e-6)
    assert abs(values[0] - targets.mean().item()) < 3 * targets.std().item() / np.sqrt(30)
