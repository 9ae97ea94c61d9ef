"""Command-line internals of ``train.py`` and ``evaluate.py``: configs, run folders, stages.

``python train.py --help`` lists every stage, option and config key with its default.
"""

from __future__ import annotations

import os
import sys

__all__ = ["program_name"]


def program_name(script: str) -> str:
    """The command as the user typed it, for usage lines and hints: ``ruagent-train`` /
    ``ruagent-evaluate`` when started through the installed scripts, else ``script`` (``train.py``)."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return name if name.startswith("ruagent-") else script
