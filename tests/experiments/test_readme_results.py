"""The README's results tables are what the reports render from the committed per-run files.

If this fails after new results landed, regenerate every block: ``python -m ruagent.experiments.render``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ruagent.experiments import families, pbrl, posterior_checks
from ruagent.experiments.headline import rewritten_table
from ruagent.experiments.readme import read_block
from ruagent.experiments.render import HEADLINE_BLOCKS, expected_blocks, main, report_folders

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def rendered() -> dict[str, str]:
    return expected_blocks(ROOT)


#: per block, the committed per-run files its numbers come from (one glob per source folder)
SOURCES = {
    **{name: [f"{folder}/runs/*/seed*/*/result.json"] for name, folder in HEADLINE_BLOCKS.items()},
    families.BLOCK: ["results/tier1/runs/*/seed*/*/result.json"],
    families.CHEETAH_BLOCK: [f"{folder}/runs/*/seed*/*/result.json" for folder in families.CHEETAH_FOLDERS[:2]],
    posterior_checks.BLOCK: ["results/calibration/runs/*.json", "results/calibration-declared/runs/*.json",
                             "results/risk_agents/*/seed*.json", "results/uncertainty_cost/*/cvar-seed*.json"],
    pbrl.BLOCK: [f"{pbrl.FOLDER}/*/seed*.json"],
}


def test_every_rendered_block_is_checked(rendered: dict[str, str]) -> None:
    assert set(SOURCES) == set(rendered)


@pytest.mark.parametrize("name", list(SOURCES))
def test_readme_results_block_matches_the_committed_per_run_files(name: str, rendered: dict[str, str]) -> None:
    for pattern in SOURCES[name]:
        assert any(ROOT.glob(pattern)), f"no file matches {pattern}: the README's numbers cannot be traced"
    found = read_block((ROOT / "README.md").read_text(encoding="utf-8"), name).strip()
    assert found == rendered[name].strip(), (
        f"README's {name} results block differs from what the committed files render; run "
        "python -m ruagent.experiments.render")


@pytest.mark.parametrize("folder", [f.as_posix() for f in report_folders(ROOT)])
def test_each_results_folder_table_is_what_its_per_run_files_render(folder: str) -> None:
    assert (ROOT / folder / "table.md").read_text(encoding="utf-8") == rewritten_table(ROOT / folder), (
        f"{folder}/table.md differs from what its per-run files render; run python -m ruagent.experiments.render")


def test_report_folders_include_the_older_runs_docs_quote() -> None:
    folders = {f.as_posix() for f in report_folders(ROOT)}
    assert set(HEADLINE_BLOCKS.values()) <= folders and "results/headline" in folders
    assert "results/kl_selection" not in folders  # posterior jobs but no headline report of its own


def test_render_rewrites_a_stale_block_and_check_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture) -> None:
    readme = tmp_path / "README.md"
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start, end = "<!-- results:cheetah:start -->", "<!-- results:cheetah:end -->"
    readme.write_text(text.split(start)[0] + start + "\nstale\n" + end + text.split(end)[1], encoding="utf-8")
    monkeypatch.chdir(ROOT)  # the blocks name their folders relative to the repository root
    assert main(["--readme", str(readme), "--check"]) == 1 and "cheetah" in capsys.readouterr().err
    assert main(["--readme", str(readme), "--blocks-only"]) == 0  # (without it, each folder's files are rewritten)
    assert readme.read_text(encoding="utf-8") == text  # only the stale block changed, back to the committed one
    assert main(["--readme", str(readme), "--check"]) == 0


def test_render_rewrites_each_results_folder_once_before_the_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture) -> None:
    from ruagent.experiments import render

    rewritten = []
    monkeypatch.setattr(render, "rewrite_report", rewritten.append)  # the real one is --report-only's (tested)
    monkeypatch.chdir(ROOT)
    readme = tmp_path / "README.md"
    readme.write_text((ROOT / "README.md").read_text(encoding="utf-8"), encoding="utf-8")
    assert main(["--readme", str(readme)]) == 0
    assert len(rewritten) == len(set(rewritten))
    assert set(HEADLINE_BLOCKS.values()) | {"results/tier2-ensemble-env"} <= {Path(f).as_posix() for f in rewritten}
    count = len(rewritten)
    assert main(["--readme", str(readme), "--check"]) == 0 and len(rewritten) == count  # --check writes nothing
