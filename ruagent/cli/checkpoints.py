"""Resumable training checkpoints: an atomic SB3 checkpoint callback and checkpoint discovery.

SB3's ``CheckpointCallback`` saves from ``_on_step``, i.e. in the middle of a rollout, and
writes the zip in place. Resuming from a mid-rollout save drops the half-collected rollout,
so the resumed run ends at a different ``num_timesteps`` than an uninterrupted one.
:class:`AtomicCheckpointCallback` saves at rollout *starts* instead — after the previous
rollout's gradient step, when ``num_timesteps`` is a whole number of rollouts — through
:func:`ruagent.io.atomic_write`. Resuming with ``learn(total - num_timesteps,
reset_num_timesteps=False)`` then ends at exactly the uninterrupted run's step count.

What a checkpoint holds: the model (policy, optimiser state, ``num_timesteps``, schedules) —
everything that does not depend on the interrupted rollout. Off-policy replay buffers are
not saved (they refill after resuming); VecNormalize is not used by train.py.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

from stable_baselines3.common.callbacks import BaseCallback

from ruagent.io import atomic_write

__all__ = ["AtomicCheckpointCallback", "checkpoint_path", "latest_checkpoint"]

_NAME = re.compile(r"^step_(\d+)\.zip$")


def checkpoint_path(folder: str | Path, num_timesteps: int) -> Path:
    """``folder/step_<num_timesteps>.zip`` (zero-padded so names sort by step)."""
    return Path(folder) / f"step_{int(num_timesteps):012d}.zip"


def latest_checkpoint(folder: str | Path) -> tuple[Path, int] | None:
    """The checkpoint with the most steps in ``folder`` as ``(path, num_timesteps)``, or None.

    Files that are not complete zip archives are skipped (they cannot come from
    :class:`AtomicCheckpointCallback`, but a copied or hand-edited folder may hold one).
    """
    found = []
    for path in Path(folder).glob("step_*.zip"):
        match = _NAME.match(path.name)
        if match and zipfile.is_zipfile(path):
            found.append((int(match.group(1)), path))
    if not found:
        return None
    steps, path = max(found)
    return path, steps


class AtomicCheckpointCallback(BaseCallback):
    """Save the model every ``save_freq`` environment steps, at rollout boundaries, atomically.

    :param save_freq: minimum number of environment steps (summed over envs) between saves.
    :param folder: where ``step_<n>.zip`` files go.
    :param keep: how many of the newest checkpoints to keep (older ones are deleted).
    """

    def __init__(self, save_freq: int, folder: str | Path, keep: int = 2, verbose: int = 0) -> None:
        super().__init__(verbose)
        if save_freq < 1:
            raise ValueError(f"save_freq must be >= 1, got {save_freq}")
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.save_freq = int(save_freq)
        self.folder = Path(folder)
        self.keep = int(keep)
        self._last_saved = 0

    def _init_callback(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        # after a resume, count from the step the run continues at
        self._last_saved = self.model.num_timesteps

    def _on_rollout_start(self) -> None:
        if self.model.num_timesteps - self._last_saved >= self.save_freq:
            self.save()

    def _on_step(self) -> bool:
        return True

    def save(self) -> Path:
        """Write ``step_<num_timesteps>.zip`` now and prune old checkpoints."""
        path = checkpoint_path(self.folder, self.model.num_timesteps)
        with atomic_write(path, "wb") as f:
            self.model.save(f)
        self._last_saved = self.model.num_timesteps
        if self.verbose:
            print(f"checkpoint: {path}")
        for old in sorted(self.folder.glob("step_*.zip"))[: -self.keep]:
            old.unlink(missing_ok=True)
        return path
