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

:func:`load_without_unpickling` reads such a zip without running code from it: SB3 stores
what JSON cannot hold (spaces, schedules, the policy class) as cloudpickle, and its ``load``
would unpickle those entries; here they are taken from a model built from the run's config.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback

from ruagent.io import atomic_write

__all__ = ["AtomicCheckpointCallback", "checkpoint_path", "is_complete_model_zip", "latest_checkpoint",
           "load_without_unpickling"]

_NAME = re.compile(r"^step_(\d+)\.zip$")


def checkpoint_path(folder: str | Path, num_timesteps: int) -> Path:
    """``folder/step_<num_timesteps>.zip`` (zero-padded so names sort by step)."""
    return Path(folder) / f"step_{int(num_timesteps):012d}.zip"


def latest_checkpoint(folder: str | Path) -> tuple[Path, int] | None:
    """The checkpoint with the most steps in ``folder`` as ``(path, num_timesteps)``, or None.

    Files that are not complete SB3 model zips are skipped (they cannot come from
    :class:`AtomicCheckpointCallback`, but a copied or hand-edited folder may hold one).
    """
    found = []
    for path in Path(folder).glob("step_*.zip"):
        match = _NAME.match(path.name)
        if match and is_complete_model_zip(path):
            found.append((int(match.group(1)), path))
    if not found:
        return None
    steps, path = max(found)
    return path, steps


def is_complete_model_zip(path: str | Path) -> bool:
    """Whether ``path`` is a whole SB3 model zip: its central directory reads, every member's CRC
    matches, and it has SB3's ``data`` entry. (``zipfile.is_zipfile`` alone is fooled by a torn
    model.zip: the zip nested inside it, ``policy.pth``, has an end record of its own.)"""
    try:
        with zipfile.ZipFile(path) as archive:
            return "data" in archive.namelist() and archive.testzip() is None
    except (zipfile.BadZipFile, OSError, EOFError):
        return False


def load_without_unpickling(
    algo: type[BaseAlgorithm], path: str | Path, template: BaseAlgorithm, device: str = "auto"
) -> BaseAlgorithm:
    """``algo.load(path)`` that runs no code from the file.

    SB3 writes each attribute JSON cannot hold as a cloudpickle entry of the zip's ``data``
    (``policy_class``, spaces, ``lr_schedule``, ``clip_range``, buffers) and ``load`` unpickles
    them, which runs whatever the file says. Here every such entry comes from ``template``
    instead — a fresh model built from the run's config, on the env to continue in — through
    SB3's ``custom_objects``; the weights are read by SB3 with ``torch.load(weights_only=True)``.

    :param algo: the algorithm class (PPO, RiskPPO, ...).
    :param template: a model of ``algo`` built like the saved one; its env is the loaded model's.
    :raises ValueError: if the file holds a pickled entry the template has no attribute for.
    """
    with zipfile.ZipFile(path) as archive:
        data = json.loads(archive.read("data"))
    pickled = sorted(key for key, value in data.items() if isinstance(value, dict) and ":serialized:" in value)
    unknown = [key for key in pickled if not hasattr(template, key)]
    if unknown:
        raise ValueError(
            f"{path} holds pickled entries {unknown} that a {algo.__name__} built from the config does not have; "
            "refusing to unpickle them (it would run code from the file)"
        )
    custom_objects = {key: getattr(template, key) for key in pickled}
    return algo.load(path, env=template.get_env(), device=device, custom_objects=custom_objects)


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
