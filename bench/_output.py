"""Where a benchmark writes its results: the committed figure only from a full run.

``results/bench/<name>`` (and ``results/<folder>``) hold the figures the README quotes; a ``--quick`` smoke run
writes under the git-ignored ``bench/results/`` instead, so checking that a script runs never replaces them.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUICK_DIR = ROOT / "bench" / "results"


def output_path(committed: Path, quick: bool, out: Path | None = None) -> Path:
    """``out`` when given; else ``committed`` for a full run, ``bench/results/<its name>`` for a quick one."""
    if out is not None:
        return out
    return QUICK_DIR / f"quick-{committed.name}" if quick else committed
