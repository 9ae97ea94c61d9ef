"""label_subspace: the varied / never-varied split of the label inputs equals the covariance eigh split."""

import numpy as np
import pytest
import torch

from ruagent.reward_models.label_subspace import label_subspace, varied_columns

NULL_VARIANCE = 1e-6


def _centred_labels(n: int, n_free: int, n_constant: int = 2, rank: int | None = None, seed: int = 0) -> np.ndarray:
    """(n, n_free + n_constant + 5) float64 label inputs, centred as the ensemble centres them.

    Columns, shuffled: ``n_free`` random ones (of rank ``rank``, default full), the sum of the
    first two, ``n_constant`` constant ones (values like 0.1 and 3.3 that are not exact in
    binary, as float32 features), column 0 times −2, and two nearly constant columns on either
    side of the 1e-6 threshold (variances 6e-7 and 3e-6: both varied columns, but only the
    second a varied direction).
    """
    rng = np.random.default_rng(seed)
    free = rng.normal(size=(n, rank or n_free)) @ (rng.normal(size=(rank, n_free)) if rank else np.eye(n_free))
    constant = np.broadcast_to(0.1 + 3.2 * np.arange(n_constant), (n, n_constant))
    signs = np.stack([(-1.0) ** np.arange(n), (-1.0) ** (np.arange(n) // 2)], axis=1)  # orthogonal, mean 0
    tiny = np.sqrt([6e-7, 3e-6]) * signs
    raw = np.concatenate([free, free[:, :1] + free[:, 1:2], constant, -2 * free[:, :1], tiny], axis=1)
    order = rng.permutation(raw.shape[1])  # constant and collinear columns anywhere
    features = raw[:, order].astype(np.float32).astype(np.float64)
    return features - features.mean(axis=0)


def _eigh_split(normalised: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The reference: (varied, never varied) eigenvectors of the D×D covariance, split at NULL_VARIANCE."""
    eigenvalues, eigenvectors = np.linalg.eigh(normalised.T @ normalised / len(normalised))
    return eigenvectors[:, eigenvalues > NULL_VARIANCE], eigenvectors[:, eigenvalues <= NULL_VARIANCE]


def _projection(basis: np.ndarray) -> np.ndarray:
    return basis @ basis.T


def test_constant_columns_are_exactly_zero_once_centred_and_the_others_are_found():
    normalised = _centred_labels(50, 5)
    constant = np.flatnonzero(np.all(normalised == 0, axis=0))
    assert len(constant) == 2  # exact zeros, not ~1e-17: the split relies on it
    np.testing.assert_array_equal(varied_columns(normalised), np.setdiff1d(np.arange(11), constant))


@pytest.mark.parametrize(
    ("n", "n_free", "n_constant", "rank", "branch"),
    [
        (200, 6, 2, None, "eigh, never-varied side smaller"),
        (200, 4, 2, None, "eigh, a tie: the never-varied basis is kept"),
        (200, 3, 20, None, "eigh, varied side smaller"),
        (8, 30, 2, 3, "thin svd"),  # rank 3 < n - 1, so the 6e-7 column stands out as its own direction
    ],
)
def test_subspaces_equal_the_eigh_split_of_the_covariance(n, n_free, n_constant, rank, branch):
    normalised = _centred_labels(n, n_free, n_constant, rank)
    d = normalised.shape[1]
    reference_varied, reference_null = _eigh_split(normalised)
    subspace = label_subspace(normalised, NULL_VARIANCE)
    # the branch this case is meant to exercise
    assert (len(varied_columns(normalised)) > 2 * n) == (branch == "thin svd")
    smaller_null = reference_null.shape[1] <= reference_varied.shape[1]
    assert smaller_null == branch.startswith(("eigh, never-varied side smaller", "eigh, a tie"))
    assert (subspace.never_varied is None) == (reference_null.shape[1] > reference_varied.shape[1])
    assert subspace.dim == d and subspace.n_never_varied == reference_null.shape[1]
    # same subspaces (bases of a repeated eigenvalue differ; their projections do not)
    np.testing.assert_allclose(_projection(subspace.varied), _projection(reference_varied), atol=1e-7)
    np.testing.assert_allclose(subspace.varied.T @ subspace.varied, np.eye(subspace.varied.shape[1]), atol=1e-12)
    if subspace.never_varied is not None:
        never = subspace.never_varied
        np.testing.assert_allclose(_projection(never), _projection(reference_null), atol=1e-7)
        np.testing.assert_allclose(never.T @ never, np.eye(never.shape[1]), atol=1e-12)
    # the labels vary by at most NULL_VARIANCE along each never-varied direction
    moved = np.square(subspace.project_never_varied(normalised.T)).sum(axis=0).mean()
    assert moved <= subspace.n_never_varied * NULL_VARIANCE


@pytest.mark.parametrize("n", [200, 8])
def test_projection_on_the_never_varied_directions(n):
    normalised = _centred_labels(n, 30, seed=1)  # n = 8: the thin svd branch
    subspace = label_subspace(normalised, NULL_VARIANCE)
    z = np.random.default_rng(2).normal(size=(normalised.shape[1], 4))
    _, reference_null = _eigh_split(normalised)
    np.testing.assert_allclose(subspace.project_never_varied(z), _projection(reference_null) @ z, atol=1e-7)


@pytest.mark.parametrize("n", [200, 8])
def test_samples_are_normal_on_the_never_varied_directions(n):
    """N(0, P): in the never-varied subspace, with covariance P, whichever basis is kept."""
    normalised = _centred_labels(n, 30, n_constant=2 if n == 200 else 40, seed=3)
    subspace = label_subspace(normalised, NULL_VARIANCE)
    assert (subspace.never_varied is None) == (n == 8)  # both ways of drawing
    samples = subspace.sample_never_varied(20_000, torch.Generator().manual_seed(0))
    _, reference_null = _eigh_split(normalised)
    projection = _projection(reference_null)
    np.testing.assert_allclose(projection @ samples, samples, atol=1e-9)
    np.testing.assert_allclose(samples @ samples.T / samples.shape[1], projection, atol=0.05)
