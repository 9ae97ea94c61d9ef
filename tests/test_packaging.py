"""The wheel must contain every package: pyproject lists them explicitly (package-dir mapping)."""

import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def _declared():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return set(config["packages"]), config["package-dir"]


def test_every_package_folder_is_declared():
    packages, package_dir = _declared()
    found = set()
    for top_name, folder in package_dir.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([top_name, *rel.parts]) if rel.parts else top_name)
    missing = sorted(found - packages)
    assert not missing, f"add these to [tool.setuptools] packages in pyproject.toml: {missing}"


def test_agents_and_envs_import_under_ruagent():
    import ruagent.agents
    import ruagent.envs

    assert Path(ruagent.agents.__file__).parent == ROOT / "agents"
    assert Path(ruagent.envs.__file__).parent == ROOT / "envs"


def test_the_cli_modules_import_each_other_without_cycles():
    """train -> sweep -> stages, evaluate -> compare, sweep -> sweep_report: shared names live in their own
    modules (eval_format, trial_names, stages.run_stages), so no import runs in a circle, lazy ones included."""
    import ast

    cli = Path(__file__).resolve().parents[1] / "ruagent" / "cli"
    imports = {}
    for path in cli.glob("*.py"):
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ruagent.cli."):
                found.add(node.module.split(".")[2])
            elif isinstance(node, ast.ImportFrom) and node.module == "ruagent.cli":
                found |= {alias.name for alias in node.names}
        imports[path.stem] = found & {p.stem for p in cli.glob("*.py")}

    def reaches(start, target, seen):
        return any(n == target or (n not in seen and reaches(n, target, seen | {n})) for n in imports[start])

    circular = sorted(module for module in imports if reaches(module, module, {module}))
    assert not circular, f"ruagent.cli modules in an import cycle: {circular}"
