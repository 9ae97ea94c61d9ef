"""KLPPO (agents/kl_ppo): SB3-style run, save/load, determinism, PPO at β = 0, the penalised reward,
and the KL-regularised optimum π* ∝ π_ref·exp(r/β) on a bandit."""

from __future__ import annotations

import zipfile

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from ruagent.agents import KLPPO
from ruagent.agents.kl_ppo.kl_ppo import DictKLRolloutBuffer, KLRolloutBuffer
from ruagent.wrappers import VecRewardUncertaintyWrapper
from tests.helpers import RolloutSpy, assert_same_parameters, parameters

SMALL = {"n_steps": 64, "batch_size": 32, "n_epochs": 2, "policy_kwargs": {"net_arch": [16]}, "device": "cpu"}
ENVS = ["CartPole-v1", "Pendulum-v1"]  # Discrete and Box actions


def reference(env_id: str, seed: int = 7, steps: int = 0) -> PPO:
    """A PPO policy of KLPPO's architecture (trained for ``steps``), standing in for the oracle's."""
    model = PPO("MlpPolicy", make_vec_env(env_id, n_envs=1, seed=seed), seed=seed, **SMALL)
    if steps:
        model.learn(steps)
    return model


def buffer_spy() -> RolloutSpy:
    return RolloutSpy(("observations", "actions", "rewards", "log_probs", "log_ratios"))


@pytest.mark.parametrize("env_id", ENVS)
@pytest.mark.parametrize("n_envs", [1, 2])
def test_learn_predict_evaluate_with_callbacks_and_the_kl_log(env_id, n_envs):
    env = make_vec_env(env_id, n_envs=n_envs, seed=0)
    model = KLPPO("MlpPolicy", env, ref_policy=reference(env_id), kl_coef=0.1, seed=0, **SMALL)
    assert isinstance(model.rollout_buffer, KLRolloutBuffer)
    spy = buffer_spy()
    model.learn(2 * SMALL["n_steps"] * n_envs, callback=spy, log_interval=10**6)
    assert len(spy.rollouts) == 2 and spy.rollouts[0]["log_ratios"].shape == (SMALL["n_steps"], n_envs)
    logged = model.logger.name_to_value
    assert logged["kl/coef"] == 0.1
    assert logged["kl/log_ratio_mean"] == pytest.approx(float(spy.rollouts[-1]["log_ratios"].mean()), rel=1e-6)
    obs = env.reset()
    actions, _ = model.predict(obs, deterministic=True)
    np.testing.assert_array_equal(actions, model.predict(obs, deterministic=True)[0])
    assert env.action_space.contains(actions[0])
    assert np.isfinite(evaluate_policy(model, env, n_eval_episodes=2)[0])


@pytest.mark.parametrize("env_id", ENVS)
def test_zero_coefficient_is_ppo_parameter_for_parameter(env_id):
    # Pendulum's 200-step time limit falls inside the run: truncation bootstrapping is exercised too.
    ref = reference(env_id, steps=SMALL["n_steps"])
    runs = {}
    for algo in (PPO, KLPPO):
        env = make_vec_env(env_id, n_envs=2, seed=3)
        kwargs = {"ref_policy": ref, "kl_coef": 0.0} if algo is KLPPO else {}
        model = algo("MlpPolicy", env, seed=3, **{**SMALL, "n_steps": 128}, **kwargs)
        model.learn(2 * 128 * 2)
        runs[algo.__name__] = parameters(model)
    assert_same_parameters(runs["PPO"], runs["KLPPO"])  # bit-identical on CPU


@pytest.mark.parametrize("env_id", ENVS)
def test_stored_reward_is_the_env_reward_minus_beta_times_the_reference_log_ratio(env_id):
    beta = 0.5
    ref = reference(env_id, steps=SMALL["n_steps"])
    env = make_vec_env(env_id, n_envs=1, seed=1)
    model = KLPPO("MlpPolicy", env, ref_policy=ref, kl_coef=beta, seed=1, **SMALL)
    spy = buffer_spy()
    model.learn(SMALL["n_steps"], callback=spy)
    plain = PPO("MlpPolicy", make_vec_env(env_id, n_envs=1, seed=1), seed=1, **SMALL)
    plain_spy = buffer_spy()
    plain.learn(SMALL["n_steps"], callback=plain_spy)  # same seed, same first rollout: the unpenalised rewards
    rollout, raw = spy.rollouts[0], plain_spy.rollouts[0]
    np.testing.assert_array_equal(rollout["observations"], raw["observations"])
    obs = torch.as_tensor(rollout["observations"].reshape(SMALL["n_steps"], -1))
    actions = torch.as_tensor(rollout["actions"].reshape(SMALL["n_steps"], -1))
    if env_id == "CartPole-v1":
        actions = actions.long().flatten()
    with torch.no_grad():
        ref_log_prob = ref.policy.get_distribution(obs).log_prob(actions).numpy()
    ratio = rollout["log_probs"][:, 0] - ref_log_prob
    np.testing.assert_allclose(rollout["log_ratios"][:, 0], ratio, atol=1e-5)
    assert np.abs(ratio).max() > 1e-3  # the two policies differ, so the penalty is not vacuous
    np.testing.assert_allclose(rollout["rewards"][:, 0], raw["rewards"][:, 0] - beta * ratio, atol=1e-5)


def test_starting_at_the_reference_pays_no_penalty_in_the_first_rollout():
    ref = reference("CartPole-v1", steps=SMALL["n_steps"])
    model = KLPPO("MlpPolicy", make_vec_env("CartPole-v1", seed=0), ref_policy=ref, kl_coef=1.0,
                  init_from_reference=True, seed=0, **SMALL)
    assert_same_parameters(parameters(model), parameters(ref))
    spy = buffer_spy()
    model.learn(SMALL["n_steps"], callback=spy)
    np.testing.assert_allclose(spy.rollouts[0]["log_ratios"], 0.0, atol=1e-6)
    np.testing.assert_allclose(spy.rollouts[0]["rewards"], 1.0, atol=1e-6)


class TwoArms(gym.Env):
    """One step from a constant observation; arm 1 pays 1, arm 0 pays 0."""

    observation_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action):
        return np.zeros(1, dtype=np.float32), float(action), True, False, {}


@pytest.mark.parametrize(("beta", "expected"), [
    (1.0, 0.2 * np.e / (0.8 + 0.2 * np.e)), (0.3, 0.2 * np.exp(1 / 0.3) / (0.8 + 0.2 * np.exp(1 / 0.3))), (0.0, 1.0)])
def test_bandit_policy_reaches_the_kl_regularised_optimum(beta, expected):
    # π* = argmax E[r] − β KL(π ‖ π_ref) = π_ref·exp(r/β) / Z (Korbak et al. 2022): with π_ref = (0.8, 0.2)
    # and r = (0, 1), π*(arm 1) = 0.40 at β = 1, 0.87 at β = 0.3 and 1 without the penalty (seeds 0-2 land
    # within 0.02 of each).
    kwargs = {"n_steps": 32, "batch_size": 64, "n_epochs": 4, "learning_rate": 3e-3,
              "policy_kwargs": {"net_arch": [8]}, "device": "cpu"}
    env = make_vec_env(TwoArms, n_envs=4, seed=0)
    ref = PPO("MlpPolicy", env, seed=0, **kwargs).policy
    with torch.no_grad():  # π_ref = (0.8, 0.2) at every observation
        ref.action_net.weight.zero_()
        ref.action_net.bias.copy_(torch.log(torch.tensor([0.8, 0.2])))
    model = KLPPO("MlpPolicy", env, ref_policy=ref, kl_coef=beta, seed=0, **kwargs)
    model.learn(6000)
    probs = model.policy.get_distribution(torch.zeros(1, 1)).distribution.probs[0, 1].item()
    assert probs == pytest.approx(expected, abs=0.04)


@pytest.mark.parametrize("env_id", ENVS)
def test_same_seed_gives_same_parameters(env_id):
    ref = reference(env_id)
    runs = []
    for _ in range(2):
        model = KLPPO("MlpPolicy", make_vec_env(env_id, n_envs=2, seed=1), ref_policy=ref, kl_coef=0.3, seed=1,
                      **SMALL)
        model.learn(2 * SMALL["n_steps"] * 2)
        runs.append(parameters(model))
    assert_same_parameters(*runs)


@pytest.mark.parametrize("env_id", ENVS)
def test_save_load_keeps_the_policy_the_reference_and_beta_and_can_learn_on(env_id, tmp_path):
    ref = reference(env_id, steps=SMALL["n_steps"])
    ref.save(tmp_path / "ref.zip")
    env = make_vec_env(env_id, n_envs=1, seed=0)
    model = KLPPO("MlpPolicy", env, ref_policy=tmp_path / "ref.zip", kl_coef=0.2, seed=0, **SMALL)
    assert_same_parameters(dict(model.ref_policy.state_dict()), parameters(ref))  # read from the zip
    model.learn(SMALL["n_steps"])
    model.save(tmp_path / "model.zip")
    with zipfile.ZipFile(tmp_path / "model.zip") as archive:
        assert "ref_policy.pth" in archive.namelist()
    loaded = KLPPO.load(tmp_path / "model.zip", env=env, device="cpu")
    assert_same_parameters(parameters(model), parameters(loaded))
    assert_same_parameters(dict(loaded.ref_policy.state_dict()), parameters(ref))
    assert (loaded.kl_coef, loaded.rollout_buffer.kl_coef) == (0.2, 0.2)
    obs = env.reset()
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
    loaded.learn(SMALL["n_steps"])
    assert not torch.equal(parameters(loaded)["action_net.weight"], parameters(model)["action_net.weight"])
    alone = KLPPO.load(tmp_path / "model.zip", device="cpu")  # no env: predicting needs nothing else
    np.testing.assert_array_equal(alone.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])


def test_dict_observations_use_the_dict_buffer():
    env = make_vec_env(lambda: gym.wrappers.TransformObservation(
        gym.make("CartPole-v1"), lambda o: {"x": o},
        gym.spaces.Dict({"x": gym.make("CartPole-v1").observation_space})), n_envs=1, seed=0)
    ref = PPO("MultiInputPolicy", env, seed=5, **SMALL)
    model = KLPPO("MultiInputPolicy", env, ref_policy=ref, kl_coef=0.1, seed=0, **SMALL)
    assert isinstance(model.rollout_buffer, DictKLRolloutBuffer)
    model.learn(SMALL["n_steps"])
    assert np.abs(model.rollout_buffer.log_ratios).max() > 0


def test_trains_through_the_posterior_wrapper(linear_members):
    venv = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    env = VecRewardUncertaintyWrapper(venv, linear_members(n_members=3)(venv), mode="mean", seed=0)
    model = KLPPO("MlpPolicy", env, ref_policy=reference("CartPole-v1"), kl_coef=0.1, seed=0, **SMALL)
    spy = buffer_spy()
    model.learn(SMALL["n_steps"] * 2, callback=spy)
    assert not np.allclose(spy.rollouts[0]["rewards"] + 0.1 * spy.rollouts[0]["log_ratios"], 1.0)  # posterior reward


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"kl_coef": 0.1}, "ref_policy="),
    ({"ref_policy": "REF"}, "kl_coef="),
    ({"ref_policy": "REF", "kl_coef": -1.0}, "kl_coef must be"),
    ({"ref_policy": "REF", "kl_coef": 0.1, "rollout_buffer_class": RolloutBuffer}, "KLRolloutBuffer"),
    ({"ref_policy": "missing.zip", "kl_coef": 0.1}, "not found"),
    ({"ref_policy": "REF", "kl_coef": 0.1, "policy_kwargs": {"net_arch": [8]}}, "policy_kwargs"),
])
def test_bad_arguments_raise_a_message_naming_the_fix(kwargs, message, tmp_path):
    reference("CartPole-v1").save(tmp_path / "ref.zip")
    kwargs = {k: (tmp_path / "ref.zip" if v == "REF" else tmp_path / v if k == "ref_policy" else v)
              for k, v in kwargs.items()}
    error = FileNotFoundError if message == "not found" else ValueError
    with pytest.raises(error, match=message):
        KLPPO("MlpPolicy", make_vec_env("CartPole-v1", seed=0), **{**SMALL, **kwargs})


def test_ppo_arguments_cannot_be_passed_positionally_into_kl_ones():
    with pytest.raises(TypeError):
        KLPPO("MlpPolicy", make_vec_env("CartPole-v1", seed=0), 3e-4)
