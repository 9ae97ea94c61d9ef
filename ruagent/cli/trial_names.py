"""Names of sweep trials from their grid values: the folder name a sweep gives a trial and the label its
report prints (sweep.py and sweep_report.py both read them, so neither imports the other for them)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["params_label", "value_label"]


def value_label(value: Any) -> str:
    """A short file-name-safe text for one axis value."""
    if isinstance(value, dict):
        return "-".join(value_label(item) for item in value.values())
    text = Path(value).stem if isinstance(value, str) and value.endswith((".yaml", ".yml")) else str(value)
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", text.removeprefix("ruagent/")).strip("-") or "x"


def params_label(params: Mapping[str, Any], separator: str = "_") -> str:
    """``seed=0_risk=cvar-0.1_budget=500``: a trial's name from its axis values (last part of dotted keys)."""
    return separator.join(f"{value_label(str(axis).rsplit('.', 1)[-1])}={value_label(value)}"
                          for axis, value in params.items())
