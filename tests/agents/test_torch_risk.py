"""agents/torch_risk.py: the torch risk values equal ruagent.risk's, and their gradients its weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ruagent import risk
from ruagent.agents.torch_risk import risk_value

MEASURES = [
    ("mean", {}),
    ("cvar", {"alpha": 0.1}),
    ("cvar", {"alpha": 0.37}),
    ("cvar", {"alpha": 1.0}),
    ("worst", {}),
    ("mean_std", {"lam": 0.7}),
    ("entropic", {"beta": 2.0}),
    ("broil", {"lam": 0.3, "alpha": 0.25}),
]


def _probs(kind: str, k: int, rng: np.random.Generator) -> np.ndarray | None:
    if kind == "uniform":
        return None
    probs = rng.dirichlet(np.ones(k))
    if kind == "with_zero":
        probs[rng.integers(k)] = 0.0
    return probs / probs.sum()


@pytest.mark.parametrize(("name", "params"), MEASURES)
@pytest.mark.parametrize("probs_kind", ["uniform", "weighted", "with_zero"])
@pytest.mark.parametrize("k", [1, 2, 7])
def test_value_and_gradient_match_the_numpy_risk_measure(name, params, probs_kind, k):
    rng = np.random.default_rng(k * 100 + len(name))
    measure = risk.make(name, **params)
    values = rng.normal(size=(k, 50)) * 3.0
    probs = None if k == 1 and probs_kind == "with_zero" else _probs(probs_kind, k, rng)
    expected, weights = measure(values, probs=probs)

    J = torch.tensor(values, dtype=torch.float64, requires_grad=True)
    got = risk_value(measure, J, None if probs is None else probs)
    np.testing.assert_allclose(got.detach().numpy(), expected, rtol=1e-10, atol=1e-10)
    got.sum().backward()
    # ρ is piecewise linear in J (cvar, worst): ties are measure-zero for continuous draws
    np.testing.assert_allclose(J.grad.numpy(), weights, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize(("name", "params"), MEASURES)
def test_any_batch_shape_and_float32(name, params):
    rng = np.random.default_rng(0)
    measure = risk.make(name, **params)
    values = rng.normal(size=(5, 4, 3)).astype(np.float32)  # (K, B, |A|): RiskDQN's layout
    got = risk_value(measure, torch.from_numpy(values))
    assert got.shape == (4, 3) and got.dtype == torch.float32
    expected = measure(values.reshape(5, -1).astype(np.float64))[0].reshape(4, 3)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_one_member_mean_is_the_member_itself_bit_for_bit():
    values = torch.randn(1, 100, dtype=torch.float32)
    assert torch.equal(risk_value(risk.make("mean"), values), values[0])
    assert torch.equal(risk_value(risk.make("mean"), values, np.array([1.0])), values[0])


def test_mean_std_gradient_is_finite_where_members_agree():
    J = torch.ones(4, 3, requires_grad=True)
    value = risk_value(risk.make("mean_std", lam=1.0), J)
    value.sum().backward()
    assert torch.equal(value.detach(), torch.ones(3))
    np.testing.assert_allclose(J.grad.numpy(), 0.25)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="probs must have shape"):
        risk_value(risk.make("mean"), torch.zeros(3, 2), np.ones(2) / 2)
    with pytest.raises(ValueError, match="members on axis 0"):
        risk_value(risk.make("mean"), torch.zeros(0, 2))
