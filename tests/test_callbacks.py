"""ruagent.callbacks: the TensorBoard tags written by a short real training, and their values."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from tensorboard.backend.event_processing.event_accumulator import HISTOGRAMS, EventAccumulator

import ruagent  # noqa: F401  (registers the testbeds)
from ruagent.callbacks import GoodhartEvalCallback, RewardUncertaintyCallback, log_posterior_fit
from ruagent.envs.two_hypothesis_cartpole import LEFT_REWARDS, RIGHT_REWARDS, TwoHypothesisCartPolePosterior
from ruagent.plots import read_scalars
from ruagent.rollouts import run_episodes
from ruagent.wrappers import VecRewardUncertaintyWrapper

ENV_ID = "ruagent/TwoHypothesisCartPole-v0"
TRAINING_TAGS = (
    "ruagent/true_return",
    "ruagent/proxy_return",
    "ruagent/goodhart_gap",
    "ruagent/side_effect_rate",
    "ruagent/reward_std_mean",
)
EVAL_TAGS = ("eval/true_return", "eval/proxy_return", "eval/goodhart_gap", "eval/side_effect_rate",
             "eval/reward_std_mean")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """PPO for 512 steps on the test variant through the posterior wrapper, with both callbacks."""
    log_dir = tmp_path_factory.mktemp("tb")
    posterior = TwoHypothesisCartPolePosterior()
    venv = VecRewardUncertaintyWrapper(
        make_vec_env(ENV_ID, n_envs=2, seed=0, env_kwargs={"variant": "test"}), posterior, mode="mean", seed=0
    )
    eval_env = gym.make(ENV_ID, variant="test")
    goodhart = GoodhartEvalCallback(eval_env, reward_model=posterior, eval_freq=256, n_eval_episodes=2, seed=3)
    model = PPO("MlpPolicy", venv, n_steps=64, batch_size=64, n_epochs=1, seed=0, tensorboard_log=str(log_dir))
    model.learn(512, callback=[RewardUncertaintyCallback(reward_model=posterior), goodhart], tb_log_name="agent")
    run_dir = log_dir / "agent_1"
    return model, goodhart, eval_env, posterior, read_scalars(run_dir), run_dir


def test_training_tags_are_written_with_finite_values(trained):
    _, _, _, _, scalars, run_dir = trained
    for tag in TRAINING_TAGS + EVAL_TAGS:
        assert tag in scalars, f"{tag} missing; have {sorted(scalars)}"
        _, values = scalars[tag]
        assert len(values) >= 1 and np.isfinite(values).all(), (tag, values)
    histograms = EventAccumulator(str(run_dir), size_guidance={HISTOGRAMS: 0})
    histograms.Reload()
    assert "ruagent/reward_std" in histograms.Tags()[HISTOGRAMS]
    last = histograms.Histograms("ruagent/reward_std")[-1].histogram_value
    assert last.num > 0 and math.isfinite(last.sum) and last.min >= 0.0


def test_true_return_is_monitors_and_gap_is_proxy_minus_true(trained):
    _, _, _, _, scalars, _ = trained
    # Monitor sits inside the wrapper, so SB3's own ep_rew_mean is the true return too.
    np.testing.assert_allclose(scalars["ruagent/true_return"][1], scalars["rollout/ep_rew_mean"][1], rtol=1e-5)
    np.testing.assert_allclose(
        scalars["ruagent/goodhart_gap"][1],
        scalars["ruagent/proxy_return"][1] - scalars["ruagent/true_return"][1],
        rtol=1e-4, atol=1e-4,
    )


def test_proxy_return_is_the_posterior_mean_summed_over_episodes(trained):
    _, _, _, posterior, scalars, _ = trained
    # Posterior-mean reward per step lies between the left and the right rate (1.0 and 1.8).
    left_rate, right_rate = posterior.member_probs @ LEFT_REWARDS, posterior.member_probs @ RIGHT_REWARDS
    proxy, length = scalars["ruagent/proxy_return"][1], scalars["rollout/ep_len_mean"][1]
    assert np.all(proxy >= left_rate * length - 1e-3) and np.all(proxy <= right_rate * length + 1e-3)
    assert np.all((scalars["ruagent/side_effect_rate"][1] >= 0) & (scalars["ruagent/side_effect_rate"][1] <= 1))


def test_goodhart_eval_points_match_a_fresh_evaluation(trained):
    model, goodhart, eval_env, posterior, scalars, _ = trained
    steps = [row[0] for row in goodhart.evaluations]
    assert steps == sorted(steps) and steps[0] >= 256 and steps[-1] == model.num_timesteps
    np.testing.assert_array_equal(scalars["eval/true_return"][0], steps)
    # The last point was measured on the final policy with a fixed seed: rerunning it agrees.
    again = run_episodes(eval_env, model, 2, reward_model=posterior, seed=3)
    assert goodhart.evaluations[-1][1] == pytest.approx(again.true_returns().mean())
    assert goodhart.evaluations[-1][2] == pytest.approx(again.proxy_returns().mean())


def test_unwrapped_training_env_warns_once():
    model = PPO("MlpPolicy", make_vec_env("CartPole-v1", n_envs=1, seed=0), n_steps=32, batch_size=32, n_epochs=1)
    with pytest.warns(UserWarning, match="not wrapped by ruagent.RewardUncertaintyWrapper") as record:
        model.learn(64, callback=RewardUncertaintyCallback())
    assert sum("RewardUncertaintyCallback" in str(w.message) for w in record) == 1


def test_goodhart_eval_callback_refuses_bad_arguments():
    with pytest.raises(TypeError, match="not a VecEnv"):
        GoodhartEvalCallback(make_vec_env("CartPole-v1", n_envs=1), reward_model=TwoHypothesisCartPolePosterior())
    with pytest.raises(ValueError, match="pass reward_model="):
        GoodhartEvalCallback(gym.make("CartPole-v1"))
    with pytest.raises(ValueError, match="eval_freq"):
        GoodhartEvalCallback(gym.make("CartPole-v1"), TwoHypothesisCartPolePosterior(), eval_freq=0)


def test_goodhart_eval_callback_finds_the_posterior_in_the_wrapper_chain():
    from stable_baselines3.common.monitor import Monitor

    from ruagent.wrappers import RewardUncertaintyWrapper

    posterior = TwoHypothesisCartPolePosterior()
    wrapped = RewardUncertaintyWrapper(Monitor(gym.make(ENV_ID, variant="test")), posterior)
    assert GoodhartEvalCallback(wrapped).reward_model is posterior


def test_log_posterior_fit_writes_each_epoch(tmp_path):
    history = {"train_loss": [3.0, 2.0, 1.5], "val_loss": [3.5, 2.5]}
    log_posterior_fit(tmp_path, history, n_labels=120)
    scalars = read_scalars(tmp_path)
    np.testing.assert_array_equal(scalars["posterior/train_loss"][0], [0, 1, 2])
    np.testing.assert_allclose(scalars["posterior/train_loss"][1], history["train_loss"])
    np.testing.assert_allclose(scalars["posterior/val_loss"][1], history["val_loss"])
    assert set(scalars["posterior/n_labels"][1]) == {120}
