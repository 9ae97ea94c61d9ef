"""agents/replay_buffers.py: sampled member rewards come from the current posterior, on the
transitions the wrapper scored (terminal observations, env actions), and nothing else changes."""

from __future__ import annotations

import pickle

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3.common.callbacks import BaseCallback

from ruagent.agents import RiskDQN, RiskSAC
from tests.agents.conftest import _flat
from tests.agents.test_offpolicy import DQN_SMALL, SAC_SMALL


class TransitionMembers:
    """Factory of a K-member linear posterior on (obs, action, next_obs): every input matters."""

    @staticmethod
    def build(n_members: int = 3, seed: int = 0):
        from ruagent.reward_models.base import RewardModel

        class Members(RewardModel):
            family = "tests_transition_members"

            def __init__(self, observation_space, action_space):
                super().__init__(observation_space, action_space, n_members)
                rng = np.random.default_rng(seed)
                self.obs_w = rng.normal(size=(n_members, gym.spaces.flatdim(observation_space)))
                self.next_w = rng.normal(size=(n_members, gym.spaces.flatdim(observation_space)))
                n_action = 1 if isinstance(action_space, gym.spaces.Discrete) else gym.spaces.flatdim(action_space)
                self.action_w = rng.normal(size=(n_members, n_action))

            def _predict(self, obs, action, next_obs, batch_size):
                action = np.asarray(action, dtype=np.float64).reshape(batch_size, -1)
                return (self.obs_w @ _flat(obs, batch_size).T + self.action_w @ action.T
                        + self.next_w @ _flat(next_obs, batch_size).T)

            def _get_state(self):
                return {}, {}

            @classmethod
            def _from_state(cls, observation_space, action_space, config, tensors):
                return cls(observation_space, action_space)

        return lambda env: Members(env.observation_space, env.action_space)


class MemberRecorder(BaseCallback):
    """The wrapper's info["reward_members"] of every step, (steps, n_envs, K)."""

    def __init__(self):
        super().__init__()
        self.members: list[np.ndarray] = []

    def _on_step(self) -> bool:
        self.members.append(np.stack([info["reward_members"] for info in self.locals["infos"]]))
        return True


CASES = {
    # Pendulum's actions are stored scaled to [-1, 1] and its bounds are ±2: unscaling matters
    "sac": (RiskSAC, "Pendulum-v1", SAC_SMALL),
    "dqn": (RiskDQN, "CartPole-v1", DQN_SMALL),
}


@pytest.fixture(params=sorted(CASES))
def case(request):
    return CASES[request.param]


def stored(buffer) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All stored (obs, actions, next_obs), flattened over (step, env) in buffer order."""
    n = buffer.pos * buffer.n_envs
    return (buffer.observations[: buffer.pos].reshape(n, -1), buffer.actions[: buffer.pos].reshape(n, -1),
            buffer.next_observations[: buffer.pos].reshape(n, -1))


def test_relabelled_rewards_are_what_the_wrapper_reported(case, make_env):
    # the same posterior on the stored transitions gives exactly the members the wrapper handed out:
    # terminal observations at episode ends (CartPole terminates, a 25-step limit truncates) and env actions
    algo, env_id, small = case
    env = make_env(lambda: gym.make(env_id, max_episode_steps=25), TransitionMembers.build(), n_envs=2)
    model = algo("MlpPolicy", env, seed=0, **small)
    recorder = MemberRecorder()
    model.learn(200, callback=recorder)
    assert model.replay_buffer.dones.sum() >= 4  # episode ends are in the buffer
    members = model.replay_buffer.relabel(*stored(model.replay_buffer))  # (K, N)
    reported = np.concatenate(recorder.members).reshape(-1, 3).T
    np.testing.assert_allclose(members, reported, rtol=1e-6, atol=1e-5)


def test_under_vecnormalize_the_posterior_scores_the_raw_transitions(make_env):
    from stable_baselines3.common.vec_env import VecNormalize

    env = VecNormalize(make_env("CartPole-v1", TransitionMembers.build()), norm_obs=True, norm_reward=True)
    model = RiskDQN("MlpPolicy", env, seed=0, **DQN_SMALL)
    recorder = MemberRecorder()
    model.learn(100, callback=recorder)
    members = model.replay_buffer.relabel(*stored(model.replay_buffer))
    np.testing.assert_allclose(members, np.concatenate(recorder.members).reshape(-1, 3).T, rtol=1e-6, atol=1e-5)
    np.random.seed(0)  # noqa: NPY002
    normalised = model.replay_buffer.sample(16, env=model.get_vec_normalize_env())
    np.random.seed(0)  # noqa: NPY002
    raw = model.replay_buffer.sample(16)
    assert not torch.allclose(normalised.observations, raw.observations)  # the networks see normalised inputs ...
    torch.testing.assert_close(normalised.rewards, raw.rewards)  # ... the posterior the raw ones, unscaled


def test_a_refit_changes_the_sampled_member_rewards_and_nothing_else(case, make_env, linear_members):
    algo, env_id, small = case
    env = make_env(env_id, linear_members(n_members=3), n_envs=2)
    model = algo("MlpPolicy", env, seed=0, **small)
    model.learn(100)
    posterior = env.get_attr("reward_model")[0]

    np.random.seed(7)  # noqa: NPY002  (SB3's buffers sample from NumPy's global generator)
    before = model.replay_buffer.sample(64)
    posterior.weights = posterior.weights * -2.0 + 1.0  # what a refit does: new member functions, in place
    posterior.offsets = posterior.offsets + np.array([1.0, 2.0, 3.0])
    np.random.seed(7)  # noqa: NPY002
    after = model.replay_buffer.sample(64)

    for field in ("observations", "actions", "next_observations", "dones"):
        torch.testing.assert_close(getattr(before, field), getattr(after, field), rtol=0, atol=0)
    assert before.rewards.shape == after.rewards.shape == (64, 3)
    assert not torch.allclose(before.rewards, after.rewards)
    # LinearMembers read next_obs only; the buffer passes every input
    expected = posterior.predict(after.observations.numpy(), after.actions.numpy(), after.next_observations.numpy())
    np.testing.assert_allclose(after.rewards.numpy(), expected.T, rtol=1e-6)


def test_time_limit_truncations_are_not_terminations(make_env, linear_members):
    env = make_env(lambda: gym.make("Pendulum-v1", max_episode_steps=20), linear_members(n_members=2))
    model = RiskSAC("MlpPolicy", env, seed=0, **SAC_SMALL)
    model.learn(60)
    buffer = model.replay_buffer
    truncated = np.flatnonzero(buffer.timeouts[: buffer.pos, 0])
    np.testing.assert_array_equal(truncated, [19, 39, 59])
    assert buffer.dones[truncated, 0].tolist() == [1.0, 1.0, 1.0]  # stored as SB3 stores them ...
    samples = buffer._get_samples(truncated)
    assert samples.dones.flatten().tolist() == [0.0, 0.0, 0.0]  # ... and bootstrapped through when sampled


def test_the_posterior_is_never_pickled_and_is_reattached_on_load(case, make_env, linear_members, tmp_path):
    algo, env_id, small = case
    env = make_env(env_id, linear_members(n_members=2))
    model = algo("MlpPolicy", env, seed=0, **small)
    model.learn(64)
    assert "LinearMembers" not in str(pickle.loads(pickle.dumps(model.replay_buffer)).__dict__)
    model.save_replay_buffer(tmp_path / "buffer.pkl")
    fresh = algo("MlpPolicy", env, seed=1, **small)
    fresh.load_replay_buffer(tmp_path / "buffer.pkl")
    assert fresh.replay_buffer.reward_model is env.get_attr("reward_model")[0]
    assert fresh.replay_buffer.pos == model.replay_buffer.pos
    assert fresh.replay_buffer.sample(4).rewards.shape == (4, 2)


def test_a_buffer_without_a_posterior_says_how_to_attach_one(make_env, linear_members):
    env = make_env("CartPole-v1", linear_members(n_members=2))
    model = RiskDQN("MlpPolicy", env, seed=0, **DQN_SMALL)
    model.learn(40)
    model.replay_buffer.attach(None)
    with pytest.raises(RuntimeError, match="attach"):
        model.replay_buffer.sample(4)
    with pytest.raises(ValueError, match="n_members=2"):
        model.replay_buffer.attach(linear_members(n_members=3)(env.envs[0]))
