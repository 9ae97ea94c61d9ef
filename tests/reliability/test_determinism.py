"""On CPU, the same seed repeats itself bit for bit: posterior fits, wrapper rewards, short agent runs.

Each test runs the same seeded computation twice in this process and compares exactly
(``np.array_equal`` / ``torch.equal``, no tolerance); a different seed must change the
result, so the test cannot pass because the seed is ignored. What is *not* deterministic
(SubprocVecEnv timing, GPU kernels) is listed in docs/reliability.md.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3.common.env_util import make_vec_env

from ruagent.agents import RiskPPO
from ruagent.data import collect_transitions
from ruagent.reward_models.ensemble import EnsembleRewardModel
from ruagent.reward_models.linear import BayesianLinearRewardModel
from ruagent.wrappers import MODES, VecRewardUncertaintyWrapper

ENV_ID = "CartPole-v1"
N_LABELS = 200


@pytest.fixture(scope="module")
def labels():
    return collect_transitions(ENV_ID, N_LABELS, seed=0)


@pytest.fixture
def one_torch_thread():
    """The ensemble's and PPO's CPU kernels are compared at one thread count; use one (fastest for tiny nets)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def fitted(family: str, labels, seed: int):
    space = gym.make(ENV_ID)
    if family == "ensemble":
        model = EnsembleRewardModel(
            space.observation_space, space.action_space, n_members=4, hidden_sizes=(16, 16), seed=seed
        )
        model.fit(labels, epochs=5, progress_bar=False)
    else:
        model = BayesianLinearRewardModel(
            space.observation_space, space.action_space, n_members=4, random_fourier_features=32, seed=seed
        ).fit(labels)
    return model


def test_collected_transitions_repeat_with_the_seed():
    first, again = collect_transitions(ENV_ID, 50, seed=3), collect_transitions(ENV_ID, 50, seed=3)
    for a, b in zip(first._fields(), again._fields()):
        assert np.array_equal(a, b)
    assert not np.array_equal(collect_transitions(ENV_ID, 50, seed=4).obs, first.obs)


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("family", ["ensemble", "linear"])
def test_posterior_fit_is_bit_identical_for_the_same_seed(labels, family):
    first, again, other = fitted(family, labels, 7), fitted(family, labels, 7), fitted(family, labels, 8)
    first_state, again_state = first._get_state(), again._get_state()

    assert first_state[0] == again_state[0]
    assert first_state[1].keys() == again_state[1].keys()
    assert all(torch.equal(first_state[1][name], again_state[1][name]) for name in first_state[1])
    batch = labels[:64]
    rewards = first.predict(batch.obs, batch.action, batch.next_obs)
    assert np.array_equal(rewards, again.predict(batch.obs, batch.action, batch.next_obs))
    assert not np.array_equal(rewards, other.predict(batch.obs, batch.action, batch.next_obs))


def wrapper_rewards(model, mode: str, seed: int, n_steps: int = 60) -> np.ndarray:
    venv = VecRewardUncertaintyWrapper(make_vec_env(ENV_ID, n_envs=3, seed=seed), model, mode=mode, seed=seed)
    venv.reset()
    rng = np.random.default_rng(seed)
    rewards = [venv.step(rng.integers(0, 2, size=3))[1] for _ in range(n_steps)]
    return np.stack(rewards)


@pytest.mark.parametrize("mode", MODES)
def test_wrapper_rewards_are_bit_identical_for_the_same_seed(labels, mode):
    model = fitted("linear", labels, 0)

    first = wrapper_rewards(model, mode, seed=11)

    assert np.array_equal(first, wrapper_rewards(model, mode, seed=11))
    assert not np.array_equal(first, wrapper_rewards(model, mode, seed=12))


def short_run(model, seed: int) -> dict[str, torch.Tensor]:
    venv = VecRewardUncertaintyWrapper(make_vec_env(ENV_ID, n_envs=2, seed=seed), model, mode="mean", seed=seed)
    agent = RiskPPO(
        "MlpPolicy", venv, risk="cvar", risk_kwargs={"alpha": 0.5}, n_steps=32, batch_size=32, n_epochs=2,
        policy_kwargs={"net_arch": [16]}, seed=seed, device="cpu",
    )
    agent.learn(128)
    return {name: tensor.clone() for name, tensor in agent.policy.state_dict().items()}


@pytest.mark.usefixtures("one_torch_thread")
def test_short_riskppo_run_gives_bit_identical_parameters_for_the_same_seed(labels):
    model = fitted("ensemble", labels, 0)

    first, again, other = short_run(model, 5), short_run(model, 5), short_run(model, 6)

    assert first.keys() == again.keys()
    assert all(torch.equal(first[name], again[name]) for name in first)
    assert not all(torch.equal(first[name], other[name]) for name in first)
