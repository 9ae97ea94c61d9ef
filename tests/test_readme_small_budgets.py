"""Every benchmark and experiment command of the README and docs/*.md runs, as written plus its small budget.

tests/test_readme_commands.py checks that each command parses; this runs them (slow: about 20 minutes on
2 cores under load; ``python -m pytest tests/test_readme_small_budgets.py -m slow``):

* ``python bench/...``: with ``--quick`` (each benchmark's smoke size) and ``--out`` in a temporary folder;
* experiments that train (``-m ruagent.experiments.headline``, ``solvability``, ``kl_selection``): with
  ``--tiny --seeds 1`` (one worker) and ``--out`` in a temporary folder;
* commands that only re-render committed results (``--report-only``, ``render``, ``families``): exactly as
  written, in a copy of the repository, where they must reproduce every committed table and README block.

train.py's commands run with small budgets in tests/test_readme.py (the Quick start) and tests/cli/.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT
from tests.test_readme_commands import DOCUMENTS, readme_commands

pytestmark = pytest.mark.slow

#: the experiments that train, and the flags that shrink them (their own test-suite budget)
TINY_EXPERIMENTS = {
    "ruagent.experiments.headline": ["--tiny", "--seeds", "1", "--workers", "1", "--no-progress"],
    "ruagent.experiments.solvability": ["--tiny", "--seeds", "1"],
    "ruagent.experiments.kl_selection": ["--tiny", "--seeds", "1"],
}
#: commands that re-render committed files: run as written in a copy of the repository
RENDERING = ("--report-only", "ruagent.experiments.render", "ruagent.experiments.families")


def _commands() -> dict[str, str]:
    """Command -> the document that shows it, for every bench/ and experiment command of the README and docs."""
    found: dict[str, str] = {}
    for document in DOCUMENTS:
        for command in readme_commands(document):
            words = shlex.split(command)
            if words[1].startswith("bench/") or (words[1] == "-m" and words[2].startswith("ruagent.experiments.")):
                if "--help" not in words:
                    found.setdefault(command, document)
    return found


COMMANDS = _commands()


def _run(words: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "PYTHONPATH": str(cwd)}
    done = subprocess.run([sys.executable, *words], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{shlex.join(words)} failed:\n{done.stderr[-3000:]}"
    return done


def test_every_kind_of_command_is_run() -> None:
    kinds = {"bench": 0, "tiny": 0, "rendering": 0}
    for command in COMMANDS:
        kinds["rendering" if any(m in command for m in RENDERING) else
              "bench" if " bench/" in command else "tiny"] += 1
    assert kinds["bench"] >= 15 and kinds["tiny"] >= 8 and kinds["rendering"] >= 5, kinds


@pytest.mark.parametrize("command", [c for c in COMMANDS if not any(m in c for m in RENDERING)], ids=str)
def test_command_runs_with_a_small_budget(command: str, tmp_path: Path) -> None:
    words = shlex.split(command)[1:]
    if words[0].startswith("bench/"):
        small = ["--quick", "--out", str(tmp_path / "out")]
    else:
        small = [*TINY_EXPERIMENTS[words[1]], "--out", str(tmp_path / "out")]
        if "--total-timesteps" in words:  # it overrides --tiny's steps: shrink it too
            small += ["--total-timesteps", "512"]
    done = _run([*words, *small], ROOT)
    assert done.stdout.strip(), f"{command} printed nothing"
    assert any(tmp_path.rglob("*")), f"{command} wrote nothing under its --out"


@pytest.fixture(scope="module")
def repository_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The working tree's files that git tracks or would track (committed results included)."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                            capture_output=True).stdout.decode().split("\0")
    copy = tmp_path_factory.mktemp("repository")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    return copy


def _texts(root: Path) -> dict[str, bytes]:
    """Every committed table and README-like text under ``root`` (figures' bytes depend on the matplotlib build)."""
    paths = [*root.glob("*.md"), *root.glob("docs/*.md"), *root.glob("results/**/table.md"),
             *root.glob("results/**/table.json")]
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in paths}


@pytest.mark.parametrize("command", [c for c in COMMANDS if any(m in c for m in RENDERING)], ids=str)
def test_rendering_command_reproduces_the_committed_files(command: str, repository_copy: Path) -> None:
    before = _texts(repository_copy)
    _run(shlex.split(command)[1:], repository_copy)
    after = _texts(repository_copy)
    changed = sorted(name for name in before if after.get(name) != before[name])
    assert not changed, f"{command} ({COMMANDS[command]}) changed committed files: {changed}"
