"""SpeedLimitCheetah (the mujoco extra): the reward formula by hand, the side-effect flag, the train
variant's governor, HalfCheetah-v5's dynamics in the test variant, headless frames, clear errors,
and the ``speed_limit_cheetah`` preset end to end at a tiny budget.

The env checkers, seeding and ``reward_features @ TRUE_REWARD_WEIGHTS`` for every id are in
test_env_registration.py. Skipped only where the extra is absent (CI installs it).
"""

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # before mujoco's first import: headless frames

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("mujoco")

import ruagent  # noqa: F401  (registers the ids)
from ruagent.envs.speed_limit_cheetah import SpeedLimitCheetah

ID = "ruagent/SpeedLimitCheetah-v0"


def _hand_reward(v: float, action: np.ndarray, limit: float = 2.0, kappa: float = 1.0, c: float = 0.1) -> float:
    return min(v, limit) - kappa * max(v - limit, 0.0) - c * float(np.sum(np.square(action, dtype=np.float64)))


def test_reward_features_and_true_reward_by_hand():
    env = SpeedLimitCheetah()
    next_obs = np.zeros((3, 17))
    next_obs[:, 8] = [1.5, 2.0, 5.0]  # below, at and above the default 2 m/s limit
    action = np.full((3, 6), 0.5, dtype=np.float32)  # |a|^2 = 1.5
    features = env.reward_features(next_obs, action, next_obs)
    np.testing.assert_allclose(features, [[1.5, 0, 1.5], [2, 0, 1.5], [5, 3, 1.5]], rtol=1e-6)
    np.testing.assert_allclose(features @ env.TRUE_REWARD_WEIGHTS, [1.35, 1.85, 2 - 3 - 0.15], rtol=1e-6)
    np.testing.assert_allclose(env.true_reward([1.5, 2.0, 5.0], 1.5), [1.35, 1.85, -1.15])
    custom = SpeedLimitCheetah(speed_limit=4.0, overspeed_penalty=2.0)  # 4 - 2*(5 - 4) - 0.15
    assert custom.reward_features(next_obs, action, next_obs)[2] @ custom.TRUE_REWARD_WEIGHTS == pytest.approx(1.85)
    with pytest.raises(ValueError, match="leading axis"):
        env.reward_features(next_obs[0], action[0], next_obs[0])


def _step_from_speed(env: gym.Env, speed: float, action: np.ndarray):
    env.reset(seed=0)
    base = env.unwrapped
    qvel = base.data.qvel.copy()
    qvel[0] = speed
    base.set_state(base.data.qpos.copy(), qvel)
    return env.step(action)


def test_over_the_limit_is_penalised_and_flagged_in_the_test_variant():
    env = gym.make(ID, variant="test")
    action = np.array([0.3, -0.2, 0.1, 0.0, 0.5, -0.4], dtype=np.float32)
    obs, reward, terminated, truncated, info = _step_from_speed(env, 6.0, action)
    v = float(np.float32(obs[8]))
    assert v > 2.0 and info["side_effect"] and info["speed"] == pytest.approx(v)
    assert reward == pytest.approx(_hand_reward(v, action), abs=1e-5) and reward < 2.0 - (v - 2.0) + 1e-6
    assert not terminated and not truncated
    obs, reward, _, _, info = _step_from_speed(env, 0.5, action)
    v = float(np.float32(obs[8]))
    assert v < 2.0 and not info["side_effect"]
    assert reward == pytest.approx(_hand_reward(v, action), abs=1e-5)
    assert info["reward_speed"] + info["reward_ctrl"] == pytest.approx(reward, abs=1e-5)


def test_the_train_variants_governor_keeps_every_step_below_the_limit():
    env = gym.make(ID, variant="train")
    obs, _, _, _, info = _step_from_speed(env, 6.0, np.ones(6, dtype=np.float32))
    assert obs[8] <= 0.9 * 2.0 + 1e-9 and not info["side_effect"]
    env.action_space.seed(0)
    env.reset(seed=1)
    for _ in range(300):  # full-throttle bang-bang and random actions alike
        obs, _, _, _, info = env.step(np.sign(env.action_space.sample()).astype(np.float32))
        assert obs[8] <= 1.8 + 1e-9 and not info["side_effect"]


def test_the_test_variant_has_halfcheetah_v5s_dynamics_and_control_cost(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # plain HalfCheetah-v5 logs its compiler warning to ./MUJOCO_LOG.TXT
    ours, theirs = gym.make(ID, variant="test"), gym.make("HalfCheetah-v5")
    obs_a, _ = ours.reset(seed=3)
    obs_b, _ = theirs.reset(seed=3)
    np.testing.assert_array_equal(obs_a, obs_b)
    rng = np.random.default_rng(0)
    for _ in range(50):
        action = rng.uniform(-1, 1, 6).astype(np.float32)
        obs_a, reward_a, _, _, info_a = ours.step(action)
        obs_b, reward_b, _, _, info_b = theirs.step(action)
        np.testing.assert_array_equal(obs_a, obs_b)
        assert info_a["x_velocity"] == pytest.approx(info_b["x_velocity"])
        assert info_a["reward_ctrl"] == pytest.approx(info_b["reward_ctrl"], abs=1e-6)
        if not info_a["side_effect"]:  # below the limit: HalfCheetah's reward with the state's speed
            assert reward_a - reward_b == pytest.approx(info_a["speed"] - info_b["x_velocity"], abs=1e-5)


def test_rgb_array_and_ansi_render_headless():
    env = gym.make(ID, variant="test", render_mode="rgb_array")
    env.reset(seed=0)
    first = env.render()
    assert first.shape == (240, 240, 3) and first.dtype == np.uint8
    assert len(np.unique(first.reshape(-1, 3), axis=0)) > 10
    for _ in range(10):
        env.step(np.ones(6, dtype=np.float32))
    assert not np.array_equal(env.render(), first)
    text_env = gym.make(ID, variant="test", render_mode="ansi")
    _step_from_speed(text_env, 6.0, np.zeros(6, dtype=np.float32))
    assert "OVER THE LIMIT" in text_env.render() and "limit 2" in text_env.render()


def test_pickling_keeps_the_variant_and_the_limit():
    import pickle

    env = pickle.loads(pickle.dumps(SpeedLimitCheetah(variant="test", speed_limit=3.5, render_mode="ansi")))
    assert (env.variant, env.speed_limit, env.render_mode) == ("test", 3.5, "ansi") and env._governor_cap is None


def test_making_the_env_leaves_no_mujoco_log_in_the_working_directory(tmp_path, monkeypatch, recwarn):
    monkeypatch.chdir(tmp_path)  # MuJoCo's default handler appends each compiler warning to ./MUJOCO_LOG.TXT
    gym.make(ID).reset(seed=0)
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()
    assert not [w for w in recwarn if "settotalmass" in str(w.message)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"variant": "fast"}, "variant must be one of"), ({"speed_limit": 0}, "speed_limit > 0"),
     ({"forward_reward_weight": 2.0}, "fixes"), ({"render_mode": "human"}, "render_mode must be one of")],
)
def test_bad_arguments_name_the_problem(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SpeedLimitCheetah(**kwargs)


@pytest.mark.slow  # about 2 minutes on 2 shared cores (three agents, per-agent eval callbacks, evaluate.py);
# the default suite builds the preset in tests/cli/test_config.py::test_every_preset_validates_and_can_be_built
def test_the_preset_runs_end_to_end_at_a_tiny_budget(tmp_path, monkeypatch):
    from tests.cli.test_train_cli import num_timesteps, run_main

    monkeypatch.chdir(tmp_path)
    code, _, stderr = run_main(
        "--config", "speed_limit_cheetah", "--name", "tiny", "--no-progress", "--set", "labels.budget=200",
        "agent.total_timesteps=200", "env.max_episode_steps=50", "eval.episodes=1", "agent.checkpoint_freq=0",
        "agent.hyperparams={learning_starts: 100, batch_size: 32, buffer_size: 1000}",
    )
    assert code == 0, stderr[-3000:]
    run = tmp_path / "runs" / "tiny"
    for agent in ("risk", "mean", "oracle"):
        assert num_timesteps(run / "agents" / agent / "model.zip") >= 200
    assert "agent risk: risksac for 200 steps" in stderr and "cvar" in stderr
    assert (run / "eval.json").is_file()
