"""The README's code runs as written (with a smaller training budget), so it cannot drift from the API."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _section_code(heading: str) -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split(heading, 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, f"no python block under {heading!r}"
    return match.group(1)


def test_own_sb3_project_example_runs(tmp_path):
    code = _section_code("## Use it in your own SB3 project")
    assert "agent.learn(20_000" in code
    small = code.replace("agent.learn(20_000", "agent.learn(512").replace("n_eval_episodes=10", "n_eval_episodes=2")
    script = tmp_path / "example.py"
    script.write_text(small, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"true return on the test map: -?\d+\.\d\d", result.stdout), result.stdout


def test_readme_names_the_two_commands_that_ci_runs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert 'pip install -e ".[dev]" && python train.py' in readme
    assert 'pip install -e ".[dev,ray]" && python -m pytest' in readme
    assert 'pip install --quiet -e ".[dev,ray]"' in ci
    assert ci.rstrip().endswith("python -m pytest")
