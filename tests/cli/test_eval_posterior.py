"""ruagent/cli/eval_posterior.py: the OOD AUROC separates what the labels never held, by transition."""

from __future__ import annotations

import numpy as np
import pytest

from ruagent.cli.eval_posterior import ood_auroc
from ruagent.data import Transitions
from ruagent.rollouts import Episodes


class StdByFirstColumn:
    """A posterior whose std is the first observation column: labelled rows get 0, others what we put there."""

    def predict_moments(self, obs, action, next_obs):
        std = np.asarray(obs, dtype=np.float64)[:, 0]
        return np.zeros((1, len(std)), dtype=np.float32), np.zeros_like(std), std


def _episodes(obs: np.ndarray, side_effects: np.ndarray) -> Episodes:
    n = len(obs)
    return Episodes(obs=obs, actions=np.zeros(n, dtype=np.int64), next_obs=obs, env_rewards=np.zeros(n),
                    side_effects=side_effects, episode_ids=np.zeros(n, dtype=np.int64),
                    member_rewards=np.zeros((1, n), dtype=np.float32), posterior_std=obs[:, 0].astype(np.float64))


def test_unseen_and_hazard_transitions_are_scored_against_the_labels() -> None:
    labelled = np.column_stack([np.zeros(6), np.arange(6.0)]).astype(np.float32)  # std 0 on every label
    train = Transitions.from_arrays(labelled, np.zeros(6, dtype=np.int64), labelled, np.zeros(6))
    # an agent that revisits two labelled transitions and visits two new ones (std 1 and 2, one a hazard)
    visited = np.vstack([labelled[:2], [[1.0, 10.0], [2.0, 11.0]]]).astype(np.float32)
    agent = _episodes(visited, np.array([False, False, False, True]))
    random = _episodes(np.array([[3.0, 12.0]], dtype=np.float32), np.array([True]))
    found = ood_auroc(StdByFirstColumn(), train, [agent], random, seed=0)
    assert found["test_only"]["n_pos"] == 2 and found["test_only"]["n_train"] == 6  # the revisits are not OOD
    assert found["test_only"]["auroc"]["estimate"] == pytest.approx(1.0)
    assert found["hazard"]["n_pos"] == 2 and found["hazard"]["auroc"]["estimate"] == pytest.approx(1.0)


def test_a_group_with_no_transition_says_why_it_has_no_auroc() -> None:
    labelled = np.column_stack([np.zeros(4), np.arange(4.0)]).astype(np.float32)
    train = Transitions.from_arrays(labelled, np.zeros(4, dtype=np.int64), labelled, np.zeros(4))
    agent = _episodes(labelled[:3], np.zeros(3, dtype=bool))
    found = ood_auroc(StdByFirstColumn(), train, [agent], _episodes(labelled[:1], np.zeros(1, dtype=bool)), seed=0)
    assert found["test_only"] == {"auroc": None, "n_pos": 0, "n_train": 4,
                                  "reason": "every deployment transition occurs in the label data"}
    assert found["hazard"]["auroc"] is None and "no side effect" in found["hazard"]["reason"]
