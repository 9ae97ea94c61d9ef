"""Every generated block of the README's "Results", from the committed per-run files, in one command.

    python -m ruagent.experiments.render [--readme README.md] [--check]

Renders, without training, each headline folder's block (:data:`HEADLINE_BLOCKS`: block name ->
folder, through :func:`ruagent.experiments.headline.readme_block`), the per-family table
(:mod:`ruagent.experiments.families`), the posterior checks (:mod:`ruagent.experiments.posterior_checks`:
calibration, risk agents, uncertainty cost) and preference-based RL on MuJoCo (:mod:`ruagent.experiments.pbrl`),
and rewrites them in the README; ``--check`` writes nothing
and exits 1 if any block differs (what ``tests/experiments/test_readme_results.py`` asserts). Each
folder's ``table.md``, ``table.json`` and figures come from ``python -m ruagent.experiments.headline
--report-only --out <folder>``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ruagent.experiments import families, pbrl, posterior_checks
from ruagent.experiments.headline import build_report, readme_block
from ruagent.experiments.readme import read_block, update_readme

__all__ = ["HEADLINE_BLOCKS", "expected_blocks", "main"]

#: README block -> the headline folder it is rendered from (relative to the repository root)
HEADLINE_BLOCKS = {
    "headline": "results/tier1",
    "tier3": "results/tier3",
    "twohypothesis": "results/two-hypothesis",
    "cheetah": "results/speed-limit-cheetah",
}


def expected_blocks(root: str | Path = ".") -> dict[str, str]:
    """Block name -> its text as the committed files under ``root`` render it (folder paths relative to it)."""
    blocks = {name: readme_block(build_report(Path(root, folder), {}), folder, name)
              for name, folder in HEADLINE_BLOCKS.items()}
    folders = [folder.relative_to(root) for folder in families.default_folders(root)]
    blocks[families.BLOCK] = families.families_block(folders, families.COMMAND)
    blocks[posterior_checks.BLOCK] = posterior_checks.posteriors_block(root)
    blocks[pbrl.BLOCK] = pbrl.pbrl_block(root)
    return blocks


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ruagent.experiments.render",
                                     description="Rewrite every generated results block of the README from the "
                                                 "committed per-run files (no training).")
    parser.add_argument("--readme", default="README.md", help="the README to update (default README.md)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a block is out of date")
    args = parser.parse_args(argv)
    stale = []
    text = Path(args.readme).read_text(encoding="utf-8")
    for name, block in expected_blocks().items():
        if args.check:
            if read_block(text, name).strip() != block.strip():
                stale.append(name)
        elif update_readme(args.readme, name, block):
            print(f"updated: the {name} block of {args.readme}")
    if stale:
        print(f"out of date in {args.readme}: {', '.join(stale)}; run python -m ruagent.experiments.render",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
