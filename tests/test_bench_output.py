"""A benchmark's --quick smoke run never replaces the committed figures under results/ (bench/_output.py)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from _output import QUICK_DIR, output_path  # noqa: E402


def test_quick_runs_write_under_the_ignored_bench_results(tmp_path: Path) -> None:
    committed = ROOT / "results" / "bench" / "wrapper.json"
    assert output_path(committed, quick=False) == committed
    assert output_path(committed, quick=True) == QUICK_DIR / "quick-wrapper.json"
    assert output_path(committed, quick=True, out=tmp_path / "x.json") == tmp_path / "x.json"
    assert "bench/results/" in (ROOT / ".gitignore").read_text().splitlines()


def test_every_benchmark_with_a_quick_mode_routes_its_output_through_output_path() -> None:
    for script in sorted((ROOT / "bench").glob("*.py")):
        text = script.read_text(encoding="utf-8")
        writes_committed = re.search(r'"results"|results/', text) is not None
        if '"--quick"' in text and writes_committed:
            assert "output_path(" in text, f"{script.name}: --quick would overwrite a committed result"
