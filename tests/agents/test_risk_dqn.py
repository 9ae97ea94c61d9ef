"""RiskDQN (agents/risk_dqn): the risk-greedy action, on a one-step choice whose members disagree.

Action 0 pays 0.5 under both members; action 1 pays +3 under one and −1 under the other. The
mean (1.0 vs 0.5) takes action 1, CVaR at α = 0.5 (here the worse member: −1 vs 0.5) action 0.
The Q heads learn each member's reward of each action (one-step episodes: Q_k(s, a) = r_k(a)).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ruagent import risk
from ruagent.agents import RiskDQN
from ruagent.agents.risk_dqn.policies import MemberQNetwork
from tests.agents.bandit import TABLE, one_step_env

SETTINGS = {"learning_starts": 64, "batch_size": 32, "learning_rate": 3e-3, "train_freq": 1,
            "target_update_interval": 32, "exploration_fraction": 0.3, "exploration_final_eps": 0.2,
            "policy_kwargs": {"net_arch": [16]}, "device": "cpu"}


def train(risk_name: str, seed: int = 0, **risk_kwargs) -> RiskDQN:
    model = RiskDQN("MlpPolicy", one_step_env(seed=seed), risk=risk_name, risk_kwargs=risk_kwargs, seed=seed,
                    **SETTINGS)
    return model.learn(800, log_interval=10**6)  # no dump: the last logged risk statistics stay readable


def test_cvar_takes_the_safe_action_that_the_mean_passes_over():
    obs = np.zeros((1, 1), dtype=np.float32)
    models = {"mean": train("mean"), "cvar": train("cvar", alpha=0.5)}
    assert models["mean"].predict(obs, deterministic=True)[0].tolist() == [1]
    assert models["cvar"].predict(obs, deterministic=True)[0].tolist() == [0]
    for model in models.values():  # both learnt the members' rewards of both actions (B, K, |A|)
        q_values = model.q_net(torch.zeros(1, 1))[0].detach().numpy()
        np.testing.assert_allclose(q_values, TABLE, atol=0.1)
    logged = models["cvar"].logger.name_to_value
    assert logged["risk/value"] == pytest.approx(0.5, abs=0.1)  # the safe action's value, per state
    assert logged["risk/J_std"] < 0.1  # the members agree on the action it takes


def test_member_q_network_shapes_and_the_greedy_action_of_each_measure():
    env = one_step_env()
    network = RiskDQN("MlpPolicy", env, n_members=2, risk="mean", **SETTINGS).q_net
    assert isinstance(network, MemberQNetwork)
    with torch.no_grad():  # set the output layer so that Q_k(s, a) = TABLE[k, a] whatever the features
        last = network.q_net[-1]
        last.weight.zero_()
        last.bias.copy_(torch.as_tensor(TABLE.reshape(-1), dtype=torch.float32))  # member-major: k·|A| + a
    obs = torch.zeros(3, 1)
    assert network(obs).shape == (3, 2, 2)
    torch.testing.assert_close(network(obs)[0], torch.as_tensor(TABLE, dtype=torch.float32))
    for measure, action in ((risk.make("mean"), 1), (risk.make("cvar", alpha=0.5), 0), (risk.make("worst"), 0),
                            (risk.make("mean_std", lam=0.2), 1), (risk.make("mean_std", lam=1.0), 0)):
        network.risk_measure = measure
        assert network._predict(obs).tolist() == [action] * 3, measure
    network.risk_measure, network.member_probs = risk.make("mean"), np.array([0.0, 1.0])  # only the pessimist
    assert network._predict(obs).tolist() == [0] * 3
