"""What an evaluation result holds, shared by evaluate.py (which writes it) and the readers that pool
or compare results (compare.py, sweep_report.py), so none of them imports another for these names."""

from __future__ import annotations

__all__ = ["AGENT_METRICS", "BAR_METRICS", "EVAL_SCHEMA"]

#: schema tag of eval.json and comparison.json
EVAL_SCHEMA = "ruagent.eval/1"
#: per-agent metrics in table and plot order
AGENT_METRICS = ("true_return", "proxy_return", "goodhart_gap", "regret", "side_effect_rate", "episode_length")
#: the metrics drawn as bars
BAR_METRICS = ("true_return", "goodhart_gap", "regret", "side_effect_rate")
