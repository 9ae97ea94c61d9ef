"""Every table and figure of the README's "Results", from the committed per-run files, in one command.

    python -m ruagent.experiments.render [--readme README.md] [--check | --blocks-only]

Without training: rewrites each headline folder's ``table.md``, ``table.json`` and figures (every folder
under ``results/`` that holds headline job files and a report, :func:`report_folders`, as ``python -m
ruagent.experiments.headline --report-only --out <folder>`` does), then renders every README block (each
headline folder's, through :func:`ruagent.experiments.headline.readme_block`; the per-family tables, the
headline testbeds' and SpeedLimitCheetah's, :mod:`ruagent.experiments.families`; the posterior checks,
:mod:`ruagent.experiments.posterior_checks`; preference-based RL on MuJoCo,
:mod:`ruagent.experiments.pbrl`) and rewrites them in the README. ``--check`` writes nothing and exits 1
if any block or folder table differs (what ``tests/experiments/test_readme_results.py`` asserts).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ruagent.experiments import families, pbrl, posterior_checks
from ruagent.experiments.headline import build_report, readme_block, rewrite_report, rewritten_table
from ruagent.experiments.readme import read_block, update_readme

__all__ = ["COMMAND", "HEADLINE_BLOCKS", "expected_blocks", "main", "report_folders"]

#: the command that renders every block (named by the blocks it alone writes)
COMMAND = "python -m ruagent.experiments.render"

#: README block -> the headline folder it is rendered from (relative to the repository root)
HEADLINE_BLOCKS = {
    "headline": "results/tier1",
    "tier3": "results/tier3",
    "twohypothesis": "results/two-hypothesis",
    "cheetah": "results/speed-limit-cheetah",
}


def report_folders(root: str | Path = ".") -> list[Path]:
    """Every headline folder whose report the per-run files regenerate (relative to ``root``): the README's
    and the per-family folders, and any other folder under ``results/`` with posterior job files and a
    ``table.md`` (older runs that docs/ quote), so that no committed table goes stale when the report changes."""
    root = Path(root)
    folders = [Path(f) for f in HEADLINE_BLOCKS.values()]
    folders += [f.relative_to(root) for f in (*families.default_folders(root), *families.cheetah_folders(root))]
    folders += sorted(f.parent.relative_to(root) for f in root.glob("results/*/table.md")
                      if next(f.parent.glob("runs/*/seed*/posterior.json"), None) is not None)
    return list(dict.fromkeys(folders))


def expected_blocks(root: str | Path = ".") -> dict[str, str]:
    """Block name -> its text as the committed files under ``root`` render it (folder paths relative to it)."""
    blocks = {name: readme_block(build_report(Path(root, folder), {}), folder, name)
              for name, folder in HEADLINE_BLOCKS.items()}
    folders = [folder.relative_to(root) for folder in families.default_folders(root)]
    blocks[families.BLOCK] = families.families_block(folders, families.COMMAND)
    cheetah = [folder.relative_to(root) for folder in families.cheetah_folders(root)]
    blocks[families.CHEETAH_BLOCK] = families.families_block(cheetah, COMMAND, testbeds=("speed-limit-cheetah",))
    blocks[posterior_checks.BLOCK] = posterior_checks.posteriors_block(root)
    blocks[pbrl.BLOCK] = pbrl.pbrl_block(root)
    return blocks


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ruagent.experiments.render",
                                     description="Rewrite every generated results block of the README from the "
                                                 "committed per-run files (no training).")
    parser.add_argument("--readme", default="README.md", help="the README to update (default README.md)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if a block or a folder's table.md is out of date")
    parser.add_argument("--blocks-only", action="store_true",
                        help="rewrite the README blocks only, not each folder's table.md, table.json and figures")
    args = parser.parse_args(argv)
    stale = []
    if args.check:
        tables = {folder: Path(folder, "table.md") for folder in report_folders()}
        stale += [table.as_posix() for folder, table in tables.items()
                  if not table.is_file() or table.read_text(encoding="utf-8") != rewritten_table(folder)]
    elif not args.blocks_only:
        for folder in report_folders():
            rewrite_report(folder)
            print(f"rewrote {folder.as_posix()}/table.md, table.json and figures")
    text = Path(args.readme).read_text(encoding="utf-8")
    for name, block in expected_blocks().items():
        if args.check:
            if read_block(text, name).strip() != block.strip():
                stale.append(name)
        elif update_readme(args.readme, name, block):
            print(f"updated: the {name} block of {args.readme}")
    if stale:
        print(f"out of date ({args.readme} blocks, folder tables): {', '.join(stale)}; run {COMMAND}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
