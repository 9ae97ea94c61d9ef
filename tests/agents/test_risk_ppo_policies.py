"""Policies with K value heads (agents/risk_ppo/policies.py)."""

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticCnnPolicy, ActorCriticPolicy

from ruagent.agents.risk_ppo.policies import RiskActorCriticCnnPolicy, RiskActorCriticPolicy

OBS_SPACE = spaces.Box(-1.0, 1.0, shape=(6,), dtype=np.float32)
ACTION_SPACES = [spaces.Discrete(3), spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)]


def lr(_progress):
    return 3e-4


@pytest.mark.parametrize("action_space", ACTION_SPACES, ids=["discrete", "box"])
def test_critic_has_one_value_per_member_on_a_shared_trunk(action_space):
    policy = RiskActorCriticPolicy(OBS_SPACE, action_space, lr, n_members=7, net_arch=[8])
    obs = th.as_tensor(np.random.default_rng(0).uniform(-1, 1, size=(5, 6)), dtype=th.float32)
    actions, values, log_prob = policy(obs)
    assert values.shape == (5, 7) and log_prob.shape == (5,)
    assert policy.predict_values(obs).shape == (5, 7)
    values_again, _, _ = policy.evaluate_actions(obs, actions)
    th.testing.assert_close(values, values_again)
    assert policy.value_net.out_features == 7
    # Every value-head parameter is trained by the optimiser (it was rebuilt after replacing the head).
    optimised = {id(p) for group in policy.optimizer.param_groups for p in group["params"]}
    assert all(id(p) in optimised for p in policy.parameters())


@pytest.mark.parametrize(
    ("ours", "sb3", "obs_space"),
    [
        (RiskActorCriticPolicy, ActorCriticPolicy, OBS_SPACE),
        (RiskActorCriticCnnPolicy, ActorCriticCnnPolicy, spaces.Box(0, 255, (3, 36, 36), np.uint8)),
    ],
)
def test_one_member_is_sb3s_policy_with_the_same_initialisation(ours, sb3, obs_space):
    th.manual_seed(0)
    mine = ours(obs_space, spaces.Discrete(2), lr, n_members=1)
    th.manual_seed(0)
    reference = sb3(obs_space, spaces.Discrete(2), lr)
    assert mine.state_dict().keys() == reference.state_dict().keys()
    for name, value in reference.state_dict().items():
        th.testing.assert_close(mine.state_dict()[name], value, rtol=0, atol=0, msg=name)


def test_n_members_survives_policy_save_and_load(tmp_path):
    policy = RiskActorCriticPolicy(OBS_SPACE, ACTION_SPACES[1], lr, n_members=4, net_arch=[8])
    policy.save(tmp_path / "policy.pt")
    loaded = RiskActorCriticPolicy.load(tmp_path / "policy.pt")
    assert loaded.n_members == 4
    obs = th.zeros(2, 6)
    th.testing.assert_close(loaded.predict_values(obs), policy.predict_values(obs))


def test_zero_members_is_refused():
    with pytest.raises(ValueError, match="n_members"):
        RiskActorCriticPolicy(OBS_SPACE, ACTION_SPACES[0], lr, n_members=0)
