"""Member rollout buffers (agents/risk_ppo/buffers.py): per-member GAE, risk weighting, memory."""

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer

from ruagent.agents.risk_ppo.buffers import DictRiskRolloutBuffer, RiskRolloutBuffer

N_STEPS, N_ENVS, K = 16, 3, 4
OBS_SPACE = spaces.Box(-1.0, 1.0, shape=(5,), dtype=np.float32)
ACTION_SPACE = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)


def random_rollout(seed):
    """Member rewards/values (n_steps, n_envs, K), episode starts (n_steps, n_envs), last values and dones."""
    rng = np.random.default_rng(seed)
    return {
        "rewards": rng.normal(size=(N_STEPS, N_ENVS, K)).astype(np.float32),
        "values": rng.normal(size=(N_STEPS, N_ENVS, K)).astype(np.float32),
        "starts": (rng.random((N_STEPS, N_ENVS)) < 0.2).astype(np.float32),
        "last_values": rng.normal(size=(N_ENVS, K)).astype(np.float32),
        "dones": rng.random(N_ENVS) < 0.5,
        "obs": rng.normal(size=(N_STEPS, N_ENVS, 5)).astype(np.float32),
    }


def fill(buffer, rollout):
    for step in range(N_STEPS):
        buffer.add(
            rollout["obs"][step],
            np.zeros((N_ENVS, 2), dtype=np.float32),
            np.zeros(N_ENVS, dtype=np.float32),
            rollout["starts"][step],
            th.as_tensor(rollout["values"][step]),
            th.zeros(N_ENVS),
            member_rewards=rollout["rewards"][step],
        )
    buffer.compute_returns_and_advantage(th.as_tensor(rollout["last_values"]), rollout["dones"])


@pytest.mark.parametrize(("gamma", "gae_lambda"), [(0.99, 0.95), (0.9, 1.0), (1.0, 0.0)])
def test_each_member_gets_exactly_sb3s_gae(gamma, gae_lambda):
    rollout = random_rollout(0)
    buffer = RiskRolloutBuffer(N_STEPS, OBS_SPACE, ACTION_SPACE, "cpu", gae_lambda, gamma, N_ENVS, n_members=K)
    fill(buffer, rollout)
    for k in range(K):
        reference = RolloutBuffer(N_STEPS, OBS_SPACE, ACTION_SPACE, "cpu", gae_lambda, gamma, N_ENVS)
        for step in range(N_STEPS):
            reference.add(
                rollout["obs"][step],
                np.zeros((N_ENVS, 2), dtype=np.float32),
                rollout["rewards"][step, :, k],
                rollout["starts"][step],
                th.as_tensor(rollout["values"][step, :, k]),
                th.zeros(N_ENVS),
            )
        reference.compute_returns_and_advantage(th.as_tensor(rollout["last_values"][:, k]), rollout["dones"])
        np.testing.assert_allclose(buffer.member_advantages[..., k], reference.advantages, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(buffer.member_returns[..., k], reference.returns, rtol=1e-6, atol=1e-6)


def test_combine_scalarises_and_samples_carry_all_members():
    rollout = random_rollout(1)
    buffer = RiskRolloutBuffer(N_STEPS, OBS_SPACE, ACTION_SPACE, "cpu", 0.95, 0.99, N_ENVS, n_members=K)
    fill(buffer, rollout)
    weights = np.array([0.1, 0.2, 0.3, 0.4])
    buffer.combine(weights)
    np.testing.assert_allclose(buffer.advantages, buffer.member_advantages @ weights, atol=1e-6)
    np.testing.assert_allclose(buffer.returns - buffer.values, buffer.advantages, atol=1e-5)
    member_returns = buffer.member_returns.copy()
    seen = 0
    for batch in buffer.get(batch_size=10):
        assert batch.old_values.shape == batch.returns.shape == (len(batch.advantages), K)
        seen += len(batch.advantages)
    assert seen == N_STEPS * N_ENVS
    # get() flattens (n_steps, n_envs, K) env-major, like SB3's swap_and_flatten.
    np.testing.assert_array_equal(buffer.member_returns, member_returns.swapaxes(0, 1).reshape(-1, K))


def test_start_values_average_over_episode_starts_or_everything():
    rollout = random_rollout(2)
    buffer = RiskRolloutBuffer(N_STEPS, OBS_SPACE, ACTION_SPACE, "cpu", 0.95, 0.99, N_ENVS, n_members=K)
    fill(buffer, rollout)
    starts = rollout["starts"].astype(bool)
    np.testing.assert_allclose(buffer.start_values("value"), rollout["values"][starts].mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(buffer.start_values("return"), buffer.member_returns[starts].mean(axis=0), rtol=1e-6)
    rollout["starts"][:] = 0.0
    buffer.reset()
    fill(buffer, rollout)
    everything = rollout["values"].mean(axis=(0, 1), dtype=np.float64)
    np.testing.assert_allclose(buffer.start_values("value"), everything, rtol=1e-6)


@pytest.mark.parametrize("k", [1, 10, 100])
def test_memory_grows_by_sixteen_bytes_per_member_per_transition(k):
    buffer = RiskRolloutBuffer(N_STEPS, OBS_SPACE, ACTION_SPACE, "cpu", n_envs=N_ENVS, n_members=k)
    obs_bytes, action_bytes = 5 * 4, 2 * 4
    assert buffer.nbytes() == N_STEPS * N_ENVS * (obs_bytes + action_bytes + 24 + 16 * k)


def test_dict_buffer_matches_the_box_buffer():
    rollout = random_rollout(3)
    box = RiskRolloutBuffer(N_STEPS, OBS_SPACE, ACTION_SPACE, "cpu", 0.95, 0.99, N_ENVS, n_members=K)
    fill(box, rollout)
    dict_buffer = DictRiskRolloutBuffer(
        N_STEPS, spaces.Dict({"x": OBS_SPACE}), ACTION_SPACE, "cpu", 0.95, 0.99, N_ENVS, n_members=K
    )
    for step in range(N_STEPS):
        dict_buffer.add(
            {"x": rollout["obs"][step]},
            np.zeros((N_ENVS, 2), dtype=np.float32),
            np.zeros(N_ENVS, dtype=np.float32),
            rollout["starts"][step],
            th.as_tensor(rollout["values"][step]),
            th.zeros(N_ENVS),
            member_rewards=rollout["rewards"][step],
        )
    dict_buffer.compute_returns_and_advantage(th.as_tensor(rollout["last_values"]), rollout["dones"])
    np.testing.assert_array_equal(dict_buffer.member_advantages, box.member_advantages)
    dict_buffer.combine(np.full(K, 1 / K))
    batch = next(dict_buffer.get())
    assert batch.observations["x"].shape == (N_STEPS * N_ENVS, 5) and batch.returns.shape == (N_STEPS * N_ENVS, K)


def test_wrong_shapes_and_sizes_are_refused():
    with pytest.raises(ValueError, match="n_members"):
        RiskRolloutBuffer(N_STEPS, OBS_SPACE, ACTION_SPACE, n_members=0)
    buffer = RiskRolloutBuffer(N_STEPS, OBS_SPACE, ACTION_SPACE, "cpu", n_envs=N_ENVS, n_members=K)
    with pytest.raises(AssertionError):
        buffer.add(
            np.zeros((N_ENVS, 5)),
            np.zeros((N_ENVS, 2)),
            np.zeros(N_ENVS),
            np.zeros(N_ENVS),
            th.zeros(N_ENVS, K),
            th.zeros(N_ENVS),
            member_rewards=np.zeros((N_ENVS, K + 1), dtype=np.float32),
        )
