"""NaN and inf: refused at fit time naming the field and index; never returned silently by predict."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from stable_baselines3.common.monitor import Monitor

from ruagent.data import Transitions
from ruagent.reward_models.base import load_reward_model
from ruagent.reward_models.ensemble import EnsembleRewardModel
from ruagent.reward_models.linear import BayesianLinearRewardModel
from ruagent.wrappers import RewardUncertaintyWrapper

# NaN flowing through the featuriser and the matmuls is what these tests feed in on purpose
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")

N_LABELS = 16
BAD_INDEX = 11
OBSERVATION_SPACE = spaces.Dict(
    {"position": spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32), "phase": spaces.Discrete(3, start=1)}
)
ACTION_SPACE = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
FAMILIES = ("ensemble", "linear")
NON_FINITE = (np.nan, np.inf, -np.inf)


def make_model(family: str, check_finite: bool = True):
    if family == "ensemble":
        return EnsembleRewardModel(
            OBSERVATION_SPACE, ACTION_SPACE, n_members=3, hidden_sizes=(8,), seed=0, check_finite=check_finite
        )
    return BayesianLinearRewardModel(OBSERVATION_SPACE, ACTION_SPACE, n_members=3, seed=0, check_finite=check_finite)


def fit(model, data) -> None:
    if isinstance(model, EnsembleRewardModel):
        model.fit(data, epochs=2, progress_bar=False)
    else:
        model.fit(data)


def label_arrays(n: int = N_LABELS, seed: int = 0) -> dict:
    """Finite labelled transitions as a dict of fields (obs/next_obs are dicts of arrays)."""
    rng = np.random.default_rng(seed)

    def observations():
        return {
            "position": rng.normal(size=(n, 2)).astype(np.float32),
            "phase": rng.integers(1, 4, size=n),
        }

    return {
        "obs": observations(),
        "action": rng.uniform(-1, 1, size=(n, 2)).astype(np.float32),
        "next_obs": observations(),
        "reward": rng.normal(size=n).astype(np.float32),
    }


def poison(fields: dict, field: str, value: float) -> tuple[dict, str]:
    """Put ``value`` at row BAD_INDEX of ``field``; return the fields and the name errors must use."""
    if field in ("obs", "next_obs"):
        fields[field]["position"][BAD_INDEX, 1] = value
        return fields, f"{field}['position']"
    fields[field][BAD_INDEX] = value
    return fields, field


@pytest.mark.parametrize("value", NON_FINITE, ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("field", ["obs", "action", "next_obs", "reward"])
@pytest.mark.parametrize("family", FAMILIES)
def test_fit_refuses_non_finite_labels_naming_field_and_index(family, field, value):
    fields, name = poison(label_arrays(), field, value)
    data = (fields["obs"], fields["action"], fields["next_obs"], fields["reward"])
    model = make_model(family)

    with pytest.raises(ValueError, match="NaN or inf") as refused:
        fit(model, data)
    assert name in str(refused.value) and f"index {BAD_INDEX}" in str(refused.value)


@pytest.mark.parametrize("field", ["obs", "action", "next_obs", "reward"])
@pytest.mark.parametrize("family", FAMILIES)
def test_fit_refuses_non_finite_values_in_a_transitions_file(tmp_path, family, field):
    # A Transitions read back from disk (or built field by field) must meet the same check
    # as one built by from_arrays: the file may have been written by anything.
    fields, name = poison(label_arrays(), field, np.nan)
    n = N_LABELS
    Transitions(**fields, terminated=np.zeros(n, bool), truncated=np.zeros(n, bool)).save(tmp_path / "labels.npz")
    model = make_model(family)

    with pytest.raises(ValueError, match="NaN or inf") as refused:
        fit(model, Transitions.load(tmp_path / "labels.npz"))
    assert name in str(refused.value) and f"index {BAD_INDEX}" in str(refused.value)


@pytest.mark.parametrize("value", NON_FINITE, ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("family", FAMILIES)
def test_predict_raises_on_non_finite_rewards_naming_member_and_index(family, value):
    model = make_model(family)
    fit(model, tuple(label_arrays().values()))
    fields, _ = poison(label_arrays(seed=1), "obs", value)

    with pytest.raises(FloatingPointError, match=f"batch index {BAD_INDEX}.*check_finite=False"):
        model.predict(fields["obs"], fields["action"], fields["next_obs"])


@pytest.mark.parametrize("family", FAMILIES)
def test_check_finite_can_be_switched_off_and_survives_save_and_load(tmp_path, family):
    model = make_model(family, check_finite=False)
    fit(model, tuple(label_arrays().values()))
    model.save(tmp_path / "posterior.pt")
    loaded = load_reward_model(tmp_path / "posterior.pt")
    fields, _ = poison(label_arrays(seed=1), "obs", np.nan)

    rewards = loaded.predict(fields["obs"], fields["action"], fields["next_obs"])

    assert not loaded.check_finite
    assert np.isnan(rewards[:, BAD_INDEX]).all()  # the caller asked for it: no check, no error
    assert np.isfinite(np.delete(rewards, BAD_INDEX, axis=1)).all()  # the other rows are unaffected


@pytest.mark.parametrize("family", FAMILIES)
def test_predict_refuses_non_integer_discrete_values(family):
    model = make_model(family)
    fields = label_arrays()
    fields["obs"]["phase"] = fields["obs"]["phase"].astype(np.float64)
    fields["obs"]["phase"][BAD_INDEX] = np.nan

    with pytest.raises(ValueError, match=r"observation\['phase'\] holds non-integer values"):
        model.predict(fields["obs"], fields["action"], fields["next_obs"])


class NaNAfterEnv(gym.Env):
    """Finite observations until step ``nan_at``, then NaN in the position."""

    def __init__(self, nan_at: int) -> None:
        self.observation_space, self.action_space, self.nan_at = OBSERVATION_SPACE, ACTION_SPACE, nan_at

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        return {"position": np.zeros(2, np.float32), "phase": 1}, {}

    def step(self, action):
        self._t += 1
        position = np.full(2, np.nan if self._t >= self.nan_at else 0.5, np.float32)
        return {"position": position, "phase": 2}, 0.0, False, False, {}


@pytest.mark.parametrize("family", FAMILIES)
def test_wrapper_stops_at_the_first_non_finite_posterior_reward(family):
    model = make_model(family)
    fit(model, tuple(label_arrays().values()))
    env = RewardUncertaintyWrapper(Monitor(NaNAfterEnv(nan_at=3)), model, mode="mean")
    env.reset(seed=0)
    for _ in range(2):
        _, reward, *_ = env.step(np.zeros(2, np.float32))
        assert np.isfinite(reward)

    with pytest.raises(FloatingPointError, match="non-finite reward"):
        env.step(np.zeros(2, np.float32))
