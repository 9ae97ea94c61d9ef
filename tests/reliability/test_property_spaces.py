"""Property tests over random spaces and batches: work with the right shapes or raise the declared error.

Every test draws observation and action spaces (:mod:`.strategies`: Box of random shapes
with possibly infinite bounds, Discrete with start offsets, MultiDiscrete, MultiBinary,
nested Dict/Tuple, and unsupported Text/Sequence leaves) and seeded batches of their values.
``derandomize=True`` makes the generated cases the same on every run (CI determinism);
``python -m pytest tests/reliability/test_property_spaces.py --hypothesis-show-statistics``
prints how many each test ran.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

from ruagent.data import Transitions, collect_transitions
from ruagent.features import Featuriser
from ruagent.reward_models.base import SpaceMismatchError, load_reward_model
from ruagent.reward_models.ensemble import EnsembleRewardModel
from ruagent.reward_models.linear import BayesianLinearRewardModel
from ruagent.spaces import UnsupportedSpaceError, spaces_equal
from ruagent.wrappers import MODES, RewardUncertaintyWrapper, VecRewardUncertaintyWrapper

from .strategies import (
    RandomSpaceEnv,
    action_spaces_for_vec_env,
    any_spaces,
    batch_of,
    is_supported,
    observation_spaces_for_vec_env,
    seeds,
    supported_spaces,
)

N_MEMBERS = 3
batch_sizes = st.integers(1, 4)


def cases(n: int) -> settings:
    """``n`` generated cases, the same ones every run, no per-case deadline (shared CI cores)."""
    return settings(
        max_examples=n,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],  # no slow "explain" on failure
    )


def small_model(family: str, observation_space, action_space, seed: int = 0):
    """A small posterior of either family (constructing it on an unsupported space raises)."""
    if family == "ensemble":
        return EnsembleRewardModel(
            observation_space, action_space, n_members=N_MEMBERS, hidden_sizes=(8,), seed=seed
        )
    return BayesianLinearRewardModel(observation_space, action_space, n_members=N_MEMBERS, seed=seed)


def transitions(observation_space, action_space, batch_size: int, seed: int):
    obs, _ = batch_of(observation_space, batch_size, seed)
    action, _ = batch_of(action_space, batch_size, seed + 1)
    next_obs, _ = batch_of(observation_space, batch_size, seed + 2)
    return obs, action, next_obs


def row_flattening(space, rows) -> np.ndarray:
    """gymnasium's own flattening of each row (the reference encoding), as float32 (B, flatdim)."""
    return np.stack([spaces.flatten(space, row).astype(np.float32) for row in rows])


# ---------------------------------------------------------------------------- featuriser
@cases(500)
@given(any_spaces, any_spaces, batch_sizes, seeds)
def test_featuriser_equals_gymnasium_flatten_or_names_the_unsupported_space(
    observation_space, action_space, batch_size, seed
):
    if not (is_supported(observation_space) and is_supported(action_space)):
        with pytest.raises(UnsupportedSpaceError, match="not supported"):
            Featuriser(observation_space, action_space)
        return
    featuriser = Featuriser(observation_space, action_space)
    assert featuriser.dim == 2 * spaces.flatdim(observation_space) + spaces.flatdim(action_space)
    obs, obs_rows = batch_of(observation_space, batch_size, seed)
    action, action_rows = batch_of(action_space, batch_size, seed + 1)
    next_obs, next_rows = batch_of(observation_space, batch_size, seed + 2)

    features = featuriser(obs, action, next_obs)

    assert features.shape == (batch_size, featuriser.dim) and features.dtype == np.float32
    expected = np.concatenate(
        [
            row_flattening(observation_space, obs_rows),
            row_flattening(action_space, action_rows),
            row_flattening(observation_space, next_rows),
        ],
        axis=1,
    )
    np.testing.assert_array_equal(features, expected)


@cases(100)
@given(supported_spaces, supported_spaces, batch_sizes, seeds)
def test_featuriser_refuses_unequal_batch_sizes_with_a_value_error(observation_space, action_space, batch_size, seed):
    featuriser = Featuriser(observation_space, action_space)
    obs, _, next_obs = transitions(observation_space, action_space, batch_size + 1, seed)
    shorter_actions = transitions(observation_space, action_space, batch_size, seed + 3)[1]

    with pytest.raises(ValueError, match="expected"):
        featuriser(obs, shorter_actions, next_obs)


@cases(100)
@given(supported_spaces, supported_spaces, batch_sizes, seeds)
def test_featuriser_refuses_an_unbatched_observation_with_a_value_error(
    observation_space, action_space, batch_size, seed
):
    featuriser = Featuriser(observation_space, action_space)
    _, action, next_obs = transitions(observation_space, action_space, batch_size, seed)
    observation_space.seed(seed)
    single = observation_space.sample()  # one observation without its batch axis

    with pytest.raises(ValueError, match="batch"):
        featuriser(single, action, next_obs)


# ---------------------------------------------------------------------------- labelled transitions
@cases(100)
@given(supported_spaces, supported_spaces, seeds)
def test_collected_transitions_round_trip_through_a_label_file(observation_space, action_space, seed):
    env = RandomSpaceEnv(observation_space, action_space, horizon=3)
    labels = collect_transitions(env, 7, seed=seed)
    with tempfile.TemporaryDirectory() as folder:
        labels.save(Path(folder) / "labels.npz")
        loaded = Transitions.load(Path(folder) / "labels.npz")

    assert len(loaded) == 7
    featuriser = Featuriser(observation_space, action_space)
    np.testing.assert_array_equal(
        featuriser(loaded.obs, loaded.action, loaded.next_obs), featuriser(labels.obs, labels.action, labels.next_obs)
    )
    np.testing.assert_array_equal(loaded.reward, labels.reward)
    np.testing.assert_array_equal(loaded.truncated, np.arange(1, 8) % 3 == 0)


# ---------------------------------------------------------------------------- posteriors
@cases(150)
@given(st.sampled_from(["ensemble", "linear"]), any_spaces, any_spaces, batch_sizes, seeds)
def test_posteriors_fit_predict_K_by_B_and_round_trip_through_a_file(
    family, observation_space, action_space, batch_size, seed
):
    if not (is_supported(observation_space) and is_supported(action_space)):
        with pytest.raises(UnsupportedSpaceError, match="not supported"):
            small_model(family, observation_space, action_space)
        return
    model = small_model(family, observation_space, action_space, seed % 1000)
    n_labels = 12
    labels = (*transitions(observation_space, action_space, n_labels, seed), np.linspace(-1.0, 1.0, n_labels))
    if family == "ensemble":
        model.fit(labels, epochs=3, batch_size=8, progress_bar=False)
    else:
        model.fit(labels)
    batch = transitions(observation_space, action_space, batch_size, seed + 7)

    rewards = model.predict(*batch)

    assert rewards.shape == (N_MEMBERS, batch_size) and rewards.dtype == np.float32
    assert np.isfinite(rewards).all()
    np.testing.assert_array_equal(model.predict(*batch), rewards)  # members are fixed functions
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "posterior.pt"
        model.save(path)
        loaded = load_reward_model(path)
    assert spaces_equal(loaded.observation_space, observation_space)
    assert spaces_equal(loaded.action_space, action_space)
    np.testing.assert_array_equal(loaded.predict(*batch), rewards)


# ---------------------------------------------------------------------------- wrapper skins
def _check_step_info(info: dict, reward: float) -> None:
    members = info["reward_members"]
    assert members.shape == (N_MEMBERS,) and members.dtype == np.float32
    assert np.isfinite(members).all() and np.isfinite(reward)
    assert isinstance(info["env_reward"], float)
    # reward_mean/std are the posterior's moments (analytic where the family has them), of which the
    # K members are draws: their average lies within a few posterior stds of the mean
    assert np.isfinite(info["reward_mean"]) and info["reward_std"] >= 0
    gap = abs(info["reward_mean"] - float(members.astype(np.float64).mean()))
    assert gap <= 4 * info["reward_std"] + 1e-5, (gap, info["reward_std"])


@cases(120)
@given(
    st.sampled_from(["ensemble", "linear"]),
    st.sampled_from(MODES),
    supported_spaces,
    supported_spaces,
    any_spaces,
    seeds,
)
def test_gym_skin_hands_out_posterior_rewards_or_refuses_a_model_of_other_spaces(
    family, mode, observation_space, action_space, model_observation_space, seed
):
    env = Monitor(RandomSpaceEnv(observation_space, action_space, horizon=3))
    model_space = observation_space if seed % 2 else model_observation_space
    if not is_supported(model_space):
        return  # the model itself cannot exist; the featuriser test covers that refusal
    model = small_model(family, model_space, action_space, seed % 1000)
    if not spaces_equal(model_space, observation_space):
        with pytest.raises(SpaceMismatchError, match="observation space"):
            RewardUncertaintyWrapper(env, model, mode=mode, seed=seed)
        return
    wrapped = RewardUncertaintyWrapper(env, model, mode=mode, seed=seed)
    wrapped.reset(seed=seed)
    wrapped.action_space.seed(seed)
    for step in range(6):  # two episodes of 3 steps
        _, reward, _, truncated, info = wrapped.step(wrapped.action_space.sample())
        assert isinstance(reward, float)
        _check_step_info(info, reward)
        if mode not in ("lcb", "mean"):  # mean - c*std, and the analytic mean, may leave the members' range
            members = info["reward_members"]
            assert members.min() - 1e-5 <= reward <= members.max() + 1e-5
        if truncated:
            assert step % 3 == 2 and info["proxy_episode"]["l"] == 3
            assert info["episode"]["l"] == 3  # the inner Monitor's (true) record stays
            wrapped.reset()


@cases(120)
@given(
    st.sampled_from(["ensemble", "linear"]),
    st.sampled_from(MODES),
    observation_spaces_for_vec_env,
    action_spaces_for_vec_env,
    st.integers(1, 3),
    seeds,
)
def test_vec_skin_gives_B_rewards_with_one_posterior_call(family, mode, observation_space, action_space, n_envs, seed):
    venv = DummyVecEnv(
        [lambda: Monitor(RandomSpaceEnv(observation_space, action_space, horizon=3))] * n_envs
    )
    model = small_model(family, observation_space, action_space, seed % 1000)
    predict_moments, calls = model.predict_moments, []
    model.predict_moments = lambda *batch: calls.append(len(calls)) or predict_moments(*batch)
    wrapped = VecRewardUncertaintyWrapper(venv, model, mode=mode, seed=seed)
    wrapped.seed(seed)
    wrapped.reset()
    action_space.seed(seed)
    for step in range(4):
        actions = np.stack([np.asarray(action_space.sample()) for _ in range(n_envs)])
        _, rewards, dones, infos = wrapped.step(actions)
        assert rewards.shape == (n_envs,) and rewards.dtype == np.float32
        for reward, info in zip(rewards, infos):
            _check_step_info(info, float(reward))
        assert len(calls) == step + 1  # one batched call per VecEnv step, whatever n_envs
        assert dones.all() == (step == 2)
        if dones.all():
            assert all(info["proxy_episode"]["l"] == 3 for info in infos)


@cases(40)
@given(st.sampled_from(MODES), supported_spaces, supported_spaces, seeds)
@pytest.mark.filterwarnings("ignore::UserWarning:gymnasium.*")
def test_wrapped_env_passes_gymnasiums_env_checker(mode, observation_space, action_space, seed):
    env = Monitor(RandomSpaceEnv(observation_space, action_space, horizon=3))
    model = small_model("linear", observation_space, action_space, seed % 1000)
    check_env(RewardUncertaintyWrapper(env, model, mode=mode, seed=seed), skip_render_check=True)
