"""Risk measures over reward hypotheses (ruagent.risk): values, weights = dρ/dJ, annealing."""

import numpy as np
import pytest

from ruagent import risk

# name -> parameters at a typical (non-degenerate) setting
MEASURES = {
    "mean": {},
    "cvar": {"alpha": 0.3},
    "worst": {},
    "mean_std": {"lam": 0.5},
    "entropic": {"beta": 2.0},
    "broil": {"lam": 0.4, "alpha": 0.3},
}


def random_problem(rng, k, uniform):
    """Distinct member values (K,) and member probabilities (K,) or None."""
    J = rng.normal(size=k) * 3.0
    probs = None if uniform else rng.dirichlet(np.ones(k))
    return J, probs


def cvar_rockafellar_uryasev(J, probs, alpha):
    """Lower-tail CVaR by its variational form max_t { t − E[(t − J)^+] / α }, independent of risk.cvar.

    For a discrete distribution the maximum is attained at one of the atoms (Rockafellar & Uryasev, 2000).
    """
    p = np.full(len(J), 1 / len(J)) if probs is None else np.asarray(probs) / np.sum(probs)
    return max(t - p @ np.maximum(t - J, 0.0) / alpha for t in J)


@pytest.mark.parametrize("name", sorted(MEASURES))
@pytest.mark.parametrize("uniform", [True, False])
def test_weights_sum_to_one_and_are_a_distribution(name, uniform):
    rng = np.random.default_rng(0)
    for k in (1, 2, 5, 16):
        J, probs = random_problem(rng, k, uniform)
        value, weights = risk.make(name, **MEASURES[name])(J, probs)
        assert weights.shape == (k,)
        np.testing.assert_allclose(weights.sum(), 1.0, atol=1e-12)
        if name != "mean_std":  # mean_std is a risk measure only for small λ; its weights may go negative
            assert np.all(weights >= 0)
        # ρ is positively homogeneous or a weighted mean here: it lies between the worst and best member.
        assert J.min() - 1e-9 <= value <= J.max() + 1e-9


@pytest.mark.parametrize("k", [1, 3, 10])
def test_cvar_at_alpha_one_is_the_mean_and_at_one_over_k_the_worst(k):
    rng = np.random.default_rng(k)
    J = rng.normal(size=k)
    mean_value, mean_weights = risk.mean(J)
    value, weights = risk.cvar(J, alpha=1.0)
    np.testing.assert_allclose(value, mean_value, rtol=1e-12)
    np.testing.assert_allclose(weights, mean_weights, rtol=1e-12)
    worst_value, worst_weights = risk.worst(J)
    value, weights = risk.cvar(J, alpha=1.0 / k)
    np.testing.assert_allclose(value, worst_value, rtol=1e-12)
    np.testing.assert_allclose(weights, worst_weights, atol=1e-12)
    assert worst_value == J.min()


def test_cvar_fractional_alpha_k_splits_the_boundary_member():
    # K = 4, α = 0.3: αK = 1.2 members, so 1/1.2 on the worst and the remaining 0.2/1.2 on the next.
    J = np.array([3.0, 1.0, 2.0, 4.0])
    value, weights = risk.cvar(J, alpha=0.3)
    np.testing.assert_allclose(weights, [0.0, 1 / 1.2, 0.2 / 1.2, 0.0])
    np.testing.assert_allclose(value, (1.0 + 0.2 * 2.0) / 1.2)


def test_cvar_with_non_uniform_probs_is_the_tail_of_the_discrete_distribution():
    # The PG-BROIL two-hypothesis posterior: at α = 0.05 all weight lands on the 5 % member.
    probs = np.array([0.95, 0.05])
    value, weights = risk.cvar(np.array([10.0, -3.0]), alpha=0.05, probs=probs)
    np.testing.assert_allclose(weights, [0.0, 1.0])
    assert value == -3.0
    # At α = 0.1 the tail holds the 5 % member and 5 % of the likely one: weights 1/2, 1/2.
    value, weights = risk.cvar(np.array([10.0, -3.0]), alpha=0.1, probs=probs)
    np.testing.assert_allclose(weights, [0.5, 0.5])
    np.testing.assert_allclose(value, 3.5)


@pytest.mark.parametrize("alpha", [0.05, 0.17, 0.5, 0.9, 1.0])
def test_cvar_matches_the_rockafellar_uryasev_variational_form(alpha):
    rng = np.random.default_rng(1)
    for k in (2, 7, 20):
        for uniform in (True, False):
            J, probs = random_problem(rng, k, uniform)
            value, _ = risk.cvar(J, alpha=alpha, probs=probs)
            np.testing.assert_allclose(value, cvar_rockafellar_uryasev(J, probs, alpha), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", sorted(MEASURES))
@pytest.mark.parametrize("uniform", [True, False])
def test_weights_are_the_gradient_by_finite_differences(name, uniform):
    rng = np.random.default_rng(2)
    measure = risk.make(name, **MEASURES[name])
    eps = 1e-6
    for k in (2, 6):
        J, probs = random_problem(rng, k, uniform)
        _, weights = measure(J, probs)
        steps = np.eye(k) * eps
        numeric = np.array([(measure(J + step, probs)[0] - measure(J - step, probs)[0]) / (2 * eps) for step in steps])
        # cvar/worst are piecewise linear; random normal J sits away from their kinks.
        np.testing.assert_allclose(weights, numeric, atol=1e-6)


def test_mean_std_weights_follow_the_design_formula_and_fall_back_to_mean_at_zero_std():
    J = np.array([1.0, 2.0, 6.0])
    lam = 0.7
    value, weights = risk.mean_std(J, lam=lam)
    k, mu, std = len(J), J.mean(), J.std()
    np.testing.assert_allclose(weights, 1 / k - lam * (J - mu) / (k * std))
    np.testing.assert_allclose(value, mu - lam * std)
    value, weights = risk.mean_std(np.full(4, 2.5), lam=lam)
    np.testing.assert_allclose(weights, np.full(4, 0.25))
    assert value == 2.5


@pytest.mark.parametrize("uniform", [True, False])
def test_entropic_tends_to_mean_as_beta_to_zero_and_to_worst_as_beta_to_infinity(uniform):
    rng = np.random.default_rng(3)
    J, probs = random_problem(rng, 6, uniform)
    mean_value, mean_weights = risk.mean(J, probs)
    worst_value, worst_weights = risk.worst(J, probs)
    gaps = [abs(risk.entropic(J, beta, probs)[0] - mean_value) for beta in (1e-1, 1e-3, 1e-6)]
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 1e-5  # converges, and monotonically
    np.testing.assert_allclose(risk.entropic(J, 1e-6, probs)[1], mean_weights, atol=1e-5)
    gaps = [abs(risk.entropic(J, beta, probs)[0] - worst_value) for beta in (1.0, 1e2, 1e5)]
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 1e-3
    np.testing.assert_allclose(risk.entropic(J, 1e5, probs)[1], worst_weights, atol=1e-6)


def test_worst_ignores_members_with_zero_probability():
    value, weights = risk.worst(np.array([-5.0, 1.0, 2.0]), probs=np.array([0.0, 0.5, 0.5]))
    assert value == 1.0
    np.testing.assert_array_equal(weights, [0.0, 1.0, 0.0])


def test_broil_is_the_mixture_of_mean_and_cvar():
    rng = np.random.default_rng(4)
    J, probs = random_problem(rng, 8, uniform=False)
    value, weights = risk.broil(J, lam=0.3, alpha=0.2, probs=probs)
    mean_value, mean_weights = risk.mean(J, probs)
    cvar_value, cvar_weights = risk.cvar(J, 0.2, probs)
    np.testing.assert_allclose(value, 0.3 * mean_value + 0.7 * cvar_value)
    np.testing.assert_allclose(weights, 0.3 * mean_weights + 0.7 * cvar_weights)


@pytest.mark.parametrize("name", sorted(MEASURES))
def test_batched_columns_equal_one_dimensional_calls(name):
    rng = np.random.default_rng(5)
    J = rng.normal(size=(5, 7))
    probs = rng.dirichlet(np.ones(5))
    measure = risk.make(name, **MEASURES[name])
    values, weights = measure(J, probs)
    assert values.shape == (7,) and weights.shape == (5, 7)
    for column in range(7):
        value, weight = measure(J[:, column], probs)
        np.testing.assert_allclose(values[column], value, rtol=1e-12)
        np.testing.assert_allclose(weights[:, column], weight, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", sorted(MEASURES))
def test_annealing_runs_from_the_mean_to_the_target_monotonically(name):
    rng = np.random.default_rng(6)
    J, probs = random_problem(rng, 10, uniform=False)
    target = risk.make(name, **MEASURES[name])
    start = target.annealed(0.0)
    np.testing.assert_allclose(start(J, probs)[0], risk.mean(J, probs)[0], atol=1e-5)
    np.testing.assert_allclose(start(J, probs)[1], risk.mean(J, probs)[1], atol=1e-5)
    end = target.annealed(1.0)
    assert end == target
    np.testing.assert_allclose(end(J, probs)[0], target(J, probs)[0])
    # Every family here is monotone in its risk level: values fall as the level moves to the target.
    values = [target.annealed(f)(J, probs)[0] for f in np.linspace(0, 1, 11)]
    assert np.all(np.diff(values) <= 1e-9)
    assert target.annealed(-1.0) == start and target.annealed(2.0) == end  # clipped to [0, 1]


def test_worst_anneals_through_cvar_and_lands_on_worst():
    J = np.array([2.0, -1.0, 0.5])
    target = risk.make("worst")
    assert target.annealed(1.0) is target
    halfway = target.annealed(0.5)
    assert halfway.name == "cvar" and 0.4 < halfway.params["alpha"] < 0.6
    np.testing.assert_allclose(target.annealed(0.0)(J)[0], J.mean())


def test_make_fills_defaults_and_accepts_a_measure():
    measure = risk.make("cvar")
    assert measure.params == {"alpha": risk.RISK_MEASURES["cvar"][1]["alpha"][0]}
    assert risk.make(measure) is measure
    assert str(risk.make("broil", lam=0.5, alpha=0.1)) == "broil(lam=0.5, alpha=0.1)"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: risk.make("cvar", alpha=0.0), "alpha"),
        (lambda: risk.make("cvar", alpha=1.5), "alpha"),
        (lambda: risk.make("mean_std", lam=-1.0), "lam"),
        (lambda: risk.make("entropic", beta=0.0), "beta"),
        (lambda: risk.make("broil", lam=2.0), "lam"),
        (lambda: risk.make("var"), "choose one of"),
        (lambda: risk.make("cvar", beta=1.0), "takes parameters"),
        (lambda: risk.make(risk.make("mean"), alpha=0.1), "not both"),
        (lambda: risk.mean(np.zeros(3), probs=np.ones(2)), "probs"),
        (lambda: risk.mean(np.zeros(3), probs=np.array([1.0, -1.0, 1.0])), "non-negative"),
        (lambda: risk.mean(np.zeros((2, 2, 2))), "shape"),
        (lambda: risk.mean(np.zeros(0)), "K >= 1"),
    ],
)
def test_bad_input_raises_a_message_naming_the_problem(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("name", sorted(MEASURES))
@pytest.mark.parametrize("uniform", [True, False])
@pytest.mark.parametrize("alpha", [0.05, 0.3, 1.0])
def test_value_shortcut_equals_the_full_computation(name, uniform, alpha):
    rng = np.random.default_rng(7)
    params = {**MEASURES[name], **({"alpha": alpha} if "alpha" in MEASURES[name] else {})}
    measure = risk.make(name, **params)
    for k in (1, 3, 10):
        J = rng.normal(size=(k, 6))
        J[:, 0] = J[0, 0]  # one column of ties
        probs = None if uniform else rng.dirichlet(np.ones(k))
        np.testing.assert_allclose(measure.value(J, probs), measure(J, probs)[0], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(measure.value(J[:, 1], probs), measure(J[:, 1], probs)[0], rtol=1e-12)
