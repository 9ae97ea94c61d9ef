"""Reward learning from budgeted, actively chosen preference (and reward) labels.

Segments of rollouts are compared in pairs by a labeller (simulated from the env's reward,
or a human in the terminal or in a browser page); a Bradley–Terry likelihood turns the answers into a posterior
over reward functions — the batched ensemble, or a Laplace approximation for the linear
model. Query strategies (random, ensemble disagreement, expected information gain) spend
the label budget, before training (:func:`learn_reward_from_preferences`) and during it
(:class:`PreferenceLearningCallback`). See docs/preferences.md.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> submodule; imported on first use so `import ruagent.preferences` stays light
_LAZY = {
    "Segments": "segments",
    "SegmentPairs": "segments",
    "SegmentRecorder": "segments",
    "collect_segments": "segments",
    "candidate_pairs": "segments",
    "make_pairs": "segments",
    "member_segment_returns": "segments",
    "bradley_terry_loss": "bradley_terry",
    "preference_probability": "bradley_terry",
    "nll_derivatives": "bradley_terry",
    "Labeller": "labellers",
    "SyntheticLabeller": "labellers",
    "HumanLabeller": "labellers",
    "LabellingQuit": "labellers",
    "make_labeller": "labellers",
    "PairQuery": "queries",
    "RandomQuery": "queries",
    "DisagreementQuery": "queries",
    "InfoGainQuery": "queries",
    "LabelSchedule": "queries",
    "make_query": "queries",
    "transition_scores": "queries",
    "LaplacePosterior": "laplace",
    "fit_laplace": "laplace",
    "PreferenceFitter": "fit",
    "EnsemblePreferenceFitter": "fit",
    "LinearPreferenceFitter": "fit",
    "make_fitter": "fit",
    "LabelLog": "session",
    "LiveBatch": "session",
    "WebLabeller": "web",
    "learn_reward_from_preferences": "learn",
    "learn_reward_from_labels": "learn",
    "PreferenceLearningCallback": "online",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"ruagent.preferences.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'ruagent.preferences' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
