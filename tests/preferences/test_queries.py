"""Query strategies: scores match their definitions; active choices prefer informative pairs; schedule."""

import numpy as np
import pytest

from ruagent.preferences.queries import (
    DisagreementQuery,
    InfoGainQuery,
    LabelSchedule,
    RandomQuery,
    bald_gaussian,
    bald_members,
    make_query,
    transition_scores,
)
from ruagent.preferences.segments import Segments


class FixedReturns:
    """A 'reward model' whose K members give segment n the return member_returns[k, n] (1-step segments)."""

    def __init__(self, member_returns):
        self.member_returns = np.asarray(member_returns, dtype=np.float32)
        self.n_members = self.member_returns.shape[0]
        self.member_probs = np.full(self.n_members, 1 / self.n_members)

    def predict(self, obs, action, next_obs):
        return self.member_returns[:, obs[:, 0].astype(int)]


def _pool(n):
    obs = np.arange(n, dtype=np.float32).reshape(n, 1, 1)
    return Segments(obs, np.zeros((n, 1)), obs, np.zeros((n, 1), np.float32), np.ones((n, 1), bool))


def test_disagreement_is_the_member_variance_of_the_preference_probability():
    returns = np.array([[0.0, 1.0, 5.0, 0.0], [0.0, 1.0, -5.0, 3.0], [0.0, 1.0, 0.0, -3.0]])
    index = np.array([[0, 1], [0, 2], [0, 3], [1, 2]])
    scores = DisagreementQuery(FixedReturns(returns)).scores(_pool(4), index)
    p = 1 / (1 + np.exp(-(returns[:, index[:, 0]] - returns[:, index[:, 1]])))
    np.testing.assert_allclose(scores, p.var(axis=0), rtol=1e-6)
    assert scores[0] == 0  # members agree on pair (0, 1)
    chosen = DisagreementQuery(FixedReturns(returns)).select(_pool(4), index, 2, np.random.default_rng(0))
    assert set(chosen.tolist()) == set(np.argsort(-p.var(axis=0))[:2].tolist())


def test_bald_members_and_gaussian_agree_with_monte_carlo():
    rng = np.random.default_rng(0)
    mean, var = np.array([0.0, 2.0, -1.0, 0.0]), np.array([0.01, 1.0, 4.0, 9.0])
    samples = mean + np.sqrt(var) * rng.standard_normal((200_000, 4))
    p = 1 / (1 + np.exp(-samples))
    np.testing.assert_allclose(bald_gaussian(mean, var), bald_members(p), atol=2e-3)
    # more posterior uncertainty about Δ, more to learn from the label (same mean)
    assert bald_gaussian(np.zeros(3), np.array([0.1, 1.0, 10.0])).tolist() == sorted(
        bald_gaussian(np.zeros(3), np.array([0.1, 1.0, 10.0])).tolist()
    )
    # label noise lowers the information a label carries
    assert np.all(bald_gaussian(mean, var, 0.3) < bald_gaussian(mean, var))


def test_info_gain_with_members_prefers_disagreement_over_aleatoric_coin_flips():
    # pair (0, 1): all members say Δ = 0 (a coin flip, nothing to learn); pair (2, 3): members disagree
    returns = np.array([[0.0, 0.0, 3.0, 0.0], [0.0, 0.0, -3.0, 0.0]])
    index = np.array([[0, 1], [2, 3]])
    scores = InfoGainQuery(FixedReturns(returns)).scores(_pool(4), index)
    assert scores[0] == pytest.approx(0, abs=1e-9) and scores[1] > 0.3


def test_info_gain_uses_gaussian_moments_when_given():
    def moments(segments, index):
        return np.zeros(len(index)), np.array([0.0, 5.0])

    query = InfoGainQuery(FixedReturns(np.zeros((2, 2))), delta_moments=moments)
    chosen = query.select(_pool(2), np.array([[0, 1], [1, 0]]), 1, np.random.default_rng(0))
    assert chosen.tolist() == [1]


def test_random_and_make_query():
    index = np.stack([np.zeros(100, int), np.ones(100, int)], axis=1)
    chosen = RandomQuery(seed=0).select(_pool(2), index, 10, np.random.default_rng(0))
    assert len(set(chosen.tolist())) == 10
    assert make_query("random").name == "random"
    assert make_query("disagreement", FixedReturns(np.zeros((2, 2)))).name == "disagreement"
    with pytest.raises(ValueError, match="info_gain"):
        make_query("uncertainty")


def test_transition_scores():
    rewards = np.array([[0.0, 1.0, 5.0], [0.0, -1.0, 5.0]])
    np.testing.assert_allclose(transition_scores("disagreement", member_rewards=rewards), [0, 1, 0])
    features = np.array([[1.0, 0.0], [0.0, 1.0]])
    cov = np.diag([4.0, 0.25])
    np.testing.assert_allclose(
        transition_scores("info_gain", features=features, cov=cov, noise_var=0.25), 0.5 * np.log1p([16.0, 1.0])
    )
    assert transition_scores("random", member_rewards=rewards, rng=np.random.default_rng(0)).shape == (3,)


def test_schedule_spends_the_budget_up_front_then_decaying():
    schedule = LabelSchedule(budget=200, total_timesteps=10_000, initial_fraction=0.25)
    due = [schedule.labels_due(t) for t in range(0, 10_001, 500)]
    assert due[0] == 50 and due[-1] == 200 and schedule.labels_due(50_000) == 200
    assert np.all(np.diff(due) >= 0)
    increments = np.diff(due)
    assert increments[0] > increments[-1]  # labelling slows down as training goes on
    constant = LabelSchedule(100, 1000, 0.0, decay=None)
    assert [constant.labels_due(t) for t in (0, 250, 500, 1000)] == [0, 25, 50, 100]
    with pytest.raises(ValueError, match="initial_fraction"):
        LabelSchedule(10, 100, initial_fraction=1.5)
