"""Online preference learning (ruagent.preferences.PreferenceLearningCallback) with RiskSAC and
RiskDQN: the callback refits the wrapper's posterior in place while the agent trains, and the
replay buffer, which scores transitions when they are sampled, applies every refit to the
transitions already stored."""

from __future__ import annotations

import numpy as np
import pytest
from stable_baselines3.common.callbacks import BaseCallback

from ruagent.agents import RiskDQN, RiskSAC
from ruagent.preferences import PreferenceLearningCallback
from ruagent.reward_models.ensemble import EnsembleRewardModel
from tests.agents.test_offpolicy import DQN_SMALL, SAC_SMALL


class BufferRewards(BaseCallback):
    """At every rollout end (after the labelling callback's): labels so far, and the members' rewards
    of the first 32 stored transitions under the posterior as it is now."""

    def __init__(self, labelling: PreferenceLearningCallback):
        super().__init__()
        self.labelling = labelling
        self.rounds: list[tuple[int, np.ndarray]] = []

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        buffer = self.model.replay_buffer
        if buffer.pos < 32:
            return
        stored = (buffer.observations[:32, 0], buffer.actions[:32, 0], buffer.next_observations[:32, 0])
        self.rounds.append((self.labelling.log.n_labels, buffer.relabel(*stored)))


@pytest.mark.parametrize(("algo", "env_id", "small"), [(RiskDQN, "CartPole-v1", DQN_SMALL),
                                                        (RiskSAC, "Pendulum-v1", SAC_SMALL)])
def test_a_refit_during_training_relabels_the_stored_transitions(algo, env_id, small, make_env):
    posteriors = []

    def posterior(env):
        model = EnsembleRewardModel(env.observation_space, env.action_space, n_members=3, hidden_sizes=(16,),
                                    prior_reward_scale=1.0, seed=0)
        posteriors.append(model)
        return model

    env = make_env(env_id, posterior)
    agent = algo("MlpPolicy", env, risk="cvar", risk_kwargs={"alpha": 0.5}, seed=0, **small)
    assert agent.replay_buffer.reward_model is posteriors[0]  # the wrapper's object: refits reach the buffer
    labelling = PreferenceLearningCallback(posteriors[0], budget=16, segment_length=10, update_every=100,
                                           initial_fraction=0.5, fitter_kwargs={"epochs": 5}, seed=0)
    spy = BufferRewards(labelling)
    agent.learn(300, callback=[labelling, spy])

    labels = [n for n, _ in spy.rounds]
    assert labels[-1] == 16 and len(set(labels)) >= 3  # labels were asked in at least two rounds during training
    for (n_before, before), (n_after, after) in zip(spy.rounds, spy.rounds[1:]):
        if n_after > n_before:  # a refit between the two rollout ends: the same transitions score differently
            assert not np.allclose(before, after), (n_before, n_after)
        else:  # no refit: the same rewards, exactly
            np.testing.assert_array_equal(before, after)
    assert np.isfinite(agent.logger.name_to_value["risk/reward_std"])
