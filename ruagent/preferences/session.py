"""A labelling session: every pair asked, its answer, and when; saved atomically, resumable.

Human labels are the scarcest resource in preference learning, so none may be lost: a
:class:`LabelLog` with an ``autosave`` path rewrites its file (atomically, via
:func:`ruagent.io.atomic_write`) after every batch of answers, and on quit (or Ctrl-C) it
keeps the answers given before the quit. *Live* labellers (``Labeller.live``, the browser
page of :mod:`ruagent.preferences.web`) answer through a :class:`LiveBatch` instead, which
records and saves every answer the moment it arrives (and an undo the moment it is asked), so a
killed process loses none. :meth:`LabelLog.load` resumes it: the pairs, labels and metadata come
back exactly, and new labels append.

The file is one ``.npz`` (read with ``np.load(allow_pickle=False)``): the pair arrays
(B, 2, T, ...), ``labels`` (B,) float32 (NaN = skipped), ``timesteps`` (B,) int64 (agent
timestep when asked; −1 before training), ``queries`` (B,) str (the strategy that chose the
pair), ``scores`` (B,) float64 (the strategy's score of the pair, NaN for random queries and in
files written before scores were kept), and a JSON ``__meta__`` string. Rendered frames are not saved.
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

__all__ = ["LabelLog", "LiveBatch"]

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
        self.scores = np.zeros(0, dtype=np.float64)
        #: True once the human quit; callers stop asking
        self.quit = False

    def __len__(self) -> int:
        """Pairs asked (answered or skipped)."""
        return int(self.labels.shape[0])

    @property
    def n_labels(self) -> int:
        """Pairs with an answer (not skipped)."""
        return int(np.isfinite(self.labels).sum())

    def record(
        self,
        pairs: SegmentPairs,
        labels: np.ndarray,
        query: str = "",
        timestep: int = -1,
        scores: np.ndarray | None = None,
    ) -> None:
        """Append B asked pairs and their labels (B,) (NaN = skipped) and the query strategy's scores (B,)
        (None: unknown, NaN); autosave if configured."""
        labels = np.asarray(labels, dtype=np.float32).reshape(-1)
        if labels.shape != (len(pairs),):
            raise ValueError(f"got {labels.shape[0]} labels for {len(pairs)} pairs")
        finite = labels[np.isfinite(labels)]
        if np.any((finite < 0) | (finite > 1)):
            raise ValueError(f"labels must be in [0, 1] (1: first better, 0: second, 0.5: equal) or NaN; got {finite}")
        scores = np.full(len(labels), np.nan) if scores is None else np.asarray(scores, dtype=np.float64).reshape(-1)
        if scores.shape != labels.shape:
            raise ValueError(f"got {scores.shape[0]} scores for {len(pairs)} pairs")
        stripped = SegmentPairs(**pairs.arrays())  # frames stay out of the log
        self.pairs = stripped if self.pairs is None else SegmentPairs.concatenate([self.pairs, stripped])
        self.labels = np.concatenate([self.labels, labels])
        self.timesteps = np.concatenate([self.timesteps, np.full(len(labels), timestep, dtype=np.int64)])
        self.queries = np.concatenate([self.queries, np.full(len(labels), query, dtype="<U16")])
        self.scores = np.concatenate([self.scores, scores])
        if self.autosave is not None:
            self.save(self.autosave)

    def truncate(self, n: int) -> None:
        """Keep only the first ``n`` pairs asked (an undo); autosave if configured."""
        if not 0 <= n <= len(self):
            raise ValueError(f"cannot truncate a log of {len(self)} pairs to {n}")
        self.labels, self.timesteps = self.labels[:n], self.timesteps[:n]
        self.queries, self.scores = self.queries[:n], self.scores[:n]
        self.pairs = None if n == 0 or self.pairs is None else self.pairs[np.arange(n)]
        if self.autosave is not None:
            self.save(self.autosave)

    def ask(
        self,
        labeller: Labeller,
        pairs: SegmentPairs,
        query: str = "",
        timestep: int = -1,
        scores: np.ndarray | None = None,
        timeout: float | None = None,
        context: dict[str, Any] | None = None,
    ) -> np.ndarray:
        """Ask ``labeller`` about ``pairs`` and record the answers.

        If the human quits, the answers before the quit are recorded (and saved), ``quit``
        is set and the pairs never answered are not recorded. A live labeller (``labeller.live``)
        records each answer as it arrives (:class:`LiveBatch`); when ``timeout`` seconds pass with no
        answer it stops waiting, and the pairs not answered by then are not recorded.

        :param scores: (B,) the query strategy's score of each pair (why it was chosen); None: unknown.
        :param timeout: live labellers: seconds to wait for the next answer (None: no limit).
        :param context: live labellers: facts to show beside the query (``budget``, ``candidates``).
        :return: labels (B,) float32, NaN where skipped or not asked.
        """
        if getattr(labeller, "live", False):
            batch = LiveBatch(self, pairs, query, timestep, scores, timeout, context)
            try:
                labeller.label_live(batch)
            except LabellingQuit:
                self.quit = True
                if self.autosave is not None:
                    self.save(self.autosave)
            return batch.labels
        try:
            labels = labeller.label(pairs)
        except LabellingQuit as stop:
            labels = stop.labels
            answered = int(np.flatnonzero(np.isfinite(labels))[-1]) + 1 if np.isfinite(labels).any() else 0
            self.quit = True
            # skipped pairs before the last answer were seen, so keep them (as NaN) too
            if answered:
                self.record(pairs[np.arange(answered)], labels[:answered], query, timestep, _take(scores, answered))
            elif self.autosave is not None:
                self.save(self.autosave)
            return labels
        self.record(pairs, labels, query, timestep, scores)
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
                scores=self.scores,
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
            log.scores = data["scores"].astype(np.float64) if "scores" in data else np.full(len(log.labels), np.nan)
            if meta["has_pairs"]:
                log.pairs = SegmentPairs(**{name: data[name] for name in FIELDS})
        # a resumed session continues even if the previous one ended with a quit
        return log


def _take(scores: np.ndarray | None, n: int) -> np.ndarray | None:
    return None if scores is None else np.asarray(scores)[:n]


class LiveBatch:
    """One batch of B pairs answered one at a time, each answer recorded in the log (and autosaved) as it
    arrives. Made by :meth:`LabelLog.ask` for live labellers, which call :meth:`answer` and :meth:`undo`.

    The pairs are answered in order: :attr:`n` answers so far, pair ``n`` is the current one.

    :param log: the session the answers go to.
    :param pairs: the B pairs, with their rendered frames.
    :param query: the strategy that chose them; ``scores`` (B,) its score of each (None: unknown).
    :param timeout: seconds a labeller waits for the next answer (None: no limit).
    :param context: facts for the labeller to show (``budget``: the session's label budget,
        ``candidates``: how many candidate pairs the strategy ranked).
    """

    def __init__(
        self,
        log: LabelLog,
        pairs: SegmentPairs,
        query: str = "",
        timestep: int = -1,
        scores: np.ndarray | None = None,
        timeout: float | None = None,
        context: dict[str, Any] | None = None,
    ) -> None:
        self.log, self.pairs, self.query, self.timestep = log, pairs, query, int(timestep)
        self.scores = np.full(len(pairs), np.nan) if scores is None else np.asarray(scores, dtype=np.float64)
        if self.scores.shape != (len(pairs),):
            raise ValueError(f"got {self.scores.shape} scores for {len(pairs)} pairs")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds or None (wait for ever), got {timeout}")
        self.timeout = timeout
        self.context = dict(context or {})
        #: index in the log of this batch's first pair
        self.start = len(log)

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def n(self) -> int:
        """Answers recorded from this batch so far (skips included); pair ``n`` is asked next."""
        return len(self.log) - self.start

    @property
    def done(self) -> bool:
        return self.n >= len(self.pairs)

    @property
    def labels(self) -> np.ndarray:
        """(B,) float32: the recorded answers, NaN for skips and for pairs not answered."""
        labels = np.full(len(self.pairs), np.nan, dtype=np.float32)
        labels[: self.n] = self.log.labels[self.start :]
        return labels

    def answer(self, label: float) -> None:
        """Record the answer to pair :attr:`n` (1 first better, 0 second, 0.5 equal, NaN skip) and save."""
        if self.done:
            raise ValueError(f"all {len(self.pairs)} pairs of this batch are answered")
        b = self.n
        self.log.record(self.pairs[np.arange(b, b + 1)], np.array([label]), self.query, self.timestep,
                        self.scores[b : b + 1])

    def undo(self) -> bool:
        """Take back this batch's last answer (removed from the file too); False if there is none (answers
        of earlier batches are fitted already and stay)."""
        if self.n == 0:
            return False
        self.log.truncate(len(self.log) - 1)
        return True
