"""A labelling session: every pair asked, its answer, and when; saved atomically, resumable.

Human labels are the scarcest resource in preference learning, so none may be lost: a
:class:`LabelLog` with an ``autosave`` path rewrites its file (atomically, via
:func:`ruagent.io.atomic_write`) after every batch of answers, and on quit (or Ctrl-C) it
keeps the answers given before the quit. :meth:`LabelLog.load` resumes it: the pairs,
labels and metadata come back exactly, and new labels append.

The file is one ``.npz`` (read with ``np.load(allow_pickle=False)``): the pair arrays
(B, 2, T, ...), ``labels`` (B,) float32 (NaN = skipped), ``timesteps`` (B,) int64 (agent
timestep when asked; −1 before training), ``queries`` (B,) str (the strategy that chose the
pair), and a JSON ``__meta__`` string. Rendered frames are not saved.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ruagent.io import atomic_write
from ruagent.preferences.labellers import Labeller, LabellingQuit
from ruagent.preferences.segments import FIELDS, SegmentPairs

__all__ = ["LabelLog"]

_FORMAT = "ruagent.preference_labels/1"


class LabelLog:
    """All preference queries of a session, in the order asked.

    :param autosave: file to rewrite after every :meth:`record` (None: save by hand).
    :param meta: JSON-able facts about the session (env id, labeller, budget...).
    """

    def __init__(self, autosave: str | os.PathLike | None = None, meta: dict[str, Any] | None = None) -> None:
        self.autosave = None if autosave is None else Path(autosave)
        self.meta: dict[str, Any] = dict(meta or {})
        self.pairs: SegmentPairs | None = None
        self.labels = np.zeros(0, dtype=np.float32)
        self.timesteps = np.zeros(0, dtype=np.int64)
        self.queries = np.zeros(0, dtype="<U16")
        #: True once the human quit; callers stop asking
        self.quit = False

    def __len__(self) -> int:
        """Pairs asked (answered or skipped)."""
        return int(self.labels.shape[0])

    @property
    def n_labels(self) -> int:
        """Pairs with an answer (not skipped)."""
        return int(np.isfinite(self.labels).sum())

    def record(self, pairs: SegmentPairs, labels: np.ndarray, query: str = "", timestep: int = -1) -> None:
        """Append B asked pairs and their labels (B,) (NaN = skipped); autosave if configured."""
        labels = np.asarray(labels, dtype=np.float32).reshape(-1)
        if labels.shape != (len(pairs),):
            raise ValueError(f"got {labels.shape[0]} labels for {len(pairs)} pairs")
        finite = labels[np.isfinite(labels)]
        if np.any((finite < 0) | (finite > 1)):
            raise ValueError(f"labels must be in [0, 1] (1: first better, 0: second, 0.5: equal) or NaN; got {finite}")
        stripped = SegmentPairs(**pairs.arrays())  # frames stay out of the log
        self.pairs = stripped if self.pairs is None else SegmentPairs.concatenate([self.pairs, stripped])
        self.labels = np.concatenate([self.labels, labels])
        self.timesteps = np.concatenate([self.timesteps, np.full(len(labels), timestep, dtype=np.int64)])
        self.queries = np.concatenate([self.queries, np.full(len(labels), query, dtype="<U16")])
        if self.autosave is not None:
            self.save(self.autosave)

    def ask(self, labeller: Labeller, pairs: SegmentPairs, query: str = "", timestep: int = -1) -> np.ndarray:
        """Ask ``labeller`` about ``pairs`` and record the answers.

        If the human quits, the answers before the quit are recorded (and saved), ``quit``
        is set and the pairs never answered are not recorded.

        :return: labels (B,) float32, NaN where skipped or not asked.
        """
        try:
            labels = labeller.label(pairs)
        except LabellingQuit as stop:
            labels = stop.labels
            answered = int(np.flatnonzero(np.isfinite(labels))[-1]) + 1 if np.isfinite(labels).any() else 0
            self.quit = True
            # skipped pairs before the last answer were seen, so keep them (as NaN) too
            if answered:
                self.record(pairs[np.arange(answered)], labels[:answered], query, timestep)
            elif self.autosave is not None:
                self.save(self.autosave)
            return labels
        self.record(pairs, labels, query, timestep)
        return labels

    def labelled(self) -> tuple[SegmentPairs | None, np.ndarray]:
        """(pairs, labels) with an answer, for fitting."""
        if self.pairs is None:
            return None, self.labels
        keep = np.flatnonzero(np.isfinite(self.labels))
        return self.pairs[keep], self.labels[keep]

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> None:
        """Write the whole log to one ``.npz`` file, atomically."""
        meta = {"format": _FORMAT, "meta": self.meta, "quit": self.quit, "has_pairs": self.pairs is not None}
        arrays = {} if self.pairs is None else self.pairs.arrays()
        with atomic_write(path, "wb") as f:
            np.savez(
                f,
                __meta__=np.array(json.dumps(meta)),
                labels=self.labels,
                timesteps=self.timesteps,
                queries=self.queries,
                **arrays,
            )

    @classmethod
    def load(cls, path: str | os.PathLike, autosave: bool = True) -> LabelLog:
        """Resume a saved log; with ``autosave`` (default) new labels keep going to the same file."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no label log at {path}; start a new session without resume")
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["__meta__"]))
            if meta.get("format") != _FORMAT:
                raise ValueError(f"{path} is not a ruagent preference-label file ({meta.get('format')!r})")
            log = cls(autosave=path if autosave else None, meta=meta["meta"])
            log.labels = data["labels"].astype(np.float32)
            log.timesteps = data["timesteps"].astype(np.int64)
            log.queries = data["queries"].astype("<U16")
            if meta["has_pairs"]:
                log.pairs = SegmentPairs(**{name: data[name] for name in FIELDS})
        # a resumed session continues even if the previous one ended with a quit
        return log
