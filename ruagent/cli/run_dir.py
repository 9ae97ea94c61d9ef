"""The run folder: where one experiment's files live, written atomically.

Layout (docs/cli.md, "The run folder")::

    runs/<name>/
        .ruagent-run                 marker: ruagent made this folder (only such folders are --force deleted)
        .lock                        flock-ed by the process writing the run; holds that process's PID
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
files only. The rules of run folders (docs/reliability.md, "Run folders"):

- a run name is one plain folder name (:func:`validate_run_name`), and the folder it names
  must resolve inside the resolved runs folder, symbolic links included (:func:`run_path`);
- a run folder is created exclusively (one ``os.mkdir`` of the final folder: of two processes
  creating one name, exactly one wins) and gets the marker file :data:`MARKER`;
- the process writing a run holds ``fcntl.flock`` on its :data:`LOCK` file (with its PID in
  it; :mod:`ruagent.cli.run_lock`) for as long as it writes; a second writer, ``--resume``
  included, is refused with :class:`RunLockedError` naming that PID. The OS drops the lock when the process dies, so a
  crashed run never blocks its resume;
- ``force=True`` deletes an existing folder only if it holds the marker and nobody holds its
  lock, and never follows a symbolic link. An existing folder is never overwritten otherwise.
"""

from __future__ import annotations

import json
import os
import platform
import secrets
import shutil
import sys
import time
import unicodedata
from pathlib import Path
from typing import Any

import yaml

from ruagent.cli import config as config_lib
from ruagent.cli.run_lock import LOCK, HeldLock, RunExistsError, RunLockedError, acquire, holds, release
from ruagent.io import atomic_write_text

__all__ = [
    "LOCK",
    "MARKER",
    "RunDir",
    "RunExistsError",
    "RunFileError",
    "RunLockedError",
    "RunNameError",
    "RunNotFoundError",
    "default_run_name",
    "run_path",
    "validate_run_name",
]

#: File ruagent writes into every run folder it creates; ``--force`` deletes only folders holding it.
MARKER = ".ruagent-run"
#: The rule a run name follows, quoted by every refusal.
NAME_RULE = ("a run name is one plain folder name inside runs_dir: not empty, not '.' or '..', no '/' or '\\', "
             "no control characters, at most 255 bytes")


class RunNotFoundError(FileNotFoundError):
    """A folder given to --resume or --reward-model that is not what it should be."""


class RunFileError(ValueError):
    """A file of a run folder that cannot be read (torn, corrupt or edited); the message names it and the fix."""


class RunNameError(config_lib.ConfigError):
    """A run name that is not one plain folder name, or a run folder that resolves outside runs_dir."""


# ---------------------------------------------------------------------------- names and paths
def validate_run_name(name: Any, what: str = "run name") -> str:
    """``name`` if it is one plain path component, else :class:`RunNameError` naming the rule.

    Refused: anything but a non-empty string, ``.`` and ``..``, ``/`` or ``\\`` anywhere (so no
    absolute path and no nesting), control characters (``\\n``, ``\\x01``, ...) and names longer
    than 255 bytes (the longest folder name POSIX filesystems take).
    """
    if not isinstance(name, str):
        reason = f"it is a {type(name).__name__}, not text"
    elif not name:
        reason = "it is empty"
    elif name in (".", ".."):
        reason = f"{name!r} names {'runs_dir itself' if name == '.' else 'the folder above runs_dir'}"
    elif name[0] in "/\\":
        reason = "it is an absolute path"
    elif "/" in name or "\\" in name:
        reason = "it contains a path separator ('/' or '\\')"
    elif any(unicodedata.category(char) == "Cc" for char in name):
        reason = "it contains a control character"
    elif len(os.fsencode(name)) > 255:
        reason = f"it is {len(os.fsencode(name))} bytes long"
    else:
        return name
    raise RunNameError(f"{what} {name!r} is not a plain folder name: {reason}; {NAME_RULE}")


def run_path(runs_dir: str | os.PathLike, name: Any) -> Path:
    """The run folder ``runs_dir/name``, after checking that ``name`` is one plain folder name
    and that the folder, resolved (symbolic links followed), lies inside the resolved ``runs_dir``.

    The path returned is ``Path(runs_dir) / name`` as given (relative stays relative, for messages).

    :raises RunNameError: (a :class:`~ruagent.cli.config.ConfigError`) for a bad name or an escaping folder.
    """
    name = validate_run_name(name)
    path = Path(runs_dir) / name
    root, target = Path(runs_dir).resolve(), path.resolve()
    if target == root or not target.is_relative_to(root):
        raise RunNameError(f"run folder {path} resolves to {target}, outside runs_dir {root} (a symbolic link?); "
                           "ruagent writes run folders only inside runs_dir: remove the link or choose another name")
    return path


_issued: tuple[str, set[str]] = ("", set())  # (the second, suffixes default_run_name gave out in it)


def default_run_name(env_id: str, algo: str, seed: int) -> str:
    """``<env>-<algo>-s<seed>-<YYYYmmdd-HHMMSS>-<4 hex>``: readable, and unique among the names this
    process gives out (a random suffix, never repeated within one second); names from other processes
    collide with chance 1/65536 per second, which train.py's exclusive creation catches (it draws again)."""
    global _issued
    while True:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        if _issued[0] != stamp:
            _issued = (stamp, set())
        if len(_issued[1]) < 1 << 16:
            break
        time.sleep(0.05)  # every suffix of this second is taken: wait for the next one
    suffix = f"{secrets.randbelow(1 << 16):04x}"
    while suffix in _issued[1]:
        suffix = f"{secrets.randbelow(1 << 16):04x}"
    _issued[1].add(suffix)
    env_name = str(env_id).split("/")[-1]
    return validate_run_name(f"{env_name}-{algo}-s{seed}-{stamp}-{suffix}", "default run name")


class RunDir:
    """Paths and atomic file IO of one run folder (the folder need not exist yet)."""

    CONFIG = "config.yaml"
    META = "run.json"
    MARKER = MARKER
    LOCK = LOCK

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._lock: HeldLock | None = None

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

    @property
    def marker_path(self) -> Path:
        return self.path / self.MARKER

    @property
    def lock_path(self) -> Path:
        return self.path / self.LOCK

    # ------------------------------------------------------------------ creation
    @classmethod
    def create(cls, path: str | os.PathLike, force: bool = False, lock: bool = True) -> RunDir:
        """Make a fresh run folder at ``path``, exclusively, and mark it as made by ruagent.

        The folder itself is made by one ``os.mkdir`` (its parents with ``exist_ok``): of several
        processes creating one path, exactly one succeeds. An existing empty folder (or one holding
        only the lock file of a creation killed early) holds nothing and is taken over.

        :param force: replace an existing run folder, but only one ruagent made (it holds
            :data:`MARKER`) and no live process is writing (nobody holds its lock); anything else,
            symbolic links included, is never deleted.
        :param lock: keep holding the folder's lock (:meth:`lock`) after creating it; the lock is
            always taken while the folder is set up.
        :raises RunExistsError: if ``path`` exists and may not be replaced.
        :raises RunLockedError: if ``force`` and another process holds the folder's lock.
        :raises NotADirectoryError: if ``path`` is a file.
        """
        run = cls(path)
        run.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.mkdir(run.path)
        except FileExistsError:
            run._clear_existing(force)  # raises unless the folder may go, and removes it
            try:
                os.mkdir(run.path)
            except FileExistsError:
                raise RunExistsError(f"run folder {run.path} was just created by another process; choose "
                                     "another --name") from None
        try:
            run.lock()
        except FileNotFoundError:
            raise RunExistsError(f"run folder {run.path} was just replaced by another process; choose another "
                                 "--name") from None
        if run.marker_path.exists() or run.marker_path.is_symlink():
            # Another creator took the folder over while it was empty (between our mkdir and our lock), marked
            # it and let go: the marker, written under the lock, is the claim, so exactly one creator wins.
            run.release()
            raise RunExistsError(f"run folder {run.path} was just created by another process; choose another "
                                 "--name")
        atomic_write_text(run.marker_path, json.dumps({
            "made_by": "ruagent", "pid": os.getpid(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }) + "\n")
        if not lock:
            run.release()
        return run

    def _clear_existing(self, force: bool) -> None:
        """Remove the existing folder at :attr:`path` if it may be replaced, else raise RunExistsError."""
        path = self.path
        if path.is_symlink():
            raise RunExistsError(f"{path} is a symbolic link; ruagent never writes through or deletes a link as a "
                                 "run folder. Choose another --name or --runs-dir.")
        if not path.is_dir():
            raise NotADirectoryError(f"{path} exists and is not a folder; choose another --name or --runs-dir")
        entries = set(os.listdir(path))
        if not entries:  # made by hand, or a creation killed right after its mkdir: nothing to lose
            try:
                os.rmdir(path)  # fails if anything appeared in it meanwhile
            except FileNotFoundError:
                pass
            except OSError:
                raise RunExistsError(f"run folder {path} was just created by another process; choose another "
                                     "--name") from None
            return
        if entries != {self.LOCK}:  # (only a lock file: a creation killed before it wrote the marker)
            if not force:
                raise RunExistsError(
                    f"run folder {path} exists already; pass --force to overwrite it, --resume {path} to "
                    "continue it, or --name to pick another name"
                )
            if self.marker_path.is_symlink() or not self.marker_path.is_file():
                raise RunExistsError(
                    f"{path} holds no {self.MARKER} marker, so it is not a run folder this version of ruagent made "
                    f"(an older version, or a person, made it); --force only deletes folders ruagent made. "
                    "Delete it yourself if you mean to, or choose another --name or --runs-dir."
                )
        self.lock()  # RunLockedError names the PID of a live writer
        # out of the way in one rename first: nobody sees a half-deleted run folder under its name
        trash = path.with_name(f".ruagent-deleted-{os.getpid()}-{secrets.token_hex(4)}")
        try:
            os.rename(path, trash)
            shutil.rmtree(trash)
        finally:
            self.release()

    @classmethod
    def open(cls, path: str | os.PathLike, lock: bool = False) -> RunDir:
        """An existing run folder (it must hold a config.yaml; folders of older versions have no marker).

        :param lock: take the folder's lock, as a process that writes the run must (``--resume``).
        :raises RunLockedError: if ``lock`` and another process holds it.
        """
        run = cls(path)
        missing = RunNotFoundError(
            f"{run.path} is not a run folder (no {cls.CONFIG}); give the folder a train.py run created, "
            "e.g. runs/<name>"
        )
        if not run.config_path.is_file():
            raise missing
        if lock:
            try:
                run.lock()
            except FileNotFoundError:
                raise missing from None
            if not run.config_path.is_file():  # deleted by --force in between
                run.release()
                raise missing
        return run

    # ------------------------------------------------------------------ the lock
    def lock(self) -> RunDir:
        """Hold this folder's lock (``flock`` on :data:`LOCK`, this PID written in it) until :meth:`release`
        or the end of the process; reentrant within a process.

        :raises RunLockedError: another process holds it; the message names its PID.
        """
        self._lock = acquire(self.path)
        return self

    def release(self) -> None:
        """Drop the lock taken by :meth:`lock` (in this process: by any RunDir of this folder)."""
        release(self._lock)
        self._lock = None

    @property
    def locked(self) -> bool:
        """Whether this RunDir holds the folder's lock."""
        return holds(self._lock)

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

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
        """run.json as a dict ({} if there is none yet).

        :raises RunFileError: if it is not a JSON object (torn or edited).
        """
        if not self.meta_path.is_file():
            return {}
        try:
            meta = json.loads(self.meta_path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
            meta = exc
        if not isinstance(meta, dict):
            reason = f"{type(meta).__name__}: {meta}" if isinstance(meta, Exception) else "not a JSON object"
            raise RunFileError(
                f"{self.meta_path} is corrupt ({reason}); it records only the stage and status of the run: "
                f"delete it and resume naming the stage the run was started with, e.g. train.py all --resume "
                f"{self.path}"
            )
        return meta

    def is_finished(self) -> bool:
        """Whether the run went through every stage: run.json says finished and eval.json is written."""
        return self.meta_path.is_file() and self.read_meta().get("status") == "finished" and self.eval_path.is_file()

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
