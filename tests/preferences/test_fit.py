"""Fitting posteriors to preferences: the batched ensemble and the Laplace linear model recover the truth."""

import numpy as np
import pytest
import torch

from ruagent.preferences.fit import EnsemblePreferenceFitter, LinearPreferenceFitter, make_fitter
from ruagent.preferences.labellers import SyntheticLabeller
from ruagent.preferences.segments import collect_segments, make_pairs, member_segment_returns
from ruagent.reward_models.ensemble import EnsembleRewardModel
from ruagent.reward_models.linear import BayesianLinearRewardModel

from .conftest import TRUE_WEIGHTS, LinearRewardWalk


def next_obs_features(obs, action, next_obs):
    return np.asarray(next_obs, dtype=np.float32)


def _labelled(n_pairs, seed):
    env = LinearRewardWalk(horizon=12)
    pairs = make_pairs(collect_segments(env, 120, 5, seed=seed), n_pairs, np.random.default_rng(seed))
    return env, pairs, SyntheticLabeller(temperature=1.0, seed=seed).label(pairs)


def test_laplace_linear_model_recovers_the_true_weights():
    env, pairs, labels = _labelled(300, seed=0)
    model = BayesianLinearRewardModel(
        env.observation_space, env.action_space, n_members=8, features=next_obs_features, seed=0
    )
    fitter = make_fitter(model)
    assert isinstance(fitter, LinearPreferenceFitter)
    metrics = fitter.fit(pairs[:150], labels[:150])
    metrics = fitter.fit(pairs, labels)  # online: adds the new 150
    assert metrics["n_labels"] == 300 and metrics["accuracy"] > 0.8
    mean, sd = model.posterior_mean, np.sqrt(np.diag(model.posterior_cov))
    np.testing.assert_allclose(model.posterior_precision, fitter.posterior.precision)
    # weights on (x, y): the truth within 3 posterior sds; the bias weight is unidentified (equal lengths cancel)
    assert np.all(np.abs(mean[:2] - TRUE_WEIGHTS) < 3 * sd[:2]), (mean, sd)
    # members are posterior draws: they spread about the mean like the posterior
    assert model.predict(pairs.obs[:, 0, 0], pairs.actions[:, 0, 0], pairs.next_obs[:, 0, 0]).shape == (8, 300)


def test_ensemble_learns_preferences_in_one_batched_forward(monkeypatch):
    env, pairs, labels = _labelled(200, seed=1)
    model = EnsembleRewardModel(env.observation_space, env.action_space, n_members=4, hidden_sizes=(16, 16), seed=0)
    shapes = []
    original = model.trainable_segment_returns_torch

    def recording(features, mask, workspace=None):
        shapes.append(tuple(features.shape))
        return original(features, mask, workspace)

    monkeypatch.setattr(model, "trainable_segment_returns_torch", recording)
    fitter = EnsemblePreferenceFitter(model, epochs=40, batch_size=32, seed=0)
    metrics = fitter.fit(pairs, labels)
    assert metrics["n_labels"] == 200 and metrics["accuracy"] > 0.8
    # every training step evaluates all K members on ONE shared batch of transitions (b·2·T, D)
    assert shapes and all(len(s) == 2 and s[0] <= 32 * 2 * pairs.segment_length for s in shapes)
    # on fresh pairs the ensemble mean ranks segments like the true reward
    _, test_pairs, _ = _labelled(200, seed=2)
    returns = member_segment_returns(model, test_pairs).mean(axis=0)
    truth = test_pairs.env_returns()
    agree = np.mean(np.sign(returns[:, 0] - returns[:, 1]) == np.sign(truth[:, 0] - truth[:, 1]))
    assert agree > 0.85, agree
    assert model.reward_loc is not None and model.reward_loc.shape == (4,)


def test_skipped_labels_do_not_train_and_wrong_families_are_refused():
    env, pairs, labels = _labelled(20, seed=3)
    model = EnsembleRewardModel(env.observation_space, env.action_space, n_members=2, hidden_sizes=(8,), seed=0)
    metrics = EnsemblePreferenceFitter(model, epochs=2).fit(pairs, np.full(20, np.nan, dtype=np.float32))
    assert metrics["n_labels"] == 0
    with pytest.raises(ValueError, match="labels must have shape"):
        EnsemblePreferenceFitter(model, epochs=2).fit(pairs, labels[:3])
    with pytest.raises(TypeError, match="ensemble"):
        make_fitter(object())


def test_preferences_refine_a_regression_fitted_ensemble_without_renormalising():
    from ruagent.data import collect_transitions

    env, pairs, labels = _labelled(40, seed=4)
    model = EnsembleRewardModel(env.observation_space, env.action_space, n_members=2, hidden_sizes=(8,), seed=0)
    model.fit(collect_transitions(env, 200, seed=0), epochs=3, progress_bar=False)
    loc, scale = model.input_loc.clone(), model.input_scale.clone()
    EnsemblePreferenceFitter(model, epochs=2, seed=0).fit(pairs, labels)
    assert (model.input_loc == loc).all() and (model.input_scale == scale).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_ensemble_learns_preferences_on_cuda():
    env, pairs, labels = _labelled(200, seed=1)
    model = EnsembleRewardModel(
        env.observation_space, env.action_space, n_members=4, hidden_sizes=(16, 16), device="cuda", seed=0
    )
    metrics = EnsemblePreferenceFitter(model, epochs=40, batch_size=32, seed=0).fit(pairs, labels)
    assert metrics["n_labels"] == 200 and metrics["accuracy"] > 0.8
    assert all(p.is_cuda for p in model.parameters())
    _, test_pairs, _ = _labelled(200, seed=2)
    returns = member_segment_returns(model, test_pairs).mean(axis=0)  # prediction runs on CPU copies
    truth = test_pairs.env_returns()
    assert np.mean(np.sign(returns[:, 0] - returns[:, 1]) == np.sign(truth[:, 0] - truth[:, 1])) > 0.85


def test_linear_fit_refuses_fewer_pairs_than_its_posterior_already_holds():
    env, pairs, labels = _labelled(6, seed=4)
    model = BayesianLinearRewardModel(env.observation_space, env.action_space, n_members=2, features="transition")
    fitter = LinearPreferenceFitter(model)
    fitter.fit(pairs, labels)
    with pytest.raises(ValueError, match="already holds 6 labels"):
        fitter.fit(pairs[np.arange(3)], labels[:3])


def test_laplace_fit_of_an_undeclared_prior_uses_bradley_terry_units(caplog):
    env, pairs, labels = _labelled(40, seed=5)
    model = BayesianLinearRewardModel(env.observation_space, env.action_space, n_members=2, features=next_obs_features)
    assert model.prior_std is None
    fitter = LinearPreferenceFitter(model)
    with caplog.at_level("WARNING", logger="ruagent"):
        fitter.fit(pairs, labels)
    assert model.prior_std == 1.0 and "Bradley-Terry" in caplog.text
    np.testing.assert_allclose(fitter.posterior.prior_precision, np.eye(model.basis_dim))  # N(0, 1² I)
    np.testing.assert_allclose(model.posterior_precision, fitter.posterior.precision)


def test_laplace_fit_after_reward_labels_keeps_their_prior_scale(caplog):
    from ruagent.data import collect_transitions

    env, pairs, labels = _labelled(40, seed=6)
    model = BayesianLinearRewardModel(env.observation_space, env.action_space, n_members=2, features=next_obs_features)
    model.fit(collect_transitions(env, 50, seed=0))
    scale, prior_precision = model.prior_std, model.posterior_precision
    fitter = LinearPreferenceFitter(model)
    with caplog.at_level("WARNING", logger="ruagent"):
        fitter.fit(pairs, labels)
    assert model.prior_std == scale and "Bradley-Terry" not in caplog.text
    np.testing.assert_array_equal(fitter.posterior.prior_precision, prior_precision)
