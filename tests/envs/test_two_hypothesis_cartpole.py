"""TwoHypothesisCartPole and its ready posterior (the PG-BROIL check)."""

import gymnasium as gym
import numpy as np
import pytest

import ruagent
from ruagent import risk
from ruagent.envs.two_hypothesis_cartpole import (
    HYPOTHESIS_PROBS,
    TwoHypothesisCartPole,
    TwoHypothesisCartPolePosterior,
    time_left_of_centre,
)
from ruagent.reward_models.base import SpaceMismatchError


def hold_position(obs: np.ndarray, target_x: float) -> int:
    """A linear balancing controller that parks the cart at ``target_x`` (LQR-shaped gains)."""
    x, x_dot, theta, theta_dot = obs
    return int(1.0 * (x - target_x) + 1.5 * x_dot + 18.0 * theta + 3.0 * theta_dot > 0)


def rollout(env: gym.Env, target_x: float, seed: int):
    obs, _ = env.reset(seed=seed)
    transitions, rewards, infos = [], [], []
    done = False
    while not done:
        action = hold_position(obs, target_x)
        next_obs, reward, terminated, truncated, info = env.step(action)
        transitions.append((obs, action, next_obs))
        rewards.append(reward)
        infos.append(info)
        obs, done = next_obs, terminated or truncated
    obs_b, act_b, next_b = (np.array(column) for column in zip(*transitions))
    return obs_b, act_b, next_b, np.array(rewards), infos


@pytest.mark.parametrize("variant, true_member", [("train", 0), ("test", 1)])
def test_env_reward_is_the_true_members_prediction(variant, true_member):
    env = gym.make("ruagent/TwoHypothesisCartPole-v0", variant=variant)
    posterior = TwoHypothesisCartPolePosterior()
    posterior.bind(env)
    obs, actions, next_obs, rewards, infos = rollout(env, target_x=0.3, seed=0)
    members = posterior.predict(obs, actions, next_obs)
    assert members.shape == (2, len(rewards)) and members.dtype == np.float32
    np.testing.assert_array_equal(members[true_member], rewards)
    np.testing.assert_array_equal(members.T, np.array([info["hypothesis_rewards"] for info in infos]))
    right = next_obs[:, 0] > 0
    assert 0 < right.mean() < 1, "the rollout should visit both sides to exercise both branches"
    side_effects = np.array([info["side_effect"] for info in infos])
    np.testing.assert_array_equal(side_effects, right if variant == "test" else np.zeros_like(right))


def test_mean_prefers_right_and_cvar_prefers_left():
    """Per-member returns of a right-parking and a left-parking policy rank as PG-BROIL says."""
    env = gym.make("ruagent/TwoHypothesisCartPole-v0")
    posterior = TwoHypothesisCartPolePosterior()
    member_returns = {}
    for name, target in (("right", 0.5), ("left", -0.5)):
        obs, actions, next_obs, rewards, _ = rollout(env, target, seed=3)
        assert len(rewards) == 500, "the controller should balance for the whole 500-step episode"
        member_returns[name] = posterior.predict(obs, actions, next_obs).sum(axis=1)
    J = np.stack([member_returns["right"], member_returns["left"]], axis=1)  # (K, policies)
    mean_value, _ = risk.mean(J, probs=posterior.member_probs)
    cvar_value, _ = risk.cvar(J, alpha=0.05, probs=posterior.member_probs)
    assert mean_value[0] > mean_value[1], "a mean agent should prefer the right"
    assert cvar_value[1] > cvar_value[0], "a CVaR(0.05) agent should prefer the left"


def test_posterior_save_load_roundtrip(tmp_path):
    env = gym.make("ruagent/TwoHypothesisCartPole-v0")
    path = tmp_path / "posterior.pt"
    TwoHypothesisCartPolePosterior().save(path)
    loaded = ruagent.load_reward_model(path, env=env)
    assert isinstance(loaded, TwoHypothesisCartPolePosterior)
    np.testing.assert_allclose(loaded.member_probs, HYPOTHESIS_PROBS)
    next_obs = np.array([[0.2, 0, 0, 0], [-0.2, 0, 0, 0], [0.0, 0, 0, 0]], dtype=np.float32)
    assert loaded.predict(next_obs, np.zeros(3), next_obs).tolist() == [[2, 1, 1], [-2, 1, 1]]


def test_posterior_refuses_other_spaces_and_bad_batches():
    posterior = TwoHypothesisCartPolePosterior()
    with pytest.raises(SpaceMismatchError, match="observation space"):
        posterior.bind(gym.make("MountainCar-v0"))
    with pytest.raises(ValueError, match=r"shape \(B, 4\)"):
        posterior.predict(np.zeros((2, 3)), np.zeros(2), np.zeros((2, 3)))


def test_variant_and_render_mode_are_checked():
    with pytest.raises(ValueError, match="variant must be one of"):
        TwoHypothesisCartPole(variant="deploy")
    with pytest.raises(ValueError, match="render_mode must be one of"):
        TwoHypothesisCartPole(render_mode="human")


def test_rendering_shows_the_cart():
    env = gym.make("ruagent/TwoHypothesisCartPole-test-v0", render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (200, 400, 3) and frame.dtype == np.uint8
    assert len(np.unique(frame.reshape(-1, 3), axis=0)) >= 5  # background halves, track, cart, pole
    text = TwoHypothesisCartPole(variant="test", render_mode="ansi")
    text.reset(seed=0)
    assert "C" in text.render() and "true reward" in text.render()


class _ConstantPolicy:
    """SB3-style ``predict`` that always pushes the same way."""

    def __init__(self, action: int) -> None:
        self.action = action

    def predict(self, obs, deterministic=True):
        return self.action, None


def test_time_left_of_centre_reads_the_side_a_policy_drives_to():
    pushed_left, left_length = time_left_of_centre(_ConstantPolicy(0), n_episodes=3, seed=0)
    pushed_right, right_length = time_left_of_centre(_ConstantPolicy(1), n_episodes=3, seed=0)
    # episodes start near x = 0 and last ~10 steps, so the first steps count for either side
    assert pushed_left > 0.5 > pushed_right
    assert 5 < left_length < 100 and 5 < right_length < 100  # constant pushing topples the pole early
    with pytest.raises(ValueError, match="n_episodes"):
        time_left_of_centre(_ConstantPolicy(0), n_episodes=0)
