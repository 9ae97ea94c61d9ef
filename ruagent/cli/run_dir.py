"""The run folder: where one experiment's files live, written atomically.

Layout (DESIGN.md, "Runs on disk")::

    runs/<name>/
        config.yaml                  resolved config; `train.py --config runs/<name>/config.yaml` reruns it
        run.json                     command line, stage, status and versions (for humans and --resume)
        labels/train.npz             reward labels the posterior was fitted on (ruagent.data.Transitions)
        labels/heldout.npz           held-out reward labels (calibration metrics in evaluate.py)
        reward_model.pt              the posterior (ruagent.load_reward_model)
        agents/<agent>/model.zip     final SB3 model per agent (risk, mean, oracle)
        agents/<agent>/checkpoints/  step_<num_timesteps>.zip, resumable
        tensorboard/<agent>_1/       TensorBoard event files
        eval.json, plots/            written by evaluate.py

Every file goes through :func:`ruagent.io.atomic_write`, so a killed run leaves complete
files only. An existing run folder is never overwritten unless ``force=True``.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from ruagent.cli import config as config_lib
from ruagent.io import atomic_write_text

__all__ = ["RunDir", "RunExistsError", "RunNotFoundError"]


class RunExistsError(FileExistsError):
    """The run folder exists already and overwriting was not asked for."""


class RunNotFoundError(FileNotFoundError):
    """A folder given to --resume or --reward-model that is not what it should be."""


class RunDir:
    """Paths and atomic file IO of one run folder (the folder need not exist yet)."""

    CONFIG = "config.yaml"
    META = "run.json"

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # ------------------------------------------------------------------ layout
    @property
    def config_path(self) -> Path:
        return self.path / self.CONFIG

    @property
    def meta_path(self) -> Path:
        return self.path / self.META

    @property
    def reward_model_path(self) -> Path:
        return self.path / "reward_model.pt"

    def labels_path(self, split: str) -> Path:
        """``labels/<split>.npz`` for split ``train`` or ``heldout``."""
        return self.path / "labels" / f"{split}.npz"

    @property
    def tensorboard_dir(self) -> Path:
        return self.path / "tensorboard"

    @property
    def eval_path(self) -> Path:
        return self.path / "eval.json"

    @property
    def plots_dir(self) -> Path:
        return self.path / "plots"

    def agent_dir(self, agent: str) -> Path:
        return self.path / "agents" / agent

    def model_path(self, agent: str) -> Path:
        return self.agent_dir(agent) / "model.zip"

    def checkpoint_dir(self, agent: str) -> Path:
        return self.agent_dir(agent) / "checkpoints"

    def finished_agents(self) -> list[str]:
        """Agents whose final model.zip exists."""
        return sorted(p.parent.name for p in (self.path / "agents").glob("*/model.zip"))

    # ------------------------------------------------------------------ creation
    @classmethod
    def create(cls, path: str | os.PathLike, force: bool = False) -> RunDir:
        """Make a fresh run folder at ``path``.

        :param force: replace an existing run folder (one that holds a config.yaml); folders
            that are not run folders are never deleted.
        :raises RunExistsError: if ``path`` exists, is not empty and ``force`` is False.
        """
        run = cls(path)
        if run.path.exists() and any(run.path.iterdir()):
            if not force:
                raise RunExistsError(
                    f"run folder {run.path} exists already; pass --force to overwrite it, --resume {run.path} to "
                    "continue it, or --name to pick another name"
                )
            if not run.config_path.is_file():
                raise RunExistsError(
                    f"{run.path} is not empty and holds no {cls.CONFIG}, so it is not a run folder; --force only "
                    "replaces run folders. Choose another --name or --runs-dir."
                )
            shutil.rmtree(run.path)
        run.path.mkdir(parents=True, exist_ok=True)
        return run

    @classmethod
    def open(cls, path: str | os.PathLike) -> RunDir:
        """An existing run folder (it must hold a config.yaml)."""
        run = cls(path)
        if not run.config_path.is_file():
            raise RunNotFoundError(
                f"{run.path} is not a run folder (no {cls.CONFIG}); give the folder a train.py run created, "
                "e.g. runs/<name>"
            )
        return run

    # ------------------------------------------------------------------ files
    def write_config(self, config: dict[str, Any]) -> None:
        """Write the resolved config (with its seed and name) so that it reruns the run exactly."""
        header = (
            "# Resolved ruagent config. Rerun with:\n"
            f"#   python train.py --config {self.config_path} --set name=<new name>\n"
        )
        atomic_write_text(self.config_path, header + config_lib.dump(config))

    def read_config(self) -> dict[str, Any]:
        """The run's config, validated against the current schema."""
        try:
            data = yaml.safe_load(self.config_path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise config_lib.ConfigError(
                f"{self.config_path} is not valid YAML (edited by hand, or not written by train.py): {exc}"
            ) from exc
        return config_lib.validate(data)

    def read_meta(self) -> dict[str, Any]:
        if not self.meta_path.is_file():
            return {}
        return json.loads(self.meta_path.read_text(encoding="utf-8"))

    def update_meta(self, **fields: Any) -> None:
        """Merge ``fields`` into run.json (atomically)."""
        meta = self.read_meta()
        if not meta:
            meta = {
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "python": platform.python_version(),
                "versions": _versions(),
            }
        meta.update(fields, updated=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        atomic_write_text(self.meta_path, json.dumps(meta, indent=2) + "\n")


def _versions() -> dict[str, str]:
    names = ("ruagent", "torch", "gymnasium", "stable_baselines3", "numpy")
    return {name: getattr(sys.modules[name], "__version__", "?") for name in names if name in sys.modules}
