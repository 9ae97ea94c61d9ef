"""Train ruagent experiments: ``python train.py --help`` (see docs/cli.md)."""

from ruagent.cli.train import main

if __name__ == "__main__":
    raise SystemExit(main())
