"""Featuriser, space encoders, random Fourier features and reward-input sources."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from ruagent.features import (
    FeaturesUnavailableError,
    Featuriser,
    RandomFourierFeatures,
    RewardInputs,
    SpaceEncoder,
)
from ruagent.spaces import UnsupportedSpaceError

SUPPORTED = {
    "box": spaces.Box(-1.0, 1.0, (3,)),
    "box_2d_infinite": spaces.Box(-np.inf, np.inf, (2, 3)),
    "discrete_start": spaces.Discrete(4, start=-2),
    "multi_discrete": spaces.MultiDiscrete([[2, 3], [4, 2]], start=[[1, 0], [-1, 0]]),
    "multi_binary": spaces.MultiBinary(5),
    "multi_binary_2d": spaces.MultiBinary([2, 3]),
    "dict": spaces.Dict({"z": spaces.Discrete(3), "a": spaces.Box(-np.inf, np.inf, (2,))}),
    "tuple": spaces.Tuple([spaces.Discrete(2), spaces.MultiBinary(2), spaces.Box(0, 1, (1,))]),
    "nested": spaces.Dict(
        {"pos": spaces.Tuple([spaces.Discrete(5), spaces.Discrete(5)]), "hp": spaces.MultiDiscrete([3, 3])}
    ),
}


def _batch(space, samples):
    """Stack single samples into the batched structure the featuriser takes."""
    if isinstance(space, spaces.Dict):
        return {key: _batch(sub, [s[key] for s in samples]) for key, sub in space.spaces.items()}
    if isinstance(space, spaces.Tuple):
        return tuple(_batch(sub, [s[i] for s in samples]) for i, sub in enumerate(space.spaces))
    return np.stack([np.asarray(s) for s in samples])


@pytest.mark.parametrize("name", SUPPORTED)
def test_encoder_matches_gymnasium_flatten(name):
    space = SUPPORTED[name]
    space.seed(0)
    samples = [space.sample() for _ in range(7)]
    encoded = SpaceEncoder(space)(_batch(space, samples))
    expected = np.stack([spaces.flatten(space, s) for s in samples]).astype(np.float32)
    assert encoded.shape == (7, spaces.flatdim(space))
    assert encoded.dtype == np.float32
    np.testing.assert_array_equal(encoded, expected)


@pytest.mark.parametrize("obs_name", SUPPORTED)
@pytest.mark.parametrize("act_name", ["discrete_start", "box", "multi_discrete", "tuple"])
def test_featuriser_concatenates_obs_action_next_obs(obs_name, act_name):
    obs_space, act_space = SUPPORTED[obs_name], SUPPORTED[act_name]
    obs_space.seed(1)
    act_space.seed(2)
    obs = [obs_space.sample() for _ in range(5)]
    next_obs = [obs_space.sample() for _ in range(5)]
    act = [act_space.sample() for _ in range(5)]
    featuriser = Featuriser(obs_space, act_space)
    features = featuriser(_batch(obs_space, obs), _batch(act_space, act), _batch(obs_space, next_obs))
    assert featuriser.dim == 2 * spaces.flatdim(obs_space) + spaces.flatdim(act_space)
    assert features.shape == (5, featuriser.dim) and features.dtype == np.float32
    np.testing.assert_array_equal(
        features[:, featuriser.slices["action"]], SpaceEncoder(act_space)(_batch(act_space, act))
    )
    np.testing.assert_array_equal(
        features[:, featuriser.slices["next_obs"]], SpaceEncoder(obs_space)(_batch(obs_space, next_obs))
    )


def test_featuriser_parts_select_columns():
    featuriser = Featuriser(spaces.Box(-1, 1, (2,)), spaces.Discrete(3), parts=("next_obs",))
    next_obs = np.array([[0.5, -0.5]], dtype=np.float32)
    assert featuriser.dim == 2
    np.testing.assert_array_equal(featuriser(np.zeros((1, 2)), np.array([1]), next_obs), next_obs)
    with pytest.raises(ValueError, match="subset"):
        Featuriser(spaces.Box(-1, 1, (2,)), spaces.Discrete(3), parts=("reward",))


def test_infinite_box_values_pass_through_unscaled():
    space = spaces.Box(-np.inf, np.inf, (2,))
    values = np.array([[1e6, -3.0]], dtype=np.float32)
    np.testing.assert_array_equal(SpaceEncoder(space)(values), values)


def test_discrete_accepts_column_vectors_from_vec_envs():
    encoder = SpaceEncoder(spaces.Discrete(3))
    np.testing.assert_array_equal(encoder(np.array([[2], [0]])), encoder(np.array([2, 0])))


@pytest.mark.parametrize(
    ("space", "value"),
    [
        (spaces.Discrete(3, start=1), np.array([0])),
        (spaces.Discrete(3), np.array([3])),
        (spaces.Discrete(3), np.array([0, -1])),  # numpy's take would wrap a negative index
        (spaces.Discrete(3, start=1), np.array([4])),
        (spaces.MultiDiscrete([2, 2]), np.array([[0, 2]])),
        (spaces.Discrete(3), np.array([1.5])),
    ],
)
def test_values_outside_the_space_are_refused(space, value):
    with pytest.raises(ValueError, match=r"outside|non-integer"):
        SpaceEncoder(space, "action")(value)


def test_wrong_shape_names_field_and_expected_shape():
    encoder = SpaceEncoder(spaces.Dict({"a": spaces.Box(-1, 1, (3,))}), "observation")
    with pytest.raises(ValueError, match=r"observation\['a'\] has shape \(2, 4\), expected \(2, 3\)"):
        encoder({"a": np.zeros((2, 4))})
    with pytest.raises(ValueError, match="no entry"):
        encoder({"b": np.zeros((2, 3))})


@pytest.mark.parametrize(
    "space",
    [
        spaces.Text(5),
        spaces.Graph(node_space=spaces.Box(0, 1, (2,)), edge_space=None),
        spaces.Sequence(spaces.Discrete(2)),
        spaces.Dict({"ok": spaces.Discrete(2), "bad": spaces.Text(3)}),
    ],
)
def test_unsupported_spaces_raise_named_error(space):
    with pytest.raises(UnsupportedSpaceError) as info:
        Featuriser(space, spaces.Discrete(2))
    message = str(info.value)
    assert "observation space" in message
    assert type(info.value.space).__name__ in message  # names the offending space
    assert "observation wrapper" in message.lower() or "ObservationWrapper" in message


def test_random_fourier_features_approximate_rbf_kernel():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20, 3))
    lengthscale = 1.5
    rff = RandomFourierFeatures(3, 20000, lengthscale, seed=0)
    z = rff(x)
    approx = z @ z.T
    sq_dist = ((x[:, None] - x[None]) ** 2).sum(-1)
    exact = np.exp(-sq_dist / (2 * lengthscale**2))
    # Monte Carlo error of the kernel estimate ~ 1/sqrt(M) ≈ 0.007 for M = 20000
    assert np.abs(approx - exact).max() < 0.05
    rebuilt = RandomFourierFeatures.from_arrays(rff.frequencies, rff.phases, lengthscale)
    np.testing.assert_array_equal(rebuilt(x), z)


class _FeatureEnv(gym.Env):
    observation_space = spaces.Discrete(3)
    action_space = spaces.Discrete(2)

    def reward_features(self, obs, action, next_obs):
        return np.eye(3, dtype=np.float32)[np.asarray(next_obs)]

    def reset(self, *, seed=None, options=None):
        return 0, {}

    def step(self, action):
        return 1, 0.0, False, False, {}


def test_env_features_found_through_wrappers():
    env = gym.wrappers.TimeLimit(_FeatureEnv(), 10)
    inputs = RewardInputs(env.observation_space, env.action_space, "env")
    assert inputs.dim is None
    with pytest.raises(FeaturesUnavailableError, match=r"bind\(env\)"):
        inputs(np.array([0]), np.array([0]), np.array([1]))
    inputs.bind(env)
    np.testing.assert_array_equal(inputs(np.array([0]), np.array([0]), np.array([2])), [[0, 0, 1]])


def test_env_features_found_in_sb3_vec_envs():
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    venv = VecNormalize(DummyVecEnv([_FeatureEnv, _FeatureEnv]), norm_obs=False)
    inputs = RewardInputs(venv.observation_space, venv.action_space, "env")
    inputs.bind(venv)
    np.testing.assert_array_equal(inputs(np.array([0, 0]), np.array([0, 1]), np.array([1, 0])), [[0, 1, 0], [1, 0, 0]])


def test_env_without_reward_features_gives_clear_error():
    env = gym.make("CartPole-v1")
    inputs = RewardInputs(env.observation_space, env.action_space, "env")
    with pytest.raises(FeaturesUnavailableError, match="no reward_features"):
        inputs.bind(env)


def test_callable_inputs_and_their_record():
    inputs = RewardInputs(spaces.Discrete(2), spaces.Discrete(2), lambda o, a, n: np.stack([o, a], 1))
    np.testing.assert_array_equal(inputs(np.array([1]), np.array([0]), np.array([0])), [[1, 0]])
    restored = RewardInputs.from_record(spaces.Discrete(2), spaces.Discrete(2), inputs.describe())
    with pytest.raises(FeaturesUnavailableError, match="features="):
        restored(np.array([1]), np.array([0]), np.array([0]))
    with pytest.raises(ValueError, match="'transition', 'env' or a callable"):
        RewardInputs(spaces.Discrete(2), spaces.Discrete(2), "pixels")


def test_an_empty_discrete_batch_encodes_to_no_rows():
    encoder = SpaceEncoder(spaces.Discrete(3, start=1))
    assert encoder(np.zeros(0, dtype=np.int64)).shape == (0, 3)
