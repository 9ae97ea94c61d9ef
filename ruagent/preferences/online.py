"""Preference learning during RL training: an SB3 callback that queries, labels and refits.

Christiano et al. (NeurIPS 2017) interleave three processes: the agent acts on the current
reward estimate, segments of its recent behaviour are shown to a labeller, and the reward
model is refitted on all labels so far. :class:`PreferenceLearningCallback` does this
inside ``model.learn``: it cuts the rollouts into segments as they are collected, and at
the end of each rollout that falls ``update_every`` steps after the last update, it asks
for the labels the :class:`~ruagent.preferences.queries.LabelSchedule` allows by now,
chosen by the query strategy from pairs of recent segments, refits the posterior, and
logs ``preferences/labels``, ``preferences/loss`` and ``preferences/accuracy``.

While a round is asked, training is paused: ``_on_rollout_end`` runs in SB3's training loop, so no
env steps and no gradient steps happen until the labeller answers (a synthetic one at once; a person
in the terminal or the web page when they do). With ``wait_timeout`` a round gives up after that many
seconds without an answer; what was answered is kept and fitted, the rest is not recorded (the next
round asks again what the schedule grants), and training goes on. A person who stops (``q``) ends the
labelling for this run; training goes on with the posterior fitted so far.

The reward model is updated in place, so a :class:`~ruagent.RewardUncertaintyWrapper`
(or its VecEnv twin) holding the same object hands the agent the refitted rewards from the
next rollout on. The env's own reward is read from ``info["env_reward"]`` (what the
wrappers put there) and used by the synthetic labeller only.
"""

from __future__ import annotations

import collections
import os
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from ruagent.preferences.fit import make_fitter
from ruagent.preferences.labellers import Labeller, make_labeller
from ruagent.preferences.learn import make_pair_query
from ruagent.preferences.queries import LabelSchedule, PairQuery
from ruagent.preferences.segments import SegmentPairs, SegmentRecorder, Segments, candidate_pairs
from ruagent.preferences.session import LabelLog

__all__ = ["PreferenceLearningCallback"]


class PreferenceLearningCallback(BaseCallback):
    """Ask for preference labels within a budget while the agent trains, and refit the posterior.

    :param reward_model: the posterior the agent's wrapper reads (updated in place).
    :param budget: total labels, including those already in ``session`` (e.g. asked before
        training by :func:`~ruagent.preferences.learn.learn_reward_from_preferences`).
    :param query: ``"random"``, ``"disagreement"``, ``"info_gain"`` or a :class:`PairQuery`.
    :param labeller: ``"synthetic"``, ``"human"``, ``"web"`` or a :class:`Labeller`.
    :param segment_length: T.
    :param update_every: agent timesteps between label rounds (checked at rollout ends).
    :param initial_fraction: share of the budget the schedule grants at timestep 0 (ask it
        before training; if it was not, the first round asks it).
    :param schedule_decay: t₀ / total_timesteps of the decaying label rate; None for constant.
    :param candidates_per_query: candidate pairs scored per label asked.
    :param pool_size: how many of the most recent segments candidates are drawn from.
    :param label_noise: ε of the likelihood (and the synthetic labeller's error rate by default).
    :param temperature: τ of the likelihood (and the synthetic labeller's by default).
    :param session: a :class:`LabelLog` or a path (resumed if it exists, autosaved).
    :param record_frames: keep ``render()`` frames for a human labeller (envs must render).
    :param fitter_kwargs: passed to the fitter (e.g. ``epochs`` for the ensemble).
    :param labels_in_posterior: linear posteriors: how many of the session's first answered
        labels ``reward_model`` already holds (a Laplace update adds only the others). None: those
        asked before training (timestep −1), as after
        :func:`~ruagent.preferences.learn.learn_reward_from_preferences` on the same model.
        Ensembles refit on all labels and ignore it.
    :param wait_timeout: live labellers (the web page): seconds a label round waits for the next answer
        before it gives up on the rest of the round (not recorded; later rounds ask again what the
        schedule grants). None: wait as long as it takes. Training is paused while a round waits.
    :param seed: seeds candidate pairs, tie-breaks and the synthetic labeller.
    """

    def __init__(
        self,
        reward_model: Any,
        budget: int,
        query: str | PairQuery = "random",
        labeller: str | Labeller = "synthetic",
        segment_length: int = 25,
        update_every: int = 2048,
        initial_fraction: float = 0.25,
        schedule_decay: float | None = 0.25,
        candidates_per_query: int = 10,
        pool_size: int = 500,
        label_noise: float = 0.0,
        temperature: float = 1.0,
        session: str | os.PathLike | LabelLog | None = None,
        record_frames: bool = False,
        fitter_kwargs: dict[str, Any] | None = None,
        labels_in_posterior: int | None = None,
        wait_timeout: float | None = None,
        seed: int | None = None,
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose)
        if wait_timeout is not None and not wait_timeout > 0:
            raise ValueError(f"wait_timeout must be > 0 seconds or None (wait as long as it takes), got {wait_timeout}")
        self.wait_timeout = wait_timeout
        self.reward_model = reward_model
        self.budget = int(budget)
        self.segment_length = int(segment_length)
        self.update_every = int(update_every)
        self.initial_fraction = float(initial_fraction)
        self.schedule_decay = schedule_decay
        self.candidates_per_query = int(candidates_per_query)
        self.record_frames = record_frames
        self.rng = np.random.default_rng(seed)
        labeller_kwargs = {"temperature": temperature, "error_rate": label_noise} if labeller == "synthetic" else {}
        self.labeller = make_labeller(labeller, seed=seed, **labeller_kwargs)
        self.fitter = make_fitter(
            reward_model, label_noise=label_noise, temperature=temperature, **(fitter_kwargs or {})
        )
        self.query = make_pair_query(query, reward_model, self.fitter, seed)
        if isinstance(session, LabelLog):
            self.log = session
        elif session is not None and os.path.isfile(session):
            self.log = LabelLog.load(session)
        else:
            self.log = LabelLog(autosave=session, meta={"budget": budget, "query": str(query)})
        if hasattr(self.fitter, "n_absorbed"):
            # a Bayesian update must not count a label twice: the labels asked before training (timestep -1,
            # e.g. by learn_reward_from_preferences on this model) are already in its posterior
            self.fitter.n_absorbed = (
                int(np.sum((self.log.timesteps < 0) & np.isfinite(self.log.labels)))
                if labels_in_posterior is None
                else int(labels_in_posterior)
            )
        self._pool: collections.deque[Segments] = collections.deque(maxlen=int(pool_size))
        self._recorder: SegmentRecorder | None = None
        self.schedule: LabelSchedule | None = None
        self._last_update = 0
        self._fitted_on = -1
        #: the metrics of the latest fit (loss, accuracy, n_labels); empty before the first
        self.last_metrics: dict[str, float] = {}

    # ------------------------------------------------------------------ SB3 hooks
    def _on_training_start(self) -> None:
        total = int(self.locals.get("total_timesteps", self.model._total_timesteps))
        self.schedule = LabelSchedule(self.budget, total, self.initial_fraction, self.schedule_decay)
        self._recorder = SegmentRecorder(self.segment_length, self.training_env.num_envs, self.record_frames)
        self._last_update = self.num_timesteps  # 0 at a fresh start: the first rollout end labels
        if self.log.n_labels and self._fitted_on != len(self.log):  # labels from before training or a resume
            self._fit()

    def _on_step(self) -> bool:
        infos = self.locals["infos"]
        dones = np.asarray(self.locals["dones"], dtype=bool)
        new_obs = self.locals["new_obs"]
        # the true next observation: SB3 VecEnvs put the terminal one in the info and return the reset one
        next_obs = np.stack(
            [
                info["terminal_observation"] if done and "terminal_observation" in info else new_obs[i]
                for i, (done, info) in enumerate(zip(dones, infos))
            ]
        )
        actions = self.locals.get("clipped_actions", self.locals["actions"])
        actions = np.asarray(actions).reshape(len(dones), *self.training_env.action_space.shape)
        rewards = np.asarray(self.locals["rewards"], dtype=np.float64).reshape(-1)
        env_rewards = np.array([info.get("env_reward", rewards[i]) for i, info in enumerate(infos)])
        frames = self.training_env.env_method("render") if self.record_frames else None
        # SB3 updates _last_obs only after the callback: here it is still the obs the action was taken in
        self._recorder.add(self.model._last_obs, actions, next_obs, env_rewards, dones, frames)
        finished = self._recorder.pop()
        if finished is not None:
            self._pool.extend(finished[i] for i in range(len(finished)))
        return True  # a labeller who quits stops the labelling, not the agent

    def _on_rollout_end(self) -> None:
        first = self._last_update == 0
        last = self.num_timesteps >= self.schedule.total_timesteps  # spend what the schedule still grants
        if not (first or last or self.num_timesteps - self._last_update >= self.update_every):
            return
        self._last_update = self.num_timesteps
        self.label_round()

    # ------------------------------------------------------------------ labelling
    def label_round(self) -> int:
        """Ask the labels due by now (if the pool allows), refit, log; return how many were recorded
        (fewer than asked when a person stops or a live round times out)."""
        if self.log.quit or len(self._pool) < 2:
            return 0
        n_ask = min(self.schedule.labels_due(self.num_timesteps) - len(self.log), self.budget - len(self.log))
        if n_ask <= 0:
            return 0
        pool = Segments.concatenate(list(self._pool))
        index = candidate_pairs(len(pool), n_ask * self.candidates_per_query, self.rng)
        rows, scores = self.query.ranked(pool, index, n_ask, self.rng)
        asked_before = len(self.log)
        self.log.ask(self.labeller, SegmentPairs.from_segments(pool, index[rows]), self.query.name, self.num_timesteps,
                     scores=scores, timeout=self.wait_timeout,
                     context={"budget": self.budget, "candidates": len(index)})
        recorded = len(self.log) - asked_before
        if recorded and self.log.n_labels:  # nothing new (timed out, stopped at once): the posterior stands
            self._fit()
        return recorded

    def refit_on_session(self) -> dict[str, float]:
        """Fit the posterior on every label of the session, outside training (e.g. a resumed run with no steps left)."""
        if not self.log.n_labels:
            return {}
        metrics = self.last_metrics = self.fitter.fit(*self.log.labelled())
        self._fitted_on = len(self.log)
        return metrics

    def _fit(self) -> None:
        metrics = self.last_metrics = self.fitter.fit(*self.log.labelled())
        self._fitted_on = len(self.log)
        self.logger.record("preferences/labels", self.log.n_labels)
        self.logger.record("preferences/asked", len(self.log))
        self.logger.record("preferences/loss", metrics["loss"])
        self.logger.record("preferences/accuracy", metrics["accuracy"])
        if self.verbose:
            print(f"preferences: {self.log.n_labels} labels, loss {metrics['loss']:.3f}, acc {metrics['accuracy']:.2f}")
