"""Score a run's agents by the truth: ``python evaluate.py RUN_DIR [RUN_DIR ...] [--episodes N] [--env ID]``.

See ``python evaluate.py --help`` and docs/evaluate.md; the work is in :mod:`ruagent.cli.evaluate`.
"""

from ruagent.cli.evaluate import main

if __name__ == "__main__":
    raise SystemExit(main())
