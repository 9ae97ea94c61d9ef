"""Bad paths of first use, at the library level: each one stops with a clear error instead of
silent NaN or a misleading message (the CLI side is in tests/cli/test_first_use.py)."""

from __future__ import annotations

import errno

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.monitor import Monitor

import ruagent
from ruagent.cli import config as config_lib
from ruagent.data import Transitions, collect_transitions
from ruagent.io import WriteError, atomic_write
from ruagent.spaces import UnsupportedSpaceError
from ruagent.wrappers import RewardUncertaintyWrapper, VecRewardUncertaintyWrapper
from ruagent.wrappers.core import NonFiniteRewardError
from tests.helpers import FullDisk

pytestmark = pytest.mark.filterwarnings("ignore:.*prior_reward_scale.*:UserWarning")


@pytest.fixture(scope="module")
def lava_labels():
    env = gym.make("ruagent/LavaWorld-v0", variant="train")
    return env, collect_transitions(env, 60, seed=0)


def make_model(family: str, env: gym.Env, features: str):
    if family == "ensemble":
        return ruagent.EnsembleRewardModel(env.observation_space, env.action_space, n_members=3, hidden_sizes=(8,),
                                           features=features, seed=0)
    # normalise_inputs: the linear family's input statistics are state a failed refit must not touch
    return ruagent.BayesianLinearRewardModel(env.observation_space, env.action_space, n_members=3, features=features,
                                             normalise_inputs=True, seed=0)


def fit(model, data, env):
    kwargs = {"epochs": 2, "progress_bar": False} if isinstance(model, ruagent.EnsembleRewardModel) else {}
    return model.fit(data, env=env, **kwargs)


# ---------------------------------------------------------------------------- empty label sets
@pytest.mark.parametrize("features", ["env", "transition"])
@pytest.mark.parametrize("family", ["linear", "ensemble"])
def test_fit_refuses_empty_labels_before_touching_the_model(lava_labels, family, features):
    env, labels = lava_labels
    empty = labels[np.arange(0)]
    fresh = make_model(family, env, features)
    with pytest.raises(ValueError, match="no labelled transitions"):
        fit(fresh, empty, env)
    assert fresh.reward_loc is None  # no NaN statistics left behind
    # a fitted model survives a failed refit unchanged (as a tuple or as Transitions)
    model = make_model(family, env, features)
    fit(model, labels, env)
    before = model.predict(labels.obs, labels.action, labels.next_obs)
    loc = model.reward_loc.copy()
    for data in (empty, (empty.obs, empty.action, empty.next_obs, empty.reward)):
        with pytest.raises(ValueError, match="no labelled transitions"):
            fit(model, data, env)
    np.testing.assert_array_equal(model.predict(labels.obs, labels.action, labels.next_obs), before)
    np.testing.assert_array_equal(model.reward_loc, loc)


def test_a_label_budget_that_holds_out_every_label_is_a_config_error():
    with pytest.raises(config_lib.ConfigError, match=r"labels.budget \* \(1 - labels.heldout_fraction\)"):
        config_lib.resolve(overrides=["labels.budget=2", "labels.heldout_fraction=0.9"])
    config_lib.resolve(overrides=["labels.budget=2", "labels.heldout_fraction=0.2"])  # one held out, one fitted
    config_lib.resolve(overrides=["labels.kind=preferences", "labels.budget=2", "labels.heldout_fraction=0.9"])


# ---------------------------------------------------------------------------- NaN in the wrappers
class RewardAt(gym.Wrapper):
    """Replaces the env's reward by ``value`` at step ``step`` (counted over the env's life)."""

    def __init__(self, env, step=3, value=float("nan")):
        super().__init__(env)
        self.at, self.value, self.count = step, value, 0

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.count += 1
        return obs, self.value if self.count == self.at else reward, terminated, truncated, info


@pytest.fixture(scope="module")
def cartpole_model():
    env = gym.make("CartPole-v1")
    labels = collect_transitions(env, 50, seed=0)
    return ruagent.BayesianLinearRewardModel(env.observation_space, env.action_space, n_members=3, seed=0).fit(labels)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_non_finite_env_reward_stops_both_skins_naming_env_and_step(cartpole_model, value):
    wrapper = RewardUncertaintyWrapper(Monitor(RewardAt(gym.make("CartPole-v1"), value=value)), cartpole_model)
    wrapper.reset(seed=0)
    wrapper.step(0), wrapper.step(0)
    with pytest.raises(NonFiniteRewardError, match=r"CartPole-v1, step 3 \(episode step 3\) returned a non-finite"):
        wrapper.step(0)
    venv = VecRewardUncertaintyWrapper(make_vec_env("CartPole-v1", n_envs=2, wrapper_class=RewardAt,
                                                    wrapper_kwargs={"value": value}), cartpole_model)
    venv.reset()
    venv.step(np.zeros(2, int)), venv.step(np.zeros(2, int))
    with pytest.raises(NonFiniteRewardError, match=r"CartPole-v1 \(sub-env 0\), step 3 .*info\['env_reward'\]"):
        venv.step(np.zeros(2, int))


def test_standardising_by_nan_statistics_stops_instead_of_handing_out_nan(cartpole_model):
    model = ruagent.BayesianLinearRewardModel(cartpole_model.observation_space, cartpole_model.action_space,
                                              n_members=3, seed=0)
    model.fit(collect_transitions(gym.make("CartPole-v1"), 50, seed=1))
    model.reward_loc = np.full(3, np.nan, np.float32)  # what an empty fit used to leave
    for mode in ("mean", "cvar", "sample"):
        venv = VecRewardUncertaintyWrapper(make_vec_env("CartPole-v1", n_envs=2), model, mode=mode, standardise=True)
        venv.reset()
        with pytest.raises(NonFiniteRewardError, match="posterior reward handed to the agent is nan"):
            venv.step(np.zeros(2, int))


# ---------------------------------------------------------------------------- messages and files
def test_unsupported_space_names_what_cannot_be_flattened_and_concrete_fixes():
    with pytest.raises(UnsupportedSpaceError) as refused:
        ruagent.EnsembleRewardModel(spaces.Dict({"image": spaces.Box(0, 1, (3,)), "mission": spaces.Text(8)}),
                                    spaces.Discrete(3), n_members=2)
    message = str(refused.value)
    for text in ("Text, Graph and Sequence", "MissionSpace", "FlattenObservation cannot flatten them",
                 "ImgObsWrapper", "FilterObservation", "features=callable"):
        assert text in message, text


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04" + bytes(30), b"not a zip at all"])
def test_a_damaged_label_file_is_named_in_one_error(tmp_path, content):
    path = tmp_path / "train.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=f"{path} is not a readable transitions file") as refused:
        Transitions.load(path)
    assert "\n" not in str(refused.value)


def test_a_full_disk_during_a_write_names_the_file_and_the_errno(tmp_path, monkeypatch):
    """torch.save reports a failed write as RuntimeError("unexpected pos ..."); the errno must survive."""
    import torch

    target = tmp_path / "reward_model.pt"
    target.write_bytes(b"previous")

    with pytest.raises(WriteError) as refused, atomic_write(target) as f:
        torch.save({"weights": torch.zeros(1000)}, FullDisk(f))
    assert refused.value.errno == errno.ENOSPC and refused.value.filename == str(target)
    assert str(refused.value) == f"cannot write {target}: No space left on device (errno 28, ENOSPC)"
    assert target.read_bytes() == b"previous" and [p.name for p in tmp_path.iterdir()] == ["reward_model.pt"]
    with pytest.raises(FileNotFoundError), atomic_write(target) as f:  # other OS errors pass unchanged
        f.write((tmp_path / "missing").read_bytes())
