"""RiskSAC (agents/risk_sac): member critics, and (slow) the per-state risk's direction on a
one-step continuous choice: member k pays slopes_k·a with slopes (2, −1), so the mean (0.5·a) is
best at a = 1 and the worse member (min(2a, −a)) at a = 0."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ruagent.agents import RiskSAC
from ruagent.agents.risk_sac.policies import MemberContinuousCritic
from tests.agents.bandit import one_step_env


def test_critics_and_targets_have_k_outputs_per_twin_and_share_nothing_but_their_inputs():
    model = RiskSAC("MlpPolicy", one_step_env(continuous=True), risk="worst",
                    policy_kwargs={"net_arch": [8], "n_critics": 3}, learning_starts=16, batch_size=8, device="cpu")
    assert model.n_members == 2
    for critic in (model.critic, model.critic_target):
        assert isinstance(critic, MemberContinuousCritic)
        assert critic.n_critics == 3 and [net[-1].out_features for net in critic.q_networks] == [2, 2, 2]
    q_values = model.critic.member_q_values(torch.zeros(5, 1), torch.zeros(5, 1))
    assert q_values.shape == (3, 5, 2)
    model.learn(40)
    assert np.isfinite(model.logger.name_to_value["risk/value"])


@pytest.mark.slow
def test_worst_case_keeps_the_action_where_members_agree_and_the_mean_does_not():
    actions = {}
    for risk_name in ("mean", "worst"):
        model = RiskSAC("MlpPolicy", one_step_env(continuous=True), risk=risk_name, seed=0, learning_starts=100,
                        batch_size=64, learning_rate=3e-3, policy_kwargs={"net_arch": [32]}, device="cpu")
        model.learn(2_000)
        actions[risk_name] = float(model.predict(np.zeros((1, 1), dtype=np.float32), deterministic=True)[0][0, 0])
    assert actions["mean"] > 0.6, actions
    assert abs(actions["worst"]) < 0.3, actions
