"""The online loop: an SB3 callback that labels within budget and schedule and refits during training."""

import numpy as np
from stable_baselines3 import PPO
from stable_baselines3.common.logger import configure
from stable_baselines3.common.monitor import Monitor

from ruagent.preferences.online import PreferenceLearningCallback
from ruagent.preferences.session import LabelLog
from ruagent.reward_models.linear import BayesianLinearRewardModel
from ruagent.wrappers import RewardUncertaintyWrapper

from .conftest import LinearRewardWalk


def next_obs_features(obs, action, next_obs):
    return np.asarray(next_obs, dtype=np.float32)


def test_callback_labels_on_schedule_and_refits_the_wrapped_posterior(tmp_path):
    env = LinearRewardWalk(horizon=20)
    model = BayesianLinearRewardModel(env.observation_space, env.action_space, n_members=4, features=next_obs_features)
    wrapped = RewardUncertaintyWrapper(Monitor(env), model, mode="mean")
    agent = PPO("MlpPolicy", wrapped, n_steps=128, batch_size=64, n_epochs=1, seed=0, device="cpu")
    agent.set_logger(configure(str(tmp_path / "logs"), ["csv"]))
    callback = PreferenceLearningCallback(
        model,
        budget=40,
        query="info_gain",
        segment_length=5,
        update_every=256,
        initial_fraction=0.25,
        session=tmp_path / "labels.npz",
        seed=0,
    )
    agent.learn(total_timesteps=1024, callback=callback)

    log = LabelLog.load(tmp_path / "labels.npz")
    assert len(log) == callback.log.n_labels == 40  # the whole budget, no more
    steps = log.timesteps
    assert steps.min() == 128 and np.all(np.diff(steps) >= 0)  # asked at rollout ends, in order
    # the schedule grants labels early: by a quarter of training more than a quarter of the budget
    assert np.sum(steps <= 256) >= 10 + 1
    assert set(log.queries.tolist()) == {"info_gain"}
    # the labels came from the env's true reward and taught the wrapped model its direction
    mean = model.posterior_mean[:2]
    assert mean[0] > 0 > mean[1], mean
    progress = (tmp_path / "logs" / "progress.csv").read_text()
    assert "preferences/labels" in progress and "preferences/loss" in progress


def test_resumed_session_counts_toward_the_budget(tmp_path):
    env = LinearRewardWalk(horizon=20)
    model = BayesianLinearRewardModel(env.observation_space, env.action_space, n_members=2, features=next_obs_features)
    first = PreferenceLearningCallback(
        model, budget=12, segment_length=5, update_every=128, session=tmp_path / "l.npz", seed=0
    )
    PPO("MlpPolicy", env, n_steps=64, batch_size=64, n_epochs=1, seed=0).learn(256, callback=first)
    assert len(first.log) == 12
    model2 = BayesianLinearRewardModel(env.observation_space, env.action_space, n_members=2, features=next_obs_features)
    second = PreferenceLearningCallback(model2, budget=12, segment_length=5, session=tmp_path / "l.npz", seed=1)
    PPO("MlpPolicy", env, n_steps=64, batch_size=64, n_epochs=1, seed=0).learn(128, callback=second)
    assert len(second.log) == 12  # nothing more to ask
    np.testing.assert_allclose(model2.posterior_mean, model.posterior_mean)  # refitted on the resumed labels


def test_labels_asked_before_training_are_not_counted_twice_by_the_linear_posterior(tmp_path):
    from ruagent.preferences.fit import LinearPreferenceFitter
    from ruagent.preferences.learn import learn_reward_from_preferences

    env = LinearRewardWalk(horizon=20)

    def fresh_model():
        space = env.observation_space
        return BayesianLinearRewardModel(space, env.action_space, n_members=2, features=next_obs_features)

    model = fresh_model()
    learn_reward_from_preferences(env, model, budget=10, segment_length=5, session=tmp_path / "l.npz", seed=0,
                                  progress_bar=False)
    callback = PreferenceLearningCallback(model, budget=20, segment_length=5, update_every=64,
                                          initial_fraction=0.5, session=tmp_path / "l.npz", seed=0)
    PPO("MlpPolicy", RewardUncertaintyWrapper(Monitor(env), model), n_steps=64, batch_size=64, n_epochs=1,
        seed=0).learn(256, callback=callback)
    log = LabelLog.load(tmp_path / "l.npz")
    assert len(log) == 20 and np.sum(log.timesteps < 0) == 10 and log.timesteps.max() > 0
    pairs, labels = log.labelled()
    # the reference: the up-front Laplace posterior (first 10 labels) as the prior of the last 10
    reference = fresh_model()
    LinearPreferenceFitter(reference).fit(pairs[np.arange(10)], labels[:10])
    fitter = LinearPreferenceFitter(reference)
    fitter.n_absorbed = 10
    fitter.fit(pairs, labels)
    np.testing.assert_allclose(model.posterior_precision, reference.posterior_precision, rtol=1e-5)
    np.testing.assert_allclose(model.posterior_mean, reference.posterior_mean, rtol=1e-4, atol=1e-6)
    # counting the first 10 twice gives a visibly tighter posterior: the check above can tell
    doubled = fresh_model()
    LinearPreferenceFitter(doubled).fit(pairs[np.arange(10)], labels[:10])
    LinearPreferenceFitter(doubled).fit(pairs, labels)
    assert not np.allclose(doubled.posterior_precision, model.posterior_precision, rtol=1e-2)
