"""The README's results table is what the report renders from the committed per-run files.

If this fails after new results landed, regenerate the block:
``python -m ruagent.experiments.headline --report-only --out <folder> --update-readme --readme-block <name>``
(the pairs are in ``BLOCKS``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ruagent.experiments.headline import build_report, readme_block
from ruagent.experiments.readme import read_block

ROOT = Path(__file__).resolve().parents[2]
#: README block name -> the results folder it is generated from (relative to the repository root)
BLOCKS = {"headline": "results/tier1", "twohypothesis": "results/two-hypothesis",
          "cheetah": "results/speed-limit-cheetah"}


@pytest.mark.parametrize(("name", "folder"), BLOCKS.items())
def test_readme_results_block_matches_the_committed_per_run_files(name: str, folder: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # the block names its folder relative to the repository root
    runs = Path(folder, "runs")
    assert runs.is_dir() and any(runs.glob("*/seed*/*/result.json")), (
        f"{runs} holds no per-run result files: the README's numbers cannot be traced")
    expected = readme_block(build_report(folder, {}), folder, name).strip()
    found = read_block((ROOT / "README.md").read_text(encoding="utf-8"), name).strip()
    assert found == expected, (
        f"README's {name} results block differs from what {folder}/runs renders; run "
        f"python -m ruagent.experiments.headline --report-only --out {folder} --update-readme --readme-block {name}")


def test_readme_families_block_matches_the_committed_per_run_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 15's per-family statement (tier 1 and every tier-2 folder) is rendered from their files."""
    from ruagent.experiments.families import BLOCK, default_folders, families_block

    monkeypatch.chdir(ROOT)
    folders = default_folders()
    assert Path("results/tier1") in folders
    expected = families_block(folders, "python -m ruagent.experiments.families --update-readme").strip()
    found = read_block((ROOT / "README.md").read_text(encoding="utf-8"), BLOCK).strip()
    assert found == expected, (
        "README's families block differs; run python -m ruagent.experiments.families --update-readme")
