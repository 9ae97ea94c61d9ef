"""Labelled transitions: collection (true terminal observations), validation, indexing, files."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from stable_baselines3 import PPO

from ruagent.data import Transitions, collect_transitions, labelled_arrays


class CountdownEnv(gym.Env):
    """obs counts steps from the reset value; episodes end (terminated) at 3, so the true last
    observation (3) differs from every reset observation (0 or 10 + seed offset)."""

    observation_space = spaces.Box(-np.inf, np.inf, (1,), dtype=np.float32)
    action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.count = 0
        return np.array([-1.0], dtype=np.float32), {}

    def step(self, action):
        self.count += 1
        return np.array([self.count], dtype=np.float32), float(action), self.count == 3, False, {}


class DictObsEnv(gym.Env):
    observation_space = spaces.Dict({"pos": spaces.Box(-10, 10, (2,), dtype=np.float32), "key": spaces.Discrete(2)})
    action_space = spaces.Box(-1, 1, (2,), dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = self.np_random.uniform(-1, 1, 2).astype(np.float32)
        return {"pos": self.pos.copy(), "key": 0}, {}

    def step(self, action):
        self.pos = self.pos + action
        return {"pos": self.pos.copy(), "key": int(self.pos[0] > 0)}, -float(np.abs(self.pos).sum()), False, False, {}


def test_terminal_next_obs_is_the_true_last_observation():
    data = collect_transitions(CountdownEnv(), 10, seed=0)
    assert len(data) == 10
    ends = np.flatnonzero(data.terminated)
    np.testing.assert_array_equal(ends, [2, 5, 8])
    np.testing.assert_array_equal(data.next_obs[ends, 0], [3, 3, 3])  # not the reset observation -1
    np.testing.assert_array_equal(data.obs[ends + 1, 0], [-1, -1, -1])  # next transition starts from reset
    continuing = np.setdiff1d(np.arange(9), ends)
    np.testing.assert_array_equal(data.next_obs[continuing], data.obs[continuing + 1])


def test_collect_is_seeded_and_accepts_env_ids():
    first = collect_transitions("CartPole-v1", 300, seed=3)
    second = collect_transitions("CartPole-v1", 300, seed=3)
    for a, b in zip(first._fields(), second._fields()):
        np.testing.assert_array_equal(a, b)
    assert first.obs.shape == (300, 4) and first.action.shape == (300,) and first.reward.dtype == np.float32
    assert first.terminated.any()  # random CartPole episodes end well within 300 steps
    other = collect_transitions("CartPole-v1", 300, seed=4)
    assert not np.array_equal(first.obs, other.obs)


def test_callable_and_sb3_policies():
    always_one = collect_transitions(CountdownEnv(), 6, policy=lambda obs: 1, seed=0)
    np.testing.assert_array_equal(always_one.action, np.ones(6))
    np.testing.assert_array_equal(always_one.reward, np.ones(6))

    env = gym.make("CartPole-v1")
    agent = PPO("MlpPolicy", env, n_steps=64, seed=0, device="cpu")
    from_agent = collect_transitions(env, 30, policy=agent, seed=0)
    assert from_agent.action.shape == (30,) and set(np.unique(from_agent.action)) <= {0, 1}
    with pytest.raises(TypeError, match="policy must be"):
        collect_transitions(CountdownEnv(), 2, policy=42)


def test_dict_observations_are_stacked_per_key():
    data = collect_transitions(DictObsEnv(), 5, seed=0)
    assert set(data.obs) == {"key", "pos"}
    assert data.obs["pos"].shape == (5, 2) and data.obs["key"].shape == (5,)
    np.testing.assert_array_equal(data.next_obs["pos"][:-1], data.obs["pos"][1:])


def test_blackjack_tuple_observations():
    data = collect_transitions("Blackjack-v1", 20, seed=0)
    assert isinstance(data.obs, tuple) and len(data.obs) == 3
    assert all(part.shape == (20,) for part in data.obs)


def test_indexing_concatenation_and_save_load(tmp_path):
    data = collect_transitions(DictObsEnv(), 8, seed=1)
    head, tail = data[:3], data[3:]
    assert len(head) == 3 and len(tail) == 5
    joined = head + tail
    np.testing.assert_array_equal(joined.obs["pos"], data.obs["pos"])
    single = data[-1]
    assert len(single) == 1
    np.testing.assert_array_equal(single.reward, data.reward[-1:])
    mask = data.reward < np.median(data.reward)
    assert len(data[mask]) == mask.sum()

    path = tmp_path / "labels.npz"
    data.save(path)
    loaded = Transitions.load(path)
    np.testing.assert_array_equal(loaded.obs["pos"], data.obs["pos"])
    np.testing.assert_array_equal(loaded.next_obs["key"], data.next_obs["key"])
    np.testing.assert_array_equal(loaded.action, data.action)
    np.testing.assert_array_equal(loaded.terminated, data.terminated)
    assert [p.name for p in tmp_path.iterdir()] == ["labels.npz"]  # no temp files left behind

    tuple_data = collect_transitions("Blackjack-v1", 5, seed=0)
    tuple_data.save(tmp_path / "tuple.npz")
    restored = Transitions.load(tmp_path / "tuple.npz")
    assert isinstance(restored.obs, tuple)
    for a, b in zip(restored.obs, tuple_data.obs):
        np.testing.assert_array_equal(a, b)


def test_from_arrays_refuses_non_finite_values_naming_field_and_index():
    obs = np.zeros((4, 2))
    with pytest.raises(ValueError, match=r"reward.*index 2"):
        Transitions.from_arrays(obs, np.zeros(4), obs, [0.0, 1.0, np.nan, 0.0])
    bad_obs = obs.copy()
    bad_obs[3, 1] = np.inf
    with pytest.raises(ValueError, match=r"next_obs.*index 3"):
        Transitions.from_arrays(obs, np.zeros(4), bad_obs, np.zeros(4))
    with pytest.raises(ValueError, match=r"obs\['a'\].*index 1"):
        Transitions.from_arrays({"a": np.array([0.0, np.nan])}, np.zeros(2), {"a": np.zeros(2)}, np.zeros(2))


def test_from_arrays_refuses_length_mismatch_and_bad_labels():
    with pytest.raises(ValueError, match="same leading length"):
        Transitions.from_arrays(np.zeros((3, 2)), np.zeros(4), np.zeros((4, 2)), np.zeros(4))
    with pytest.raises(ValueError, match=r"shape \(N,\)"):
        Transitions.from_arrays(np.zeros((4, 2)), np.zeros(4), np.zeros((4, 2)), np.zeros((4, 1)))
    with pytest.raises(TypeError, match="Transitions or a tuple"):
        labelled_arrays({"obs": 1})


def test_load_refuses_foreign_npz(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, __structure__=np.array('{"format": "something-else"}'))
    with pytest.raises(ValueError, match="not a ruagent transitions file"):
        Transitions.load(path)
