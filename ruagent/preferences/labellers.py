"""Who answers "which of these two segments is better?": a simulated or a human labeller.

Every labeller maps :class:`~ruagent.preferences.segments.SegmentPairs` (B pairs) to labels
of shape (B,), float32: 1 = the first segment is better, 0 = the second, 0.5 = equally good,
NaN = skipped (no label; the pair is not used). A human may also quit, which raises
:class:`LabellingQuit` carrying the answers given so far so that the caller saves them.

* :class:`SyntheticLabeller` answers from the env's true reward with Boltzmann rationality
  at temperature τ and a probability ε of a uniformly random answer — the Bradley–Terry
  model of :mod:`ruagent.preferences.bradley_terry`, as in Christiano et al. (2017) and
  the "simulated human" of Lee et al. (B-Pref, NeurIPS Datasets 2021) — optionally with
  B-Pref's other irrationalities: perfect rationality, myopia γ, mistakes, skip and equal
  thresholds (:meth:`SyntheticLabeller.b_pref` builds their six named teachers).
* :class:`HumanLabeller` asks in the terminal. Segments with ansi frames (gridworlds) are
  printed side by side; rgb frames are written as one side-by-side PNG per pair and its path
  printed; segments without frames are printed as their observations and actions.
* :class:`~ruagent.preferences.web.WebLabeller` (``"web"``, the ``web`` extra) asks in a browser
  page that shows the two segments side by side as animations. It is *live*: each answer is saved
  the moment it is given (:class:`~ruagent.preferences.session.LiveBatch`).
"""

from __future__ import annotations

import abc
import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import numpy as np

from ruagent.io import atomic_write
from ruagent.preferences.bradley_terry import preference_probability
from ruagent.preferences.segments import SegmentPairs

__all__ = [
    "BPREF_TEACHERS",
    "LABELLERS",
    "HumanLabeller",
    "Labeller",
    "LabellingQuit",
    "SyntheticLabeller",
    "make_labeller",
]


class LabellingQuit(Exception):
    """The human quit; ``labels`` (B,) holds the answers given so far (NaN for the rest)."""

    def __init__(self, labels: np.ndarray) -> None:
        super().__init__(f"labelling stopped by the user after {int(np.isfinite(labels).sum())} answers")
        self.labels = labels


class Labeller(abc.ABC):
    """Answers preference queries. ``interactive`` labellers are asked one pair at a time (and the
    segments carry rendered frames for them); ``live`` ones also implement :meth:`label_live`, which
    :meth:`~ruagent.preferences.session.LabelLog.ask` calls instead of :meth:`label`."""

    interactive = False
    live = False

    @abc.abstractmethod
    def label(self, pairs: SegmentPairs) -> np.ndarray:
        """Labels (B,) float32 in {0, 0.5, 1} or NaN (skipped) for B pairs."""

    def label_live(self, batch) -> None:
        """Answer ``batch`` (a :class:`~ruagent.preferences.session.LiveBatch`) pair by pair through its
        ``answer``/``undo``; return when it is done or the wait timed out; raise :class:`LabellingQuit` on quit."""
        raise NotImplementedError(f"{type(self).__name__} is not a live labeller")

    def close(self) -> None:  # noqa: B027 (optional hook: only the web labeller holds something)
        """Release what the labeller holds (the web page's server); nothing for the others."""


#: B-Pref's simulated teachers (Lee, Smith, Dragan & Abbeel, NeurIPS 2021 Datasets and Benchmarks):
#: name -> their parameters (beta: rationality, None = perfectly rational; gamma: myopia; mistake: ε;
#: skip / equal: ε_skip / ε_equal, the thresholds' share of a segment's mean true return)
BPREF_TEACHERS: dict[str, dict[str, float | None]] = {
    "oracle": {"beta": None, "gamma": 1.0, "mistake": 0.0, "skip": 0.0, "equal": 0.0},
    "stoc": {"beta": 1.0, "gamma": 1.0, "mistake": 0.0, "skip": 0.0, "equal": 0.0},
    "mistake": {"beta": None, "gamma": 1.0, "mistake": 0.1, "skip": 0.0, "equal": 0.0},
    "skip": {"beta": None, "gamma": 1.0, "mistake": 0.0, "skip": 0.1, "equal": 0.0},
    "equal": {"beta": None, "gamma": 1.0, "mistake": 0.0, "skip": 0.0, "equal": 0.1},
    "myopic": {"beta": None, "gamma": 0.9, "mistake": 0.0, "skip": 0.0, "equal": 0.0},
}


class SyntheticLabeller(Labeller):
    """Simulated labeller: P(σ¹ ≻ σ²) = ε/2 + (1 − ε)·sigmoid((R¹ − R²)/τ) on true returns R.

    :param temperature: τ > 0; small τ is a nearly perfectly rational labeller (B-Pref's
        rationality β is 1/τ).
    :param error_rate: ε in [0, 1), the probability of answering uniformly at random (so the
        answer is wrong on about ε/2 of clear-cut pairs). Fit with ``label_noise=error_rate``.
    :param seed: seeds the answers.

    B-Pref's simulated teachers (Lee et al., NeurIPS 2021 Datasets and Benchmarks) add, all off
    by default (the defaults give the labeller above, answer for answer):

    :param rational: perfectly rational (B-Pref's β = ∞): the segment with the higher return, 0.5
        (equally good) on an exact tie; ``temperature`` and ``error_rate`` are then not used.
    :param gamma: myopia γ in (0, 1]: the step t of a segment with n valid steps after it counts
        γⁿ, so R = Σ_t γ^(H−t) r_t weights recent steps most (B-Pref's "Myopic" uses 0.9).
    :param mistake_rate: ε_mistake in [0, 1]: after answering, flip the answer with this
        probability (B-Pref's "Mistake" uses 0.1; an "equal" answer stays equal).
    :param skip_threshold: δ_skip: skip (NaN) a pair when neither segment's true, undiscounted return
        exceeds it, max(R¹, R²) ≤ δ_skip; None never skips. B-Pref's "Skip" uses 0.1 × the mean true
        return of a segment.
    :param equal_threshold: δ_equal ≥ 0: answer 0.5 ("equally good") when |R¹ − R²| < δ_equal on
        true, undiscounted returns (applied after mistakes, as B-Pref does). B-Pref's "Equal" uses
        0.1 × the mean true return of a segment.

    :meth:`b_pref` builds B-Pref's six named teachers.
    """

    def __init__(
        self,
        temperature: float = 1.0,
        error_rate: float = 0.0,
        seed: int | None = None,
        *,
        rational: bool = False,
        gamma: float = 1.0,
        mistake_rate: float = 0.0,
        skip_threshold: float | None = None,
        equal_threshold: float = 0.0,
    ) -> None:
        if temperature <= 0:
            raise ValueError(
                f"temperature must be > 0, got {temperature}; use a small value for a nearly rational labeller, "
                "or rational=True for a perfectly rational one"
            )
        if not 0.0 < gamma <= 1.0:
            raise ValueError(f"gamma (myopia) must be in (0, 1], got {gamma}; 1 weighs every step of a segment equally")
        if not 0.0 <= mistake_rate <= 1.0:
            raise ValueError(f"mistake_rate must be in [0, 1], got {mistake_rate}")
        if not equal_threshold >= 0.0:
            raise ValueError(f"equal_threshold must be >= 0, got {equal_threshold}")
        self.temperature = float(temperature)
        self.error_rate = float(error_rate)
        preference_probability(np.zeros(1), self.error_rate)  # validates error_rate
        self.rational = bool(rational)
        self.gamma = float(gamma)
        self.mistake_rate = float(mistake_rate)
        self.skip_threshold = None if skip_threshold is None else float(skip_threshold)
        self.equal_threshold = float(equal_threshold)
        self.rng = np.random.default_rng(seed)

    @classmethod
    def b_pref(cls, teacher: str, segment_return: float = 1.0, seed: int | None = None) -> SyntheticLabeller:
        """One of B-Pref's simulated teachers by name: ``oracle``, ``stoc``, ``mistake``, ``skip``,
        ``equal``, ``myopic`` (:data:`BPREF_TEACHERS`).

        :param segment_return: the scale of the skip and equal thresholds (δ = ε × it); B-Pref uses the
            mean true return of a segment of the agent's behaviour so far (its average episode return
            × segment length / episode length), updated during training.
        """
        if teacher not in BPREF_TEACHERS:
            raise ValueError(f"unknown B-Pref teacher {teacher!r}; choose one of {sorted(BPREF_TEACHERS)}")
        params = BPREF_TEACHERS[teacher]
        scale = abs(float(segment_return))
        beta = params["beta"]
        return cls(
            temperature=1.0 if beta is None else 1.0 / beta,
            seed=seed,
            rational=beta is None,
            gamma=float(params["gamma"]),
            mistake_rate=float(params["mistake"]),
            skip_threshold=params["skip"] * scale if params["skip"] else None,
            equal_threshold=float(params["equal"]) * scale,
        )

    def returns(self, pairs: SegmentPairs) -> np.ndarray:
        """The returns the labeller compares, (B, 2): true returns, discounted towards the start if myopic."""
        if self.gamma == 1.0:
            return pairs.env_returns()
        mask = pairs.mask
        steps_after = np.flip(np.cumsum(np.flip(mask, -1), axis=-1), -1) - mask  # valid steps after each step
        return np.where(mask, pairs.env_rewards * self.gamma ** steps_after, 0.0).sum(axis=-1)

    def probability(self, pairs: SegmentPairs) -> np.ndarray:
        """P(first ≻ second) of every pair, (B,) float64 (before mistakes, skips and equal answers)."""
        returns = self.returns(pairs)  # (B, 2)
        delta = returns[:, 0] - returns[:, 1]
        if self.rational:
            return np.where(delta > 0, 1.0, np.where(delta < 0, 0.0, 0.5))
        return preference_probability(delta / self.temperature, self.error_rate)

    def label(self, pairs: SegmentPairs) -> np.ndarray:
        """Bernoulli draws of :meth:`probability` (its value itself when rational), then B-Pref's
        mistakes, equal answers and skips: (B,) float32 of 0/0.5/1 or NaN."""
        probability = self.probability(pairs)
        draws = self.rng.random(len(pairs))
        labels = probability.astype(np.float32) if self.rational else (draws < probability).astype(np.float32)
        if self.mistake_rate > 0:
            flip = self.rng.random(len(pairs)) < self.mistake_rate
            labels[flip] = 1.0 - labels[flip]
        if self.equal_threshold > 0 or self.skip_threshold is not None:
            true_returns = pairs.env_returns()
            if self.equal_threshold > 0:
                labels[np.abs(true_returns[:, 0] - true_returns[:, 1]) < self.equal_threshold] = 0.5
            if self.skip_threshold is not None:
                labels[true_returns.max(axis=1) <= self.skip_threshold] = np.nan
        return labels


#: what a human types -> label (None for commands)
_ANSWERS = {"1": 1.0, "a": 1.0, "2": 0.0, "b": 0.0, "=": 0.5, "e": 0.5}
_PROMPT = "Which is better? [1] first  [2] second  [=] equal  [s]kip  [u]ndo  [q]uit and save: "


class HumanLabeller(Labeller):
    """Asks a person in the terminal, one pair at a time, with skip, undo and quit.

    Undo goes back one pair within the current batch of queries (answers from earlier
    batches are already in the label log). Quit raises :class:`LabellingQuit` with the
    answers so far; :func:`~ruagent.preferences.session.PreferenceSession` saves them.

    :param input_fn: reads one answer (default :func:`input`; tests pass a scripted one).
    :param output: where to print the segments (default stdout).
    :param image_dir: folder for the side-by-side PNGs of rgb frames (default ``./preference_images``).
    :param max_frames: frames shown per segment, evenly spaced, first and last included.
    """

    interactive = True

    def __init__(
        self,
        input_fn: Callable[[str], str] = input,
        output: TextIO | None = None,
        image_dir: str | Path = "preference_images",
        max_frames: int = 6,
    ) -> None:
        self.input_fn = input_fn
        self.output = output
        self.image_dir = Path(image_dir)
        self.max_frames = int(max_frames)
        self._images_written = 0

    def _print(self, text: str) -> None:
        print(text, file=self.output or sys.stdout, flush=True)

    def label(self, pairs: SegmentPairs) -> np.ndarray:
        """Ask about each pair in turn; see the class docstring for the commands."""
        labels = np.full(len(pairs), np.nan, dtype=np.float32)
        answered = np.zeros(len(pairs), dtype=bool)
        b = 0
        while b < len(pairs):
            self._print(f"\n=== pair {b + 1} of {len(pairs)} ===")
            self._print(self.render(pairs, b))
            try:
                answer = self.input_fn(_PROMPT).strip().lower()
            except (KeyboardInterrupt, EOFError):  # Ctrl-C / closed stdin: quit, keeping the answers
                answer = "q"
            if answer in _ANSWERS:
                labels[b], answered[b] = _ANSWERS[answer], True
                b += 1
            elif answer == "s":
                labels[b], answered[b] = np.nan, True
                b += 1
            elif answer == "u":
                if b == 0:
                    self._print("Nothing to undo in this batch (earlier answers are already saved).")
                else:
                    b -= 1
                    labels[b], answered[b] = np.nan, False
                    self._print(f"Undone: asking pair {b + 1} again.")
            elif answer == "q":
                raise LabellingQuit(labels)
            else:
                self._print(f"Unrecognised answer {answer!r}; type 1, 2, =, s, u or q.")
        return labels

    # ------------------------------------------------------------------ rendering
    def _frame_steps(self, mask: np.ndarray) -> np.ndarray:
        valid = int(mask.sum())
        return np.unique(np.linspace(0, max(valid - 1, 0), min(self.max_frames, max(valid, 1))).round().astype(int))

    def render(self, pairs: SegmentPairs, b: int) -> str:
        """Text that shows pair ``b``: ansi frames side by side, a PNG path, or the raw arrays."""
        if pairs.frames is None:
            return self._render_arrays(pairs, b)
        frames = pairs.frames[b]  # (2, T) str or (2, T, H, W, 3) uint8
        if frames.dtype.kind == "U":
            return self._render_ansi(frames, pairs.mask[b])
        return self._render_image(frames, pairs.mask[b])

    def _render_ansi(self, frames: np.ndarray, mask: np.ndarray) -> str:
        blocks = []
        steps = [self._frame_steps(mask[0]), self._frame_steps(mask[1])]
        for i in range(max(len(steps[0]), len(steps[1]))):
            columns = []
            for side in (0, 1):
                t = steps[side][min(i, len(steps[side]) - 1)]
                columns.append([f"{'first' if side == 0 else 'second'} t={t}", *str(frames[side, t]).splitlines()])
            width = max(len(line) for line in columns[0]) + 4
            height = max(len(c) for c in columns)
            lines = [
                (columns[0][j] if j < len(columns[0]) else "").ljust(width)
                + (columns[1][j] if j < len(columns[1]) else "")
                for j in range(height)
            ]
            blocks.append("\n".join(lines))
        return "\n\n".join(blocks)

    def _render_image(self, frames: np.ndarray, mask: np.ndarray) -> str:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        rows = [frames[side, self._frame_steps(mask[side])] for side in (0, 1)]
        n_cols = max(len(rows[0]), len(rows[1]))
        fig, axes = plt.subplots(2, n_cols, figsize=(2.2 * n_cols, 4.6), squeeze=False)
        for side, row in enumerate(rows):
            for col in range(n_cols):
                ax = axes[side, col]
                ax.axis("off")
                if col < len(row):
                    ax.imshow(row[col])
            axes[side, 0].set_title("first (1)" if side == 0 else "second (2)", loc="left")
        self._images_written += 1
        path = self.image_dir / f"pair_{self._images_written:05d}.png"
        with atomic_write(path, "wb") as f:
            fig.savefig(f, format="png", dpi=80)
        plt.close(fig)
        return f"Open {path.resolve()} (top row: first segment, bottom row: second)."

    @staticmethod
    def _render_arrays(pairs: SegmentPairs, b: int) -> str:
        with np.printoptions(precision=3, suppress=True, threshold=200):
            parts = []
            for side, name in ((0, "first"), (1, "second")):
                valid = pairs.mask[b, side]
                parts.append(
                    f"{name}: observations\n{pairs.obs[b, side][valid]}\nactions {pairs.actions[b, side][valid]}"
                )
            return "\n".join(parts)


#: names accepted by :func:`make_labeller`
LABELLERS = ("synthetic", "human", "web")


def make_labeller(name: str | Labeller, seed: int | None = None, **kwargs) -> Labeller:
    """A labeller by name (``"synthetic"``, ``"human"`` or ``"web"``) with its keyword arguments;
    objects pass through. ``"web"`` needs the ``web`` extra (``pip install "ruagent[web]"``)."""
    if isinstance(name, Labeller):
        return name
    if name == "synthetic":
        return SyntheticLabeller(seed=seed, **kwargs)
    if name == "human":
        return HumanLabeller(**kwargs)
    if name == "web":  # imported by name: the web module imports this one, and its server libraries are optional
        return importlib.import_module("ruagent.preferences.web").WebLabeller(**kwargs)
    raise ValueError(f"labeller must be one of {LABELLERS} or a Labeller, got {name!r}")
