"""NoveltyPrior: zero where the labels are, spread σ_r along what they never varied, saved and checked."""

import numpy as np
import pytest
import torch

from ruagent.reward_models.novelty import NoveltyPrior

K, SIGMA = 200, 3.0


@pytest.fixture
def drawn():
    """Labels varying columns 0 and 1 and keeping column 2 constant at 5 (a one-hot never active, shifted)."""
    rng = np.random.default_rng(0)
    labels = np.column_stack([rng.normal(size=(300, 2)), np.full(300, 5.0)])
    loc, scale = labels.mean(axis=0), np.array([*labels[:, :2].std(axis=0), 0.1])  # a floor scale, as priors does
    prior = NoveltyPrior.draw((labels - loc) / scale, loc, scale, SIGMA, K, torch.Generator().manual_seed(0),
                              torch.device("cpu"), null_variance=1e-6)
    return prior, labels, scale


def test_zero_on_label_inputs_and_sigma_along_a_never_varied_column(drawn):
    prior, labels, scale = drawn
    on_labels = prior.rewards_torch(torch.as_tensor(labels[:50], dtype=torch.float32))
    assert on_labels.shape == (K, 50) and float(on_labels.abs().max()) < 1e-4
    # one normalised unit along the constant column: member terms ~ N(0, σ_r²)
    moved = labels[:1].copy()
    moved[0, 2] += scale[2]
    terms = prior.rewards_torch(torch.as_tensor(moved, dtype=torch.float32))[:, 0].numpy()
    assert abs(terms.mean()) < 0.3 * SIGMA and 0.8 * SIGMA < terms.std() < 1.2 * SIGMA


def test_shared_and_per_member_inputs_agree(drawn):
    prior, labels, _ = drawn
    x = torch.as_tensor(labels[:7] + 1.0, dtype=torch.float32)
    np.testing.assert_allclose(prior.rewards_torch(x), prior.rewards_torch(x.expand(K, 7, 3)), rtol=1e-5, atol=1e-5)


def test_tensors_round_trip_and_shapes_are_checked(drawn):
    prior, _, _ = drawn
    loaded = NoveltyPrior.from_tensors(prior.tensors(), in_dim=3, n_members=K, complement=prior.complement)
    for name, tensor in prior.tensors().items():
        assert torch.equal(loaded.tensors()[name], tensor), name
    with pytest.raises(ValueError, match="novelty_weight has shape"):
        NoveltyPrior.from_tensors(prior.tensors(), in_dim=3, n_members=K + 1, complement=prior.complement)


def test_zeros_is_no_prior():
    prior = NoveltyPrior.zeros(4, 3, torch.device("cpu"))
    assert float(prior.rewards_torch(torch.randn(5, 4)).abs().max()) == 0.0 and prior.basis.shape == (4, 0)
