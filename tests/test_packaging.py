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
