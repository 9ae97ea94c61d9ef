"""PosteriorRewardCore: mode maths against ruagent.risk, member sampling, episode bookkeeping."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from ruagent import risk
from ruagent.wrappers.core import MODES, NonFiniteRewardError, PosteriorRewardCore, batch_one, replace_rows

N_ENVS = 4


def _batch(env, n, seed):
    rng = np.random.default_rng(seed)
    env.observation_space.seed(seed)
    env.action_space.seed(seed)
    obs = np.stack([env.observation_space.sample() for _ in range(n)])
    actions = np.array([env.action_space.sample() for _ in range(n)])
    next_obs = obs + rng.normal(scale=0.1, size=obs.shape).astype(np.float32)
    return obs, actions, next_obs


@pytest.fixture
def setting(random_model_for):
    env = gym.make("CartPole-v1")
    probs = np.array([0.1, 0.3, 0.0, 0.2, 0.4])
    return env, random_model_for(env, n_members=5, seed=3, member_probs=probs)


@pytest.mark.parametrize(
    ("mode", "measure"),
    [
        ("mean", risk.make("mean")),
        ("lcb", risk.make("mean_std", lam=1.7)),
        ("worst", risk.make("worst")),
        ("cvar", risk.make("cvar", alpha=0.25)),
    ],
)
def test_risk_modes_scalarise_members_with_ruagent_risk_and_member_probs(setting, mode, measure):
    env, model = setting
    core = PosteriorRewardCore(model, N_ENVS, mode=mode, lcb_c=1.7, cvar_alpha=0.25, seed=0)
    core.start_episodes(np.ones(N_ENVS, bool))
    obs, actions, next_obs = _batch(env, N_ENVS, seed=0)
    out = core.step(obs, actions, next_obs, np.zeros(N_ENVS, bool))
    members = model.predict(obs, actions, next_obs)
    np.testing.assert_array_equal(out.members, members)
    expected, _ = measure(members, model.member_probs)
    np.testing.assert_allclose(out.rewards, expected, rtol=1e-6, atol=1e-6)
    assert out.rewards.dtype == np.float32 and out.rewards.shape == (N_ENVS,)
    # mean/std weighted by member_probs (member 2 has probability 0 and must not count)
    p = model.member_probs
    np.testing.assert_allclose(out.mean, p @ members, rtol=1e-6)
    np.testing.assert_allclose(out.std, np.sqrt(p @ (members - p @ members) ** 2), rtol=1e-5)
    assert not np.allclose(out.mean, members.mean(axis=0))


def test_sample_keeps_one_member_per_episode_and_redraws_at_episode_start(setting):
    env, model = setting
    core = PosteriorRewardCore(model, N_ENVS, mode="sample", seed=5)
    core.start_episodes(np.ones(N_ENVS, bool))
    chosen = core.sampled_members
    for step in range(3):
        obs, actions, next_obs = _batch(env, N_ENVS, seed=step)
        out = core.step(obs, actions, next_obs, np.zeros(N_ENVS, bool))
        np.testing.assert_array_equal(out.rewards, out.members[chosen, np.arange(N_ENVS)])
        np.testing.assert_array_equal(core.sampled_members, chosen)
    draws = []
    for _ in range(50):
        core.start_episodes(np.array([True, False, False, False]))
        draws.append(core.sampled_members)
    draws = np.array(draws)
    assert (draws[:, 1:] == chosen[1:]).all(), "only the restarting env redraws"
    assert len(set(draws[:, 0])) > 1


@pytest.mark.parametrize("mode", ["sample", "sample_step"])
def test_sampled_members_follow_member_probs(setting, mode):
    env, model = setting
    core = PosteriorRewardCore(model, N_ENVS, mode=mode, seed=11)
    n_draws = 4000
    counts = np.zeros(model.n_members)
    obs, actions, next_obs = _batch(env, N_ENVS, seed=0)
    for _ in range(n_draws // N_ENVS):
        core.start_episodes(np.ones(N_ENVS, bool))
        if mode == "sample_step":
            core.step(obs, actions, next_obs, np.zeros(N_ENVS, bool))
        np.add.at(counts, core.sampled_members, 1)
    frequencies = counts / counts.sum()
    assert counts[2] == 0, "a zero-probability member is never drawn"
    # binomial standard error is <= 0.008 at n=4000; allow 4 of them
    np.testing.assert_allclose(frequencies, model.member_probs, atol=0.032)


def test_same_seed_same_draws_and_env_i_uses_seed_plus_i(setting):
    _, model = setting
    a = PosteriorRewardCore(model, 3, mode="sample", seed=7)
    b = PosteriorRewardCore(model, 1, mode="sample", seed=9)
    draws_a, draws_b = [], []
    for _ in range(20):
        a.start_episodes(np.ones(3, bool))
        b.start_episodes(np.ones(1, bool))
        draws_a.append(a.sampled_members[2])
        draws_b.append(b.sampled_members[0])
    assert draws_a == draws_b


def test_episode_summaries_are_sums_of_step_values(setting):
    env, model = setting
    core = PosteriorRewardCore(model, 2, mode="cvar", cvar_alpha=0.5, seed=0)
    core.start_episodes(np.ones(2, bool))
    rewards, means, members = [], [], []
    for step in range(5):
        obs, actions, next_obs = _batch(env, 2, seed=step)
        done = np.array([step == 4, False])
        out = core.step(obs, actions, next_obs, done)
        rewards.append(out.rewards[0])
        means.append(out.mean[0])
        members.append(out.members[:, 0])
    assert list(out.episodes) == [0]
    episode = out.episodes[0]
    assert episode["l"] == 5
    assert episode["r"] == pytest.approx(float(np.sum(rewards, dtype=np.float64)), rel=1e-6)
    assert episode["r_mean"] == pytest.approx(float(np.sum(means)), rel=1e-6)
    np.testing.assert_allclose(episode["r_members"], np.sum(members, axis=0), rtol=1e-5)
    core.start_episodes(done)
    out = core.step(obs, actions, next_obs, np.array([True, True]))
    assert out.episodes[0]["l"] == 1 and out.episodes[1]["l"] == 6


def test_standardise_uses_the_models_label_statistics(setting):
    env, model = setting
    model.reward_loc = np.arange(5, dtype=np.float32)
    model.reward_scale = np.full(5, 2.0, dtype=np.float32)
    core = PosteriorRewardCore(model, N_ENVS, mode="worst", standardise=True)
    obs, actions, next_obs = _batch(env, N_ENVS, seed=0)
    out = core.step(obs, actions, next_obs, np.zeros(N_ENVS, bool))
    common = model.member_probs @ model.reward_loc  # offsets aligned to it, nothing rescaled
    standardised = model.predict(obs, actions, next_obs) - model.reward_loc[:, None] + common
    np.testing.assert_allclose(out.members, standardised, rtol=1e-6)
    np.testing.assert_allclose(out.rewards, risk.worst(standardised, model.member_probs)[0], rtol=1e-6)


def test_standardise_without_statistics_warns(setting):
    _, model = setting
    with pytest.warns(UserWarning, match="no label-data statistics"):
        PosteriorRewardCore(model, 1, standardise=True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "median"}, "unknown mode 'median'"),
        ({"mode": "lcb", "lcb_c": -1.0}, "lcb_c must be >= 0"),
        ({"mode": "cvar", "cvar_alpha": 0.0}, r"cvar_alpha must be in \(0, 1\]"),
    ],
)
def test_bad_parameters_are_refused_by_name(setting, kwargs, message):
    _, model = setting
    with pytest.raises(ValueError, match=message):
        PosteriorRewardCore(model, 1, **kwargs)


def test_modes_constant_lists_every_mode():
    assert set(MODES) == {"mean", "sample", "sample_step", "lcb", "worst", "cvar"}


def test_batch_one_and_replace_rows_handle_nested_observations():
    single = {"a": np.array([1.0, 2.0]), "b": (3, np.array([4]))}
    batched = batch_one(single)
    assert batched["a"].shape == (1, 2) and batched["b"][0].shape == (1,) and batched["b"][1].shape == (1, 1)
    batch = {"a": np.zeros((3, 2)), "b": (np.zeros(3, dtype=int), np.zeros((3, 1), dtype=int))}
    replaced = replace_rows(batch, {1: single})
    np.testing.assert_array_equal(replaced["a"], [[0, 0], [1, 2], [0, 0]])
    np.testing.assert_array_equal(replaced["b"][0], [0, 3, 0])
    np.testing.assert_array_equal(replaced["b"][1], [[0], [4], [0]])
    assert batch["a"].sum() == 0, "the input batch is not modified"


@pytest.mark.parametrize("mode", ["mean", "lcb"])
def test_mean_and_lcb_use_the_families_analytic_posterior_moments(mode):
    """With three draws of a linear posterior, their average is not the posterior mean φᵀμ: the
    mean mode, info's reward_mean/std and lcb must be the analytic ones."""
    from ruagent.reward_models import BayesianLinearRewardModel

    env = gym.make("CartPole-v1")
    obs, actions, next_obs = _batch(env, 64, seed=1)
    model = BayesianLinearRewardModel(env.observation_space, env.action_space, n_members=3, seed=0,
                                      prior_reward_scale=1.0)
    model.fit((obs, actions, next_obs, obs[:, 0]))  # the pole velocity columns stay unconstrained
    core = PosteriorRewardCore(model, N_ENVS, mode=mode, lcb_c=2.0, seed=0)
    core.start_episodes(np.ones(N_ENVS, bool))
    out = core.step(obs[:N_ENVS] * 5, actions[:N_ENVS], next_obs[:N_ENVS] * 5, np.zeros(N_ENVS, bool))
    phi = model.basis(model.features(obs[:N_ENVS] * 5, actions[:N_ENVS], next_obs[:N_ENVS] * 5))
    mean, std = phi @ model.posterior_mean, np.sqrt(np.einsum("bp,pq,bq->b", phi, model.posterior_cov, phi))
    np.testing.assert_allclose(out.mean, mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.std, std, rtol=1e-5, atol=1e-6)
    assert not np.allclose(out.mean, out.members.mean(axis=0), atol=1e-3)
    expected = mean if mode == "mean" else mean - 2.0 * std
    np.testing.assert_allclose(out.rewards, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_finiteness_check_refuses_nan_and_inf_and_accepts_sums_that_overflow(setting, bad):
    env, model = setting
    core = PosteriorRewardCore(model, N_ENVS)
    obs, actions, next_obs = _batch(env, N_ENVS, seed=0)
    dones = np.zeros(N_ENVS, dtype=bool)
    huge = np.full(N_ENVS, np.finfo(np.float64).max)  # finite; their sum is inf
    with np.errstate(over="ignore"):
        core.step(obs, actions, next_obs, dones, huge)
    env_rewards = np.zeros(N_ENVS, dtype=np.float32)
    env_rewards[2] = bad
    with pytest.raises(NonFiniteRewardError, match=r"env 2, step 2 .* non-finite reward"):
        core.step(obs, actions, next_obs, dones, env_rewards)


def test_starting_episodes_zero_only_their_own_sums(setting):
    env, model = setting
    core = PosteriorRewardCore(model, N_ENVS)
    obs, actions, next_obs = _batch(env, N_ENVS, seed=1)
    never = np.zeros(N_ENVS, dtype=bool)
    first = core.step(obs, actions, next_obs, never)
    core.start_episodes(np.array([True, False, False, True]))
    ended = core.step(obs, actions, next_obs, np.ones(N_ENVS, dtype=bool)).episodes
    for i, factor in zip(range(N_ENVS), (1, 2, 2, 1)):
        assert ended[i]["l"] == factor
        np.testing.assert_allclose(ended[i]["r"], factor * first.rewards[i], rtol=1e-6)
        np.testing.assert_allclose(ended[i]["r_mean"], factor * first.mean[i], rtol=1e-6)
        np.testing.assert_allclose(ended[i]["r_members"], factor * first.members[:, i], rtol=1e-6)
