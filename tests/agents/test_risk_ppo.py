"""RiskPPO (agents/risk_ppo/risk_ppo.py): SB3-style run, save/load, determinism, PPO equivalence, risk weighting."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from ruagent import risk
from ruagent.agents import RiskPPO
from ruagent.agents.risk_ppo.buffers import DictRiskRolloutBuffer, RiskRolloutBuffer
from ruagent.wrappers import VecRewardUncertaintyWrapper
from tests.helpers import RolloutSpy, assert_same_parameters, parameters

SMALL = {"n_steps": 64, "batch_size": 32, "n_epochs": 2, "policy_kwargs": {"net_arch": [16]}, "device": "cpu"}
ENVS = ["CartPole-v1", "Pendulum-v1"]  # Discrete and Box actions


def rollout_spy() -> RolloutSpy:
    return RolloutSpy(("member_rewards", "member_advantages", "advantages"))


@pytest.mark.parametrize("env_id", ENVS)
@pytest.mark.parametrize("n_envs", [1, 2])
def test_learn_predict_evaluate_with_callbacks(env_id, n_envs, make_env, linear_members):
    env = make_env(env_id, linear_members(n_members=4), n_envs=n_envs)
    spy = rollout_spy()
    model = RiskPPO("MlpPolicy", env, risk="cvar", risk_kwargs={"alpha": 0.5}, seed=0, **SMALL)
    assert model.n_members == 4  # inferred from the wrapper's reward model
    model.learn(2 * SMALL["n_steps"] * n_envs, callback=spy)
    assert len(spy.rollouts) == 2
    assert spy.rollouts[0]["member_rewards"].shape == (SMALL["n_steps"], n_envs, 4)
    obs = env.reset()
    actions, _ = model.predict(obs, deterministic=True)
    again, _ = model.predict(obs, deterministic=True)
    np.testing.assert_array_equal(actions, again)
    assert env.action_space.contains(actions[0])
    values = model.policy.predict_values(model.policy.obs_to_tensor(obs)[0])
    assert values.shape == (n_envs, 4)
    mean_return, _ = evaluate_policy(model, env, n_eval_episodes=2)
    assert np.isfinite(mean_return)


def test_logs_the_risk_statistics_to_the_sb3_logger(make_env, linear_members):
    env = make_env("CartPole-v1", linear_members(n_members=5))
    model = RiskPPO("MlpPolicy", env, risk="broil", risk_kwargs={"lam": 0.5, "alpha": 0.2}, seed=0, **SMALL)
    spy = rollout_spy()
    model.learn(SMALL["n_steps"], callback=spy, log_interval=10**6)
    logged = spy.rollouts[-1]["logged"]
    for key in ("risk/value", "risk/mean_value", "risk/J_min", "risk/J_max", "risk/J_std", "risk/weight_entropy"):
        assert np.isfinite(logged[key]), key
    assert logged["risk/lam"] == 0.5 and logged["risk/alpha"] == 0.2
    assert logged["risk/J_min"] <= logged["risk/value"] <= logged["risk/mean_value"] <= logged["risk/J_max"]
    assert 0.0 <= logged["risk/weight_entropy"] <= np.log(5) + 1e-9


@pytest.mark.parametrize("name", ["cvar", "worst", "mean"])
def test_policy_advantage_is_the_risk_weighted_member_advantage(name, make_env, linear_members):
    # Constant members +1, 0, −1 per step: J_2 < J_1 < J_0 always, so worst/cvar(1/3) put all weight on member 2.
    factory = linear_members(n_members=3, scale=0.0, offsets=[1.0, 0.0, -1.0])
    env = make_env("CartPole-v1", factory)
    kwargs = {"alpha": 1 / 3} if name == "cvar" else {}
    model = RiskPPO("MlpPolicy", env, risk=name, risk_kwargs=kwargs, seed=0, **SMALL)
    spy = rollout_spy()
    model.learn(SMALL["n_steps"], callback=spy)
    rollout = spy.rollouts[0]
    np.testing.assert_array_equal(rollout["member_rewards"], np.broadcast_to([1.0, 0.0, -1.0], (64, 1, 3)))
    expected_weights = np.full(3, 1 / 3) if name == "mean" else np.array([0.0, 0.0, 1.0])
    np.testing.assert_allclose(rollout["advantages"], rollout["member_advantages"] @ expected_weights, atol=1e-6)


def test_member_probabilities_come_from_the_reward_model(make_env, linear_members):
    probs = [0.7, 0.2, 0.1]
    env = make_env("CartPole-v1", linear_members(n_members=3, scale=0.0, offsets=[1.0, 2.0, 3.0], probs=probs))
    model = RiskPPO("MlpPolicy", env, risk="mean", seed=0, **SMALL)
    np.testing.assert_allclose(model.member_probs, probs)
    spy = rollout_spy()
    model.learn(SMALL["n_steps"], callback=spy, log_interval=10**6)
    rollout = spy.rollouts[0]
    np.testing.assert_allclose(rollout["advantages"], rollout["member_advantages"] @ np.array(probs), atol=1e-5)


def test_standardise_rewards_uses_the_label_statistics(make_env, linear_members):
    base = linear_members(n_members=2, scale=0.0, offsets=[3.0, -1.0])

    def with_stats(env):
        model = base(env)
        model.reward_loc, model.reward_scale = np.array([1.0, -2.0]), np.array([2.0, 0.5])
        return model

    env = make_env("CartPole-v1", with_stats)
    model = RiskPPO("MlpPolicy", env, risk="mean", standardise_rewards=True, seed=0, **SMALL)
    spy = rollout_spy()
    model.learn(SMALL["n_steps"], callback=spy)
    # offsets aligned to the posterior's label mean (-0.5), nothing rescaled
    np.testing.assert_allclose(spy.rollouts[0]["member_rewards"][..., 0], 3.0 - 1.0 - 0.5)
    np.testing.assert_allclose(spy.rollouts[0]["member_rewards"][..., 1], -1.0 + 2.0 - 0.5)


def test_standardise_rewards_follows_a_posterior_refitted_between_rollouts(make_env, linear_members):
    base = linear_members(n_members=2, scale=0.0, offsets=[3.0, -1.0])
    models = []

    def with_stats(env):
        model = base(env)
        model.reward_loc, model.reward_scale = np.array([1.0, -2.0]), np.array([2.0, 0.5])
        models.append(model)
        return model

    env = make_env("CartPole-v1", with_stats)
    agent = RiskPPO("MlpPolicy", env, risk="mean", standardise_rewards=True, seed=0, **SMALL)
    agent.learn(SMALL["n_steps"])
    for model in models:  # what a refit during training does to the statistics
        model.reward_loc, model.reward_scale = np.array([2.0, 0.0]), np.array([4.0, 1.0])
    spy = rollout_spy()
    agent.learn(SMALL["n_steps"], callback=spy, reset_num_timesteps=False)
    np.testing.assert_allclose(spy.rollouts[0]["member_rewards"][..., 0], 3.0 - 2.0 + 1.0)
    np.testing.assert_allclose(spy.rollouts[0]["member_rewards"][..., 1], -1.0 - 0.0 + 1.0)


@pytest.mark.parametrize("vec_skin", [False, True])
def test_standardising_in_both_the_wrapper_and_riskppo_is_refused(make_env, linear_members, vec_skin):
    def with_stats(env):
        model = linear_members(n_members=2)(env)
        model.reward_loc, model.reward_scale = np.zeros(2), np.ones(2)
        return model

    if vec_skin:
        inner = make_vec_env("CartPole-v1", n_envs=1, seed=0)
        env = VecRewardUncertaintyWrapper(inner, with_stats(inner.envs[0]), standardise=True)
    else:
        env = make_env("CartPole-v1", with_stats, standardise=True)
    with pytest.raises(ValueError, match="standardise in one place"):
        RiskPPO("MlpPolicy", env, risk="mean", standardise_rewards=True, seed=0, **SMALL)
    RiskPPO("MlpPolicy", env, risk="mean", standardise_rewards=False, seed=0, **SMALL)  # one place is fine


def test_risk_level_anneals_from_the_mean_to_the_target(make_env, linear_members):
    env = make_env("CartPole-v1", linear_members(n_members=4))
    model = RiskPPO(
        "MlpPolicy", env, risk="cvar", risk_kwargs={"alpha": 0.25}, risk_anneal_fraction=0.5, seed=0, **SMALL
    )
    spy = rollout_spy()
    model.learn(8 * SMALL["n_steps"], callback=spy, log_interval=10**6)
    alphas = [rollout["logged"]["risk/alpha"] for rollout in spy.rollouts]
    assert alphas[0] > 0.75  # starts near the mean (alpha = 1) ...
    assert np.all(np.diff(alphas) <= 0)  # ... moves monotonically ...
    assert alphas[3:] == [0.25] * 5  # ... and holds the target after half of training


def test_vec_wrapper_posterior_is_found(linear_members):
    venv = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    model_factory = linear_members(n_members=6, probs=np.arange(1, 7) / 21)
    wrapped = VecRewardUncertaintyWrapper(venv, model_factory(venv))
    model = RiskPPO("MlpPolicy", wrapped, seed=0, **SMALL)
    assert model.n_members == 6
    np.testing.assert_allclose(model.member_probs, np.arange(1, 7) / 21)
    model.learn(SMALL["n_steps"] * 2)


def test_dict_observations_use_the_multi_input_policy(linear_members):
    from stable_baselines3.common.envs import SimpleMultiObsEnv
    from stable_baselines3.common.monitor import Monitor

    from ruagent.wrappers import RewardUncertaintyWrapper

    base = Monitor(SimpleMultiObsEnv(random_start=False))
    env = RewardUncertaintyWrapper(base, linear_members(n_members=2)(base))
    model = RiskPPO("MultiInputPolicy", env, seed=0, **SMALL)
    assert isinstance(model.rollout_buffer, DictRiskRolloutBuffer)
    model.learn(SMALL["n_steps"])
    assert model.policy.predict_values(model.policy.obs_to_tensor(env.reset()[0])[0]).shape == (1, 2)


@pytest.mark.parametrize("env_id", ENVS)
def test_same_seed_gives_same_parameters(env_id, make_env, linear_members):
    runs = []
    for _ in range(2):
        env = make_env(env_id, linear_members(n_members=3), n_envs=2, seed=1)
        model = RiskPPO("MlpPolicy", env, risk="cvar", risk_kwargs={"alpha": 0.3}, seed=1, **SMALL)
        model.learn(2 * SMALL["n_steps"] * 2)
        runs.append(parameters(model))
    assert_same_parameters(*runs)


@pytest.mark.parametrize("env_id", ENVS)
def test_save_load_keeps_parameters_and_predictions_and_can_learn_on(env_id, make_env, linear_members, tmp_path):
    env = make_env(env_id, linear_members(n_members=3))
    model = RiskPPO("MlpPolicy", env, risk="entropic", risk_kwargs={"beta": 0.5}, seed=0, **SMALL)
    model.learn(SMALL["n_steps"])
    model.save(tmp_path / "model.zip")
    loaded = RiskPPO.load(tmp_path / "model.zip", env=env, device="cpu")
    assert_same_parameters(parameters(model), parameters(loaded))
    assert (loaded.n_members, loaded.risk, loaded.risk_kwargs) == (3, "entropic", {"beta": 0.5})
    assert loaded.risk_measure == risk.make("entropic", beta=0.5)
    obs = env.reset()
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
    loaded.learn(SMALL["n_steps"])
    assert not torch.equal(parameters(loaded)["value_net.weight"], parameters(model)["value_net.weight"])
    # Loading without an env needs no posterior: K and the risk settings travel in the zip.
    assert RiskPPO.load(tmp_path / "model.zip", device="cpu").n_members == 3


def test_saved_model_holds_no_reward_model_and_no_pickled_risk_settings(make_env, linear_members, tmp_path):
    env = make_env("CartPole-v1", linear_members(n_members=3))
    RiskPPO("MlpPolicy", env, seed=0, **SMALL).save(tmp_path / "model.zip")
    with zipfile.ZipFile(tmp_path / "model.zip") as archive:
        data = json.loads(archive.read("data"))
    assert "LinearMembers" not in json.dumps(data) and "reward_model" not in data
    for key in ("n_members", "member_probs", "risk", "risk_kwargs", "risk_anneal_fraction", "objective_estimate"):
        assert not isinstance(data[key], dict) or ":serialized:" not in data[key], f"{key} was pickled"
    assert data["risk"] == "cvar" and data["n_members"] == 3


@pytest.mark.parametrize("env_id", ENVS)
def test_one_member_with_the_mean_reproduces_ppo(env_id, make_env, linear_members):
    # K = 1, ρ = mean: the wrapper's "mean" reward is the member's reward, so PPO sees the same reward.
    # Pendulum's 200-step time limit falls inside the run, exercising truncation bootstrapping too.
    steps = 2 * 128 * 2
    runs = {}
    for algo in (PPO, RiskPPO):
        env = make_env(env_id, linear_members(n_members=1), n_envs=2, seed=3, mode="mean")
        kwargs = {"risk": "mean"} if algo is RiskPPO else {}
        model = algo("MlpPolicy", env, seed=3, **{**SMALL, "n_steps": 128}, **kwargs)
        model.learn(steps)
        runs[algo.__name__] = parameters(model)
    assert_same_parameters(runs["PPO"], runs["RiskPPO"], atol=1e-5)  # bit-identical on CPU in practice


def test_unwrapped_env_fails_with_a_message_naming_the_wrapper():
    env = make_vec_env("CartPole-v1", n_envs=1, seed=0)
    with pytest.raises(ValueError, match="RewardUncertaintyWrapper"):
        RiskPPO("MlpPolicy", env, **SMALL)
    model = RiskPPO("MlpPolicy", env, n_members=2, **SMALL)  # K given, but no reward_members on steps
    with pytest.raises(ValueError, match=r"info\['reward_members'\].*RewardUncertaintyWrapper"):
        model.learn(SMALL["n_steps"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_members": 5}, "has 3 members"),
        ({"risk": "var"}, "choose one of"),
        ({"risk": "cvar", "risk_kwargs": {"alpha": 0.0}}, "alpha"),
        ({"risk_anneal_fraction": 1.5}, "risk_anneal_fraction"),
        ({"objective_estimate": "median"}, "objective_estimate"),
        ({"standardise_rewards": True}, "label statistics"),
        ({"member_probs": [0.5, 0.5]}, "member_probs must be 3 non-negative"),
        ({"member_probs": [0.5, -0.5, 1.0]}, "member_probs must be 3 non-negative"),
    ],
)
def test_bad_arguments_raise_a_message_naming_the_fix(kwargs, message, make_env, linear_members):
    env = make_env("CartPole-v1", linear_members(n_members=3))
    with pytest.raises(ValueError, match=message):
        RiskPPO("MlpPolicy", env, **kwargs, **SMALL)


def test_rollout_buffer_class_must_store_member_rewards(make_env, linear_members):
    from stable_baselines3.common.buffers import RolloutBuffer

    env = make_env("CartPole-v1", linear_members(n_members=2))
    with pytest.raises(TypeError, match="RiskRolloutBuffer"):
        RiskPPO("MlpPolicy", env, rollout_buffer_class=RolloutBuffer, **SMALL)
    assert isinstance(RiskPPO("MlpPolicy", env, **SMALL).rollout_buffer, RiskRolloutBuffer)


def test_ppo_arguments_cannot_be_passed_positionally_into_riskppo_ones(make_env, linear_members):
    env = make_env("CartPole-v1", linear_members(n_members=2))
    with pytest.raises(TypeError):
        RiskPPO("MlpPolicy", env, 3e-4)  # PPO's third positional is learning_rate; RiskPPO takes keywords


def test_separate_member_critics_train_save_and_load(make_env, linear_members, tmp_path):
    env = make_env("Pendulum-v1", linear_members(n_members=3))
    policy_kwargs = {"net_arch": {"pi": [16], "vf": []}, "member_value_arch": [16]}
    model = RiskPPO("MlpPolicy", env, seed=0, **{**SMALL, "policy_kwargs": policy_kwargs})
    before = parameters(model)
    model.learn(SMALL["n_steps"])
    assert not torch.equal(before["value_net.weights.0"], parameters(model)["value_net.weights.0"])
    model.save(tmp_path / "model.zip")
    loaded = RiskPPO.load(tmp_path / "model.zip", device="cpu")
    assert loaded.policy.member_value_arch == [16]
    obs = loaded.policy.obs_to_tensor(env.reset())[0]
    torch.testing.assert_close(loaded.policy.predict_values(obs), model.policy.predict_values(obs))
