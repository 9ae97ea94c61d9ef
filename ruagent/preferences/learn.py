"""Entry points: learn a reward posterior from budgeted, actively chosen labels before training.

* :func:`learn_reward_from_preferences` — preference queries over segment pairs.
* :func:`learn_reward_from_labels` — reward labels (regression): the same budget, rounds and
  query strategies, choosing which transitions to ask the env's reward for.

Both run in rounds (Christiano et al. 2017; Settles, "Active Learning Literature Survey",
2009): a first share of the budget is spent on random queries, the posterior is fitted,
and each later round scores fresh candidates with the current posterior, asks the best,
and refits. For labelling during agent training use
:class:`~ruagent.preferences.online.PreferenceLearningCallback`.
"""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from ruagent.data import Transitions, collect_transitions
from ruagent.preferences.fit import PreferenceFitter, make_fitter
from ruagent.preferences.labellers import Labeller, make_labeller
from ruagent.preferences.queries import PairQuery, make_query, transition_scores
from ruagent.preferences.segments import SegmentPairs, candidate_pairs, collect_segments
from ruagent.preferences.session import LabelLog

__all__ = ["learn_reward_from_labels", "learn_reward_from_preferences", "make_pair_query", "round_sizes"]


def round_sizes(budget: int, initial_fraction: float, n_rounds: int) -> list[int]:
    """Labels per round: ``round(initial_fraction · budget)`` first, the rest split evenly over ``n_rounds``."""
    if budget < 0 or not 0.0 <= initial_fraction <= 1.0 or n_rounds < 0:
        raise ValueError(
            f"need budget >= 0, initial_fraction in [0, 1], n_rounds >= 0; got {budget}, {initial_fraction}, {n_rounds}"
        )
    initial = round(initial_fraction * budget) if n_rounds else budget
    rest = budget - initial
    sizes = [initial] + [rest // n_rounds + (i < rest % n_rounds) for i in range(n_rounds)]
    return [size for size in sizes if size > 0]


def _open_log(session: str | os.PathLike | LabelLog | None, meta: dict[str, Any]) -> LabelLog:
    if isinstance(session, LabelLog):
        return session
    if session is not None and os.path.isfile(session):
        return LabelLog.load(session)  # resume: keeps every label already given
    return LabelLog(autosave=session, meta=meta)


def make_pair_query(query: str | PairQuery, reward_model: Any, fitter: PreferenceFitter, seed: int | None) -> PairQuery:
    """A query strategy wired to the model (and, for info_gain on a linear model, its Laplace posterior)."""
    kwargs: dict[str, Any] = {}
    if query in ("disagreement", "info_gain"):
        kwargs = {"label_noise": fitter.label_noise, "temperature": fitter.temperature}
        if query == "info_gain" and getattr(reward_model, "family", None) == "linear":
            kwargs["delta_moments"] = fitter.delta_moments
    return make_query(query, reward_model, seed=seed, **kwargs)


def learn_reward_from_preferences(
    env: gym.Env,
    reward_model: Any,
    budget: int = 200,
    query: str | PairQuery = "random",
    labeller: str | Labeller = "synthetic",
    segment_length: int = 25,
    initial_fraction: float = 0.25,
    n_rounds: int = 4,
    candidates_per_query: int = 10,
    policy: Any = None,
    label_noise: float = 0.0,
    temperature: float = 1.0,
    session: str | os.PathLike | LabelLog | None = None,
    labeller_kwargs: dict[str, Any] | None = None,
    fitter_kwargs: dict[str, Any] | None = None,
    seed: int | None = None,
    progress_bar: bool = True,
) -> tuple[Any, LabelLog]:
    """Fit ``reward_model`` to ``budget`` preference labels over segments of ``env`` rollouts.

    :param env: the env of the *training* variant (its reward is read by the synthetic labeller only).
    :param reward_model: an :class:`~ruagent.EnsembleRewardModel` or :class:`~ruagent.BayesianLinearRewardModel`.
    :param budget: total labels, including those in a resumed ``session``.
    :param query: ``"random"``, ``"disagreement"``, ``"info_gain"`` or a :class:`PairQuery`.
    :param labeller: ``"synthetic"``, ``"human"``, ``"web"`` (a browser page,
        :class:`~ruagent.preferences.web.WebLabeller`) or a :class:`Labeller`. The two human ones need
        the env made with a ``render_mode`` (``"rgb_array"`` for the web page).
    :param segment_length: T, steps per segment.
    :param initial_fraction: share of the budget asked at random before the first fit.
    :param n_rounds: active rounds after the first (each: fresh rollouts, score, ask, refit).
    :param candidates_per_query: candidate pairs scored per label asked.
    :param policy: rollout policy (None: uniform random; a callable or an SB3 model).
    :param label_noise: ε assumed by the likelihood (and, for ``"synthetic"``, its error rate
        unless ``labeller_kwargs`` says otherwise).
    :param temperature: τ assumed by the likelihood (and the synthetic labeller's default).
    :param session: a :class:`LabelLog`, or a path: resumed if the file exists, else created
        and autosaved after every batch of answers.
    :return: ``(reward_model, label_log)``; ``label_log.meta["history"]`` has the fit metrics per round.
    """
    reward_model.bind(env)  # checks the spaces; finds the env's reward_features for features="env"
    env.reset(seed=seed)
    labeller_kwargs = dict(labeller_kwargs or {})
    if labeller == "synthetic":
        labeller_kwargs.setdefault("temperature", temperature)
        labeller_kwargs.setdefault("error_rate", label_noise)
    labeller = make_labeller(labeller, seed=seed, **labeller_kwargs)
    fitter = make_fitter(reward_model, label_noise=label_noise, temperature=temperature, **(fitter_kwargs or {}))
    meta = {"budget": budget, "query": str(query), "segment_length": segment_length, "seed": seed}
    log = _open_log(session, meta)
    history: list[dict[str, float]] = log.meta.setdefault("history", [])
    if log.n_labels:  # resumed: fit on what was labelled before
        history.append(fitter.fit(*log.labelled()))
    pair_query = make_pair_query(query, reward_model, fitter, seed)
    rng = np.random.default_rng(seed)
    record_frames = bool(getattr(labeller, "interactive", False)) and env.render_mode in ("ansi", "rgb_array")
    remaining = max(budget - len(log), 0)
    sizes = round_sizes(remaining, initial_fraction if not log.n_labels else 0.0, n_rounds)
    bar = tqdm(total=remaining, desc=f"preference labels ({query})", disable=not progress_bar)
    for round_index, n_ask in enumerate(sizes):
        if log.quit:
            break
        is_random = round_index == 0 and not log.n_labels
        n_candidates = n_ask if is_random else n_ask * candidates_per_query
        pool = collect_segments(
            env,
            max(2, min(2 * n_candidates, 4 * n_ask + 50)),
            segment_length,
            policy=policy,
            seed=int(rng.integers(2**31)),
            record_frames=record_frames,
        )
        index = candidate_pairs(len(pool), n_candidates, rng)
        strategy = make_query("random", seed=int(rng.integers(2**31))) if is_random else pair_query
        rows, scores = strategy.ranked(pool, index, n_ask, rng)
        log.ask(labeller, SegmentPairs.from_segments(pool, index[rows]), query=strategy.name, scores=scores,
                context={"budget": budget, "candidates": len(index)})
        bar.update(n_ask)
        metrics = fitter.fit(*log.labelled(), progress_bar=False)
        history.append(metrics)
        bar.set_postfix(loss=f"{metrics['loss']:.3f}", acc=f"{metrics['accuracy']:.2f}")
    bar.close()
    if log.autosave is not None:
        log.save(log.autosave)
    return reward_model, log


def learn_reward_from_labels(
    env: gym.Env,
    reward_model: Any,
    budget: int = 500,
    query: str = "random",
    initial_fraction: float = 0.25,
    n_rounds: int = 4,
    candidates_per_query: int = 10,
    policy: Any = None,
    seed: int | None = None,
    progress_bar: bool = True,
    **fit_kwargs: Any,
) -> tuple[Any, Transitions]:
    """Fit ``reward_model`` by regression on ``budget`` env-reward labels of chosen transitions.

    Candidate transitions come from rollouts of ``policy``; their rewards are read only for
    the transitions chosen by ``query`` (``random``, ``disagreement`` = member variance of r,
    ``info_gain`` = ½ log(1 + predictive variance / σ²)).

    :return: ``(reward_model, labelled Transitions)``.
    """
    if query not in ("random", "disagreement", "info_gain"):
        raise ValueError(f"query must be 'random', 'disagreement' or 'info_gain', got {query!r}")
    reward_model.bind(env)
    rng = np.random.default_rng(seed)
    labelled: list[Transitions] = []
    for round_index, n_ask in enumerate(round_sizes(budget, initial_fraction, n_rounds)):
        is_random = round_index == 0 or query == "random"
        candidates = collect_transitions(
            env, n_ask * (1 if is_random else candidates_per_query), policy=policy, seed=int(rng.integers(2**31))
        )
        if is_random:
            chosen = np.arange(len(candidates))
        else:
            scores = _transition_scores(reward_model, candidates, query, rng)
            chosen = np.argsort(-scores, kind="stable")[:n_ask]
        labelled.append(candidates[chosen])  # only now is the env reward of these transitions "asked"
        data = Transitions.concatenate(labelled)
        if getattr(reward_model, "family", None) == "linear":  # conjugate: exact online update
            reward_model.update(labelled[-1]) if round_index > 0 else reward_model.fit(data)
        else:
            reward_model.fit(data, progress_bar=progress_bar, **fit_kwargs)
    return reward_model, Transitions.concatenate(labelled)


def _transition_scores(reward_model: Any, candidates: Transitions, query: str, rng: np.random.Generator) -> np.ndarray:
    if query == "info_gain" and hasattr(reward_model, "posterior_cov"):
        features = reward_model.basis(reward_model.features(candidates.obs, candidates.action, candidates.next_obs))
        return transition_scores(
            query, features=features, cov=reward_model.posterior_cov, noise_var=reward_model.noise_std**2
        )
    member_rewards = reward_model.predict(candidates.obs, candidates.action, candidates.next_obs)
    return transition_scores(query, member_rewards=member_rewards, rng=rng)
