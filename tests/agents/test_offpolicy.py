"""RiskSAC and RiskDQN, the shared behaviour (agents/offpolicy.py): SB3-style run, save/load,
determinism, the reduction to SAC/DQN at K = 1, argument checks and the risk log."""

from __future__ import annotations

import json
import zipfile

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import DQN, SAC
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

from ruagent import risk
from ruagent.agents import RiskDQN, RiskSAC
from ruagent.agents.replay_buffers import DictRelabellingReplayBuffer, RelabellingReplayBuffer
from ruagent.wrappers import RewardUncertaintyWrapper, VecRewardUncertaintyWrapper
from tests.helpers import assert_same_parameters, parameters

SAC_SMALL = {"learning_starts": 32, "batch_size": 32, "buffer_size": 5_000, "policy_kwargs": {"net_arch": [16]},
             "device": "cpu"}
DQN_SMALL = {"learning_starts": 32, "batch_size": 32, "buffer_size": 5_000, "train_freq": 2,
             "target_update_interval": 64, "policy_kwargs": {"net_arch": [16]}, "device": "cpu"}
#: (risk agent, its SB3 algorithm, env, small settings)
CASES = {
    "sac": (RiskSAC, SAC, "Pendulum-v1", SAC_SMALL),
    "dqn": (RiskDQN, DQN, "CartPole-v1", DQN_SMALL),
}
STEPS = 128


@pytest.fixture(params=sorted(CASES))
def case(request):
    return CASES[request.param]


def member_q_values(model, obs: np.ndarray) -> torch.Tensor:
    """RiskSAC: (n_critics, B, K) at the deterministic action; RiskDQN: (B, K, |A|)."""
    obs_tensor = model.policy.obs_to_tensor(obs)[0]
    with torch.no_grad():
        if isinstance(model, RiskSAC):
            return model.critic.member_q_values(obs_tensor, model.actor(obs_tensor, deterministic=True))
        return model.q_net(obs_tensor)


class StepCounter(BaseCallback):
    def __init__(self):
        super().__init__()
        self.steps = 0
        self.rollouts = 0

    def _on_step(self) -> bool:
        self.steps += 1
        return True

    def _on_rollout_end(self) -> None:
        self.rollouts += 1


@pytest.mark.parametrize("n_envs", [1, 2])
def test_learn_predict_evaluate_with_callbacks(case, n_envs, make_env, linear_members):
    algo, _, env_id, small = case
    env = make_env(env_id, linear_members(n_members=4), n_envs=n_envs)
    model = algo("MlpPolicy", env, risk="cvar", risk_kwargs={"alpha": 0.5}, seed=0, **small)
    assert model.n_members == 4  # inferred from the wrapper's reward model
    assert isinstance(model.replay_buffer, RelabellingReplayBuffer)
    counter = StepCounter()
    model.learn(STEPS, callback=counter)
    assert counter.steps == STEPS // n_envs and counter.rollouts > 1
    obs = env.reset()
    actions, _ = model.predict(obs, deterministic=True)
    np.testing.assert_array_equal(actions, model.predict(obs, deterministic=True)[0])
    assert env.action_space.contains(actions[0])
    q_values = member_q_values(model, obs)
    assert q_values.shape == ((2, n_envs, 4) if algo is RiskSAC else (n_envs, 4, 2))
    mean_return, _ = evaluate_policy(model, env, n_eval_episodes=2)
    assert np.isfinite(mean_return)


def test_logs_the_per_state_risk_statistics(case, make_env, linear_members):
    algo, _, env_id, small = case
    env = make_env(env_id, linear_members(n_members=5))
    model = algo("MlpPolicy", env, risk="broil", risk_kwargs={"lam": 0.5, "alpha": 0.2}, seed=0, **small)
    model.learn(STEPS, log_interval=10**6)  # no dump: the last update's values stay in the logger
    logged = model.logger.name_to_value
    keys = ("value", "mean_value", "J_min", "J_max", "J_std", "weight_entropy", "reward_std")
    for key in keys:
        assert np.isfinite(logged[f"risk/{key}"]), key
    assert logged["risk/lam"] == 0.5 and logged["risk/alpha"] == 0.2
    assert logged["risk/J_min"] <= logged["risk/value"] <= logged["risk/mean_value"] <= logged["risk/J_max"]
    assert 0.0 <= logged["risk/weight_entropy"] <= np.log(5) + 1e-9
    assert logged["risk/reward_std"] > 0  # LinearMembers disagree


def test_same_seed_gives_same_parameters(case, make_env, linear_members):
    algo, _, env_id, small = case
    runs = []
    for _ in range(2):
        env = make_env(env_id, linear_members(n_members=3), n_envs=2, seed=1)
        model = algo("MlpPolicy", env, risk="cvar", risk_kwargs={"alpha": 0.3}, seed=1, **small)
        model.learn(STEPS)
        runs.append(parameters(model))
    assert_same_parameters(*runs)


@pytest.mark.parametrize("n_envs", [1, 2])
def test_one_member_with_the_mean_reproduces_sb3(case, n_envs, make_env, linear_members):
    # K = 1, ρ = mean: the wrapper's "mean" reward is the member's reward, which SAC/DQN store; the risk
    # agent recomputes it from the stored transition at every sampled batch. A 30-step time limit
    # truncates episodes inside the run (timeouts bootstrap in both), and CartPole also terminates.
    risk_algo, sb3_algo, env_id, small = case
    runs = {}
    for algo in (sb3_algo, risk_algo):
        env = make_env(lambda: gym.make(env_id, max_episode_steps=30), linear_members(n_members=1), n_envs=n_envs,
                       seed=3, mode="mean")
        kwargs = {"risk": "mean"} if algo is risk_algo else {}
        model = algo("MlpPolicy", env, seed=3, **small, **kwargs)
        model.learn(100 * n_envs)
        runs[algo.__name__] = parameters(model)
        if algo is sb3_algo and env_id == "Pendulum-v1":
            assert model.replay_buffer.timeouts.sum() == 3 * n_envs  # the run did cross the time limit
    assert_same_parameters(runs[sb3_algo.__name__], runs[risk_algo.__name__])  # bit-identical on CPU


def test_save_load_keeps_parameters_and_predictions_and_can_learn_on(case, make_env, linear_members, tmp_path):
    algo, _, env_id, small = case
    env = make_env(env_id, linear_members(n_members=3))
    model = algo("MlpPolicy", env, risk="entropic", risk_kwargs={"beta": 0.5}, seed=0, **small)
    model.learn(STEPS)
    model.save(tmp_path / "model.zip")
    loaded = algo.load(tmp_path / "model.zip", env=env, device="cpu")
    assert_same_parameters(parameters(model), parameters(loaded))
    assert (loaded.n_members, loaded.risk, loaded.risk_kwargs) == (3, "entropic", {"beta": 0.5})
    assert loaded.risk_measure == risk.make("entropic", beta=0.5)
    assert loaded.replay_buffer.reward_model is env.get_attr("reward_model")[0]
    obs = env.reset()
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
    torch.testing.assert_close(member_q_values(model, obs), member_q_values(loaded, obs))
    loaded.learn(STEPS)
    assert any(not torch.equal(a, b) for a, b in zip(parameters(loaded).values(), parameters(model).values()))
    # Loading without an env needs no posterior: K and the risk settings travel in the zip.
    alone = algo.load(tmp_path / "model.zip", device="cpu")
    assert alone.n_members == 3
    np.testing.assert_array_equal(alone.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])


def test_saved_model_holds_no_reward_model_and_no_pickled_risk_settings(case, make_env, linear_members, tmp_path):
    algo, _, env_id, small = case
    env = make_env(env_id, linear_members(n_members=3))
    algo("MlpPolicy", env, seed=0, **small).save(tmp_path / "model.zip")
    with zipfile.ZipFile(tmp_path / "model.zip") as archive:
        data = json.loads(archive.read("data"))
    assert "LinearMembers" not in json.dumps(data) and "reward_model" not in data
    for key in ("n_members", "member_probs", "risk", "risk_kwargs", "risk_anneal_fraction", "replay_buffer_kwargs"):
        assert not isinstance(data[key], dict) or ":serialized:" not in data[key], f"{key} was pickled"
    assert data["risk"] == "cvar" and data["n_members"] == 3
    assert data["replay_buffer_kwargs"] == {"n_members": 3}


def test_the_greedy_dqn_policy_saved_alone_keeps_its_risk(make_env, linear_members, tmp_path):
    from ruagent.agents.risk_dqn.policies import RiskDQNPolicy

    env = make_env("CartPole-v1", linear_members(n_members=3, probs=[0.2, 0.3, 0.5]))
    model = RiskDQN("MlpPolicy", env, risk="cvar", risk_kwargs={"alpha": 0.4}, seed=0, **DQN_SMALL)
    model.policy.save(tmp_path / "policy.pt")
    policy = RiskDQNPolicy.load(tmp_path / "policy.pt")
    assert policy.q_net.risk_measure == risk.make("cvar", alpha=0.4)
    np.testing.assert_allclose(policy.q_net.member_probs, [0.2, 0.3, 0.5])
    obs = env.reset()
    np.testing.assert_array_equal(policy.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])


def test_vec_wrapper_posterior_and_member_probabilities_are_found(case, linear_members):
    algo, _, env_id, small = case
    venv = make_vec_env(env_id, n_envs=2, seed=0)
    wrapped = VecRewardUncertaintyWrapper(venv, linear_members(n_members=6, probs=np.arange(1, 7) / 21)(venv))
    model = algo("MlpPolicy", wrapped, seed=0, **small)
    assert model.n_members == 6
    np.testing.assert_allclose(model.member_probs, np.arange(1, 7) / 21)
    assert model.replay_buffer.reward_model is wrapped.reward_model
    model.learn(STEPS)
    assert np.isfinite(model.logger.name_to_value["risk/value"])


class SplitObservation(gym.ObservationWrapper):
    """A Box observation as a Dict of its first two entries and the rest."""

    def __init__(self, env):
        super().__init__(env)
        box = env.observation_space
        self.observation_space = gym.spaces.Dict({
            "head": gym.spaces.Box(box.low[:2], box.high[:2], dtype=box.dtype),
            "tail": gym.spaces.Box(box.low[2:], box.high[2:], dtype=box.dtype),
        })

    def observation(self, observation):
        return {"head": observation[:2], "tail": observation[2:]}


def test_dict_observations_use_the_multi_input_policy(case, linear_members):
    algo, _, env_id, small = case

    def make():
        base = Monitor(SplitObservation(gym.make(env_id)))
        return RewardUncertaintyWrapper(base, linear_members(n_members=2)(base))

    env = DummyVecEnv([make])
    model = algo("MultiInputPolicy", env, seed=0, **small)
    assert isinstance(model.replay_buffer, DictRelabellingReplayBuffer)
    model.learn(STEPS)
    sample = model.replay_buffer.sample(8)
    assert sample.rewards.shape == (8, 2) and set(sample.observations) == {"head", "tail"}


def test_risk_level_anneals_from_the_mean_to_the_target(case, make_env, linear_members):
    algo, _, env_id, small = case
    env = make_env(env_id, linear_members(n_members=4))
    model = algo("MlpPolicy", env, risk="cvar", risk_kwargs={"alpha": 0.25}, risk_anneal_fraction=0.5, seed=0,
                 **small)
    alphas = []

    class Spy(BaseCallback):
        def _on_step(self) -> bool:
            return True

        def _on_rollout_start(self) -> None:
            if "risk/alpha" in self.model.logger.name_to_value:
                alphas.append(self.model.logger.name_to_value["risk/alpha"])

    model.learn(2 * STEPS, callback=Spy(), log_interval=10**6)
    assert 0.25 < alphas[0] < 1.0
    assert np.all(np.diff(alphas) <= 1e-12)
    assert alphas[-1] == 0.25
    if algo is RiskDQN:  # the greedy policy acts on the current (here: final) level
        assert model.policy.q_net.risk_measure == risk.make("cvar", alpha=0.25)


def test_env_reward_members_with_one_member_reproduce_sb3_on_a_plain_env(case):
    # member_rewards="env": the control without reward uncertainty. With K = 1 and ρ = mean it is SAC/DQN,
    # bit for bit, on an env without any posterior (its stored reward is the sampled reward).
    risk_algo, sb3_algo, env_id, small = case
    runs = {}
    for algo in (sb3_algo, risk_algo):
        env = make_vec_env(lambda: gym.make(env_id, max_episode_steps=30), n_envs=2, seed=3)
        kwargs = {"risk": "mean", "n_members": 1, "replay_buffer_kwargs": {"member_rewards": "env"}}
        model = algo("MlpPolicy", env, seed=3, **small, **(kwargs if algo is risk_algo else {}))
        model.learn(200)
        runs[algo.__name__] = parameters(model)
    assert_same_parameters(runs[sb3_algo.__name__], runs[risk_algo.__name__])


def test_env_reward_members_give_every_head_the_stored_reward(case):
    algo, _, env_id, small = case
    env = make_vec_env(env_id, n_envs=2, seed=0)
    model = algo("MlpPolicy", env, risk="cvar", n_members=4, replay_buffer_kwargs={"member_rewards": "env"}, seed=0,
                 **small)
    model.learn(STEPS)
    buffer = model.replay_buffer
    assert buffer.reward_model is None and buffer.member_rewards == "env"
    np.random.seed(0)  # noqa: NPY002  (SB3 samples from the global stream)
    batch_inds = np.random.randint(0, buffer.pos, size=16)  # noqa: NPY002
    np.random.seed(1)  # noqa: NPY002
    env_indices = np.random.randint(0, buffer.n_envs, size=16)  # noqa: NPY002
    np.random.seed(1)  # noqa: NPY002  (the same env indices inside _get_samples)
    sample = buffer._get_samples(batch_inds)
    stored = buffer.rewards[batch_inds, env_indices]
    assert sample.rewards.shape == (16, 4)
    np.testing.assert_array_equal(sample.rewards.numpy(), np.repeat(stored[:, None], 4, axis=1))
    assert np.ptp(stored) > 0 or env_id == "CartPole-v1"  # Pendulum's rewards vary; CartPole's are all 1
    with pytest.raises(ValueError, match="member_rewards must be one of"):
        algo("MlpPolicy", env, n_members=2, replay_buffer_kwargs={"member_rewards": "true"}, **small)


def test_unwrapped_env_fails_with_a_message_naming_the_wrapper(case):
    algo, _, env_id, small = case
    env = make_vec_env(env_id, n_envs=1, seed=0)
    with pytest.raises(ValueError, match="RewardUncertaintyWrapper"):
        algo("MlpPolicy", env, **small)
    model = algo("MlpPolicy", env, n_members=2, **small)  # K given, but no posterior to relabel with
    with pytest.raises(RuntimeError, match=r"no reward model.*member_rewards"):
        model.learn(STEPS)


def test_a_wrapper_outside_the_posterior_that_changes_observations_is_refused(linear_members):
    def make():
        base = Monitor(gym.make("CartPole-v1"))
        inner = RewardUncertaintyWrapper(base, linear_members(n_members=2)(base))
        return gym.wrappers.TransformObservation(
            inner, lambda obs: obs[:2], gym.spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)
        )

    with pytest.raises(ValueError, match="outside the RewardUncertaintyWrapper"):
        RiskDQN("MlpPolicy", DummyVecEnv([make]), **DQN_SMALL)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_members": 5}, "has 3 members"),
        ({"risk": "var"}, "choose one of"),
        ({"risk": "cvar", "risk_kwargs": {"alpha": 0.0}}, "alpha"),
        ({"risk_anneal_fraction": 1.5}, "risk_anneal_fraction"),
        ({"standardise_rewards": True}, "label statistics"),
        ({"member_probs": [0.5, 0.5]}, "member_probs must be 3 non-negative"),
        ({"member_probs": [0.5, -0.5, 1.0]}, "member_probs must be 3 non-negative"),
        ({"n_steps": 3}, "n-step returns"),
    ],
)
def test_bad_arguments_raise_a_message_naming_the_fix(case, kwargs, message, make_env, linear_members):
    algo, _, env_id, small = case
    env = make_env(env_id, linear_members(n_members=3))
    with pytest.raises(ValueError, match=message):
        algo("MlpPolicy", env, **kwargs, **small)


def test_replay_buffer_class_must_relabel(case, make_env, linear_members):
    algo, _, env_id, small = case
    env = make_env(env_id, linear_members(n_members=2))
    with pytest.raises(TypeError, match="RelabellingReplayBuffer"):
        algo("MlpPolicy", env, replay_buffer_class=ReplayBuffer, **small)
    with pytest.raises(ValueError, match="optimize_memory_usage"):
        algo("MlpPolicy", env, optimize_memory_usage=True, replay_buffer_kwargs={"handle_timeout_termination": False},
             **small)


def test_sb3_arguments_cannot_be_passed_positionally_into_risk_ones(case, make_env, linear_members):
    algo, _, env_id, _ = case
    env = make_env(env_id, linear_members(n_members=2))
    with pytest.raises(TypeError):
        algo("MlpPolicy", env, 3e-4)  # SB3's third positional is learning_rate; the risk agents take keywords


@pytest.mark.parametrize("vec_skin", [False, True])
def test_standardising_follows_the_wrapper_or_the_agent_but_not_both(case, make_env, linear_members, vec_skin):
    algo, _, env_id, small = case

    def with_stats(env):
        model = linear_members(n_members=2, scale=0.0, offsets=[3.0, -1.0])(env)
        model.reward_loc, model.reward_scale = np.array([1.0, -2.0]), np.array([2.0, 0.5])
        return model

    def make(standardise):
        if vec_skin:
            inner = make_vec_env(env_id, n_envs=1, seed=0)
            return VecRewardUncertaintyWrapper(inner, with_stats(inner.envs[0]), standardise=standardise)
        return make_env(env_id, with_stats, standardise=standardise)

    with pytest.raises(ValueError, match="standardise in one place"):
        algo("MlpPolicy", make(True), standardise_rewards=True, **small)
    for wrapper_flag, agent_flag in ((True, False), (False, True)):
        model = algo("MlpPolicy", make(wrapper_flag), standardise_rewards=agent_flag, seed=0, **small)
        model.learn(STEPS)
        # offsets aligned to the posterior's label mean (-0.5), nothing rescaled: what the wrapper reports
        expected = [[3.0 - 1.0 - 0.5, -1.0 + 2.0 - 0.5]] * 16
        np.testing.assert_allclose(model.replay_buffer.sample(16).rewards.numpy(), expected)
