"""Entry points: budgeted, actively chosen preference and reward labels before training."""

import numpy as np
import pytest

from ruagent.preferences.learn import learn_reward_from_labels, learn_reward_from_preferences, round_sizes
from ruagent.reward_models.ensemble import EnsembleRewardModel
from ruagent.reward_models.linear import BayesianLinearRewardModel

from .conftest import TRUE_WEIGHTS, LinearRewardWalk


def next_obs_features(obs, action, next_obs):
    return np.asarray(next_obs, dtype=np.float32)


def test_round_sizes_spend_exactly_the_budget():
    assert round_sizes(200, 0.25, 4) == [50, 38, 38, 37, 37]
    assert round_sizes(10, 0.0, 3) == [4, 3, 3]
    assert round_sizes(7, 0.5, 0) == [7]
    with pytest.raises(ValueError, match="initial_fraction"):
        round_sizes(10, -0.1, 2)


@pytest.mark.parametrize("query", ["random", "disagreement", "info_gain"])
def test_linear_preferences_within_budget_recover_the_reward(query):
    env = LinearRewardWalk(horizon=12)
    model = BayesianLinearRewardModel(env.observation_space, env.action_space, n_members=6, features=next_obs_features)
    model, log = learn_reward_from_preferences(
        env, model, budget=80, query=query, segment_length=5, seed=0, progress_bar=False
    )
    assert len(log) == 80 and log.n_labels == 80
    assert set(log.queries.tolist()) == ({"random"} if query == "random" else {"random", query})
    cosine = (
        model.posterior_mean[:2]
        @ TRUE_WEIGHTS
        / np.linalg.norm(model.posterior_mean[:2])
        / np.linalg.norm(TRUE_WEIGHTS)
    )
    assert cosine > 0.95, model.posterior_mean
    assert len(log.meta["history"]) == 5


def test_ensemble_session_resumes_to_the_budget(tmp_path):
    env = LinearRewardWalk(horizon=12)
    path = tmp_path / "session.npz"

    def model():
        return EnsembleRewardModel(env.observation_space, env.action_space, n_members=3, hidden_sizes=(8,), seed=0)

    kwargs = {"segment_length": 5, "seed": 0, "progress_bar": False, "fitter_kwargs": {"epochs": 5}}
    _, log = learn_reward_from_preferences(env, model(), budget=20, query="disagreement", session=path, **kwargs)
    assert len(log) == 20
    fitted, resumed = learn_reward_from_preferences(
        env, model(), budget=30, query="disagreement", session=path, **kwargs
    )
    assert len(resumed) == 30
    np.testing.assert_array_equal(resumed.labels[:20], log.labels)
    assert fitted.reward_loc is not None


@pytest.mark.parametrize("query", ["disagreement", "info_gain"])
def test_reward_labels_share_the_active_machinery(query):
    env = LinearRewardWalk(horizon=12)
    model = BayesianLinearRewardModel(env.observation_space, env.action_space, n_members=4, features=next_obs_features)
    model, labelled = learn_reward_from_labels(env, model, budget=40, query=query, seed=0, progress_bar=False)
    assert len(labelled) == 40
    np.testing.assert_allclose(labelled.reward, labelled.next_obs @ TRUE_WEIGHTS, rtol=1e-5)
    np.testing.assert_allclose(model.posterior_mean[:2], TRUE_WEIGHTS, atol=0.1)
    # active choices reach further than random ones: chosen transitions have larger features on average
    _, random_labelled = learn_reward_from_labels(
        env,
        BayesianLinearRewardModel(env.observation_space, env.action_space, features=next_obs_features),
        budget=40,
        query="random",
        seed=0,
        progress_bar=False,
    )
    assert np.abs(labelled.next_obs).mean() > np.abs(random_labelled.next_obs).mean()
