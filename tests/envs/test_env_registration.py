"""Every registered testbed id: makes, passes both env checkers, renders, reseeds, and its
reward is the documented linear function of its reward features.

Ids of a testbed that needs an optional extra (``EXTRAS``: SpeedLimitCheetah, mujoco) are
skipped only where that extra is not installed; CI installs it.
"""

import importlib.util
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import ruagent  # noqa: F401  (registers the ids)
from ruagent.envs.registration import ENV_IDS, EXTRAS, register_envs


def _param(env_id: str):
    """The id as a pytest param, skipped where the extra its testbed needs is absent."""
    extra = EXTRAS.get(env_id.split("/")[1].split("-")[0])
    missing = extra is not None and importlib.util.find_spec(extra) is None
    return pytest.param(env_id, marks=pytest.mark.skipif(missing, reason=f"needs pip install 'ruagent[{extra}]'"))


ALL_IDS = sorted(ENV_IDS)
ALL_PARAMS = [_param(env_id) for env_id in ALL_IDS]


def test_every_testbed_has_a_default_id_and_one_per_variant():
    names = {env_id.split("/")[1].split("-")[0] for env_id in ALL_IDS}
    assert names == {"LavaWorld", "DistributionalShift", "TwoHypothesisCartPole", "PointNavigation",
                     "SpeedLimitCheetah"}
    for name in names:
        default = ENV_IDS[f"ruagent/{name}-v0"]
        variant = default[1]["variant"]
        assert ENV_IDS[f"ruagent/{name}-{variant}-v0"] == default
    assert {k for k in ALL_IDS if k.startswith("ruagent/DistributionalShift-")} == {
        "ruagent/DistributionalShift-v0",
        "ruagent/DistributionalShift-train-v0",
        "ruagent/DistributionalShift-test1-v0",
        "ruagent/DistributionalShift-test2-v0",
    }


def test_register_envs_is_idempotent():
    before = len(gym.registry)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # re-registering would warn "Overriding environment"
        register_envs()
    assert len(gym.registry) == before and all(env_id in gym.registry for env_id in ALL_IDS)


@pytest.mark.parametrize("env_id", ALL_PARAMS)
def test_env_passes_gymnasium_and_sb3_checkers(env_id):
    with warnings.catch_warnings():
        # Both checkers nudge about CartPole's unbounded observation bounds; those are not errors.
        warnings.filterwarnings("ignore", message=".*(infinity|unbounded|bounds).*")
        for render_mode in ("rgb_array", "ansi"):
            gym_check_env(gym.make(env_id, render_mode=render_mode).unwrapped, skip_render_check=False)
        sb3_check_env(gym.make(env_id), warn=True)


@pytest.mark.parametrize("env_id", ALL_PARAMS)
def test_rendering_gives_rgb_frames_and_text(env_id):
    env = gym.make(env_id, render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    assert frame.ndim == 3 and frame.shape[2] == 3 and frame.dtype == np.uint8 and min(frame.shape[:2]) >= 50
    assert len(np.unique(frame.reshape(-1, 3), axis=0)) >= 3, "a frame should show more than a blank canvas"
    env.step(env.action_space.sample())
    assert env.render().shape == frame.shape
    text_env = gym.make(env_id, render_mode="ansi")
    text_env.reset(seed=0)
    text = text_env.render()
    assert isinstance(text, str) and text.strip()


def _random_rollout(env_id: str, seed: int, n_steps: int = 60, **kwargs):
    env = gym.make(env_id, **kwargs)
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    record = [obs]
    for _ in range(n_steps):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        record += [obs, reward, terminated, truncated, info["side_effect"]]
        if terminated or truncated:
            obs, _ = env.reset()
            record.append(obs)
    return record


def _same(a, b) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("env_id", [*ALL_PARAMS, "procedural LavaWorld"])
def test_seeding_reproduces_episodes(env_id):
    kwargs = {}
    if env_id == "procedural LavaWorld":
        env_id, kwargs = "ruagent/LavaWorld-test-v0", {"layout": "procedural"}
    assert _same(_random_rollout(env_id, 7, **kwargs), _random_rollout(env_id, 7, **kwargs))
    assert not _same(_random_rollout(env_id, 7, **kwargs), _random_rollout(env_id, 8, **kwargs))


FEATURE_IDS = [_param(env_id) for env_id in ALL_IDS if "CartPole" not in env_id]


@pytest.mark.parametrize("env_id", FEATURE_IDS)
def test_env_reward_is_features_times_true_weights(env_id):
    """Batched reward_features (found through the wrappers) reproduce the env reward exactly."""
    env = gym.make(env_id)
    features_fn = env.get_wrapper_attr("reward_features")
    weights = env.get_wrapper_attr("TRUE_REWARD_WEIGHTS")
    env.action_space.seed(0)
    obs, _ = env.reset(seed=0)
    batch = {"obs": [], "action": [], "next_obs": [], "reward": []}
    for _ in range(300):
        action = env.action_space.sample()
        next_obs, reward, terminated, truncated, _ = env.step(action)
        for key, value in zip(batch, (obs, action, next_obs, reward)):
            batch[key].append(value)
        obs = env.reset()[0] if terminated or truncated else next_obs
    arrays = {key: np.array(value) for key, value in batch.items()}
    features = features_fn(arrays["obs"], arrays["action"], arrays["next_obs"])
    assert features.dtype == np.float32 and features.shape == (300, len(weights))
    np.testing.assert_allclose(features @ weights, arrays["reward"], rtol=0, atol=1e-6)
    assert len(np.unique(arrays["reward"])) > 1, "the rollout should see more than one kind of step"


@pytest.mark.parametrize("env_id", FEATURE_IDS)
def test_reward_features_rejects_unbatched_input(env_id):
    env = gym.make(env_id)
    obs, _ = env.reset(seed=0)
    with pytest.raises(ValueError, match="leading axis"):
        env.get_wrapper_attr("reward_features")(obs, env.action_space.sample(), obs)
