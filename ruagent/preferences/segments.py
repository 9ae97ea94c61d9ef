"""Fixed-length segments of trajectories, and pairs of them to compare.

Christiano et al. ("Deep reinforcement learning from human preferences", NeurIPS 2017)
ask labellers to compare short clips of behaviour rather than whole episodes. Here a
segment is T consecutive transitions ``(obs, action, next_obs)`` of one episode, with the
env's own reward kept beside them (only the synthetic labeller and the benchmarks read it).
An episode is cut into consecutive windows of T steps; its last window is padded by
repeating its final transition, and ``mask`` (False on padding) keeps padded steps out of
every return, so an episode that ends early still yields a segment.

Shapes: a :class:`Segments` holds arrays with leading axes ``(N, T)``; a
:class:`SegmentPairs` holds the same arrays with leading axes ``(B, 2, T)``, index 0 on
axis 1 being the first segment of each pair. Observations and actions keep the env's shape
and dtype (Box, Discrete, MultiDiscrete, MultiBinary); Dict/Tuple observations are refused
with a pointer to ``gymnasium.wrappers.FlattenObservation``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

__all__ = [
    "SegmentPairs",
    "SegmentRecorder",
    "Segments",
    "candidate_pairs",
    "collect_segments",
    "make_pairs",
    "member_segment_returns",
]

#: The arrays every segment container holds, in this order.
FIELDS = ("obs", "actions", "next_obs", "env_rewards", "mask")


@dataclasses.dataclass(frozen=True)
class _SegmentArrays:
    """Shared behaviour of :class:`Segments` and :class:`SegmentPairs` (lead axes differ)."""

    obs: np.ndarray
    actions: np.ndarray
    next_obs: np.ndarray
    env_rewards: np.ndarray
    mask: np.ndarray
    #: optional rendered frames for the human labeller, leading axes like ``mask``: ansi text
    #: (lead..., T) str, or rgb images (lead..., T, H, W, 3) uint8. Never saved with labels.
    frames: np.ndarray | None = None

    #: number of leading axes before T: 1 for Segments (N,), 2 for SegmentPairs (B, 2)
    _LEAD: ClassVar[int] = 1

    def __post_init__(self) -> None:
        lead = self.mask.shape
        if self.mask.dtype != np.bool_ or self.mask.ndim != self._LEAD + 1:
            raise ValueError(f"mask must be a bool array with {self._LEAD + 1} axes, got {self.mask.dtype} {lead}")
        for name in ("obs", "actions", "next_obs", "env_rewards", "frames"):
            value = getattr(self, name)
            if value is None:
                continue
            if value.shape[: len(lead)] != lead:
                raise ValueError(f"{name} has leading shape {value.shape[: len(lead)]}, expected {lead} like mask")
        if self.obs.shape != self.next_obs.shape:
            raise ValueError(f"obs {self.obs.shape} and next_obs {self.next_obs.shape} must have the same shape")
        if self.env_rewards.shape != lead:
            raise ValueError(f"env_rewards must have shape {lead}, got {self.env_rewards.shape}")

    def __len__(self) -> int:
        return int(self.mask.shape[0])

    @property
    def segment_length(self) -> int:
        """T, the number of steps per segment (padding included)."""
        return int(self.mask.shape[-1])

    def arrays(self) -> dict[str, np.ndarray]:
        """The five arrays by name (for saving with ``np.savez``)."""
        return {name: getattr(self, name) for name in FIELDS}

    def __getitem__(self, index: Any):
        """Select along the first axis (an int array, slice or bool mask); an int keeps the axis."""
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        frames = None if self.frames is None else self.frames[index]
        return type(self)(**{name: value[index] for name, value in self.arrays().items()}, frames=frames)

    def env_returns(self) -> np.ndarray:
        """True (env) return of each segment: masked sum over T; shape = leading axes."""
        return np.where(self.mask, self.env_rewards, 0.0).sum(axis=-1)

    def flat_transitions(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(obs, actions, next_obs) flattened over all leading axes and T: (prod(lead)·T, ...)."""
        n = self.mask.size
        return (
            self.obs.reshape(n, *self.obs.shape[self.mask.ndim :]),
            self.actions.reshape(n, *self.actions.shape[self.mask.ndim :]),
            self.next_obs.reshape(n, *self.next_obs.shape[self.mask.ndim :]),
        )

    @classmethod
    def concatenate(cls, parts: list) -> Any:
        """Join containers of the same kind along the first axis."""
        if not parts:
            raise ValueError(f"cannot concatenate zero {cls.__name__}")
        with_frames = all(p.frames is not None for p in parts)
        frames = np.concatenate([p.frames for p in parts]) if with_frames else None
        return cls(**{name: np.concatenate([getattr(p, name) for p in parts]) for name in FIELDS}, frames=frames)


@dataclasses.dataclass(frozen=True)
class Segments(_SegmentArrays):
    """N segments of T steps: arrays of shape (N, T, ...); ``mask`` (N, T) is False on padding."""

    _LEAD: ClassVar[int] = 1


@dataclasses.dataclass(frozen=True)
class SegmentPairs(_SegmentArrays):
    """B pairs of segments: arrays of shape (B, 2, T, ...); the label says whether [:, 0] ≻ [:, 1]."""

    _LEAD: ClassVar[int] = 2

    @classmethod
    def from_segments(cls, segments: Segments, index: np.ndarray) -> SegmentPairs:
        """Pairs ``(segments[index[b, 0]], segments[index[b, 1]])`` for an int array ``index`` (B, 2)."""
        index = np.asarray(index)
        if index.ndim != 2 or index.shape[1] != 2:
            raise ValueError(f"index must have shape (B, 2), got {index.shape}")
        frames = None if segments.frames is None else segments.frames[index]
        return cls(**{name: value[index] for name, value in segments.arrays().items()}, frames=frames)


def candidate_pairs(n_segments: int, n_pairs: int, rng: np.random.Generator) -> np.ndarray:
    """(n_pairs, 2) random pairs of two different segment indices in [0, n_segments)."""
    if n_segments < 2:
        raise ValueError(f"need at least 2 segments to make pairs, got {n_segments}; collect more rollouts")
    first = rng.integers(0, n_segments, size=n_pairs)
    second = (first + rng.integers(1, n_segments, size=n_pairs)) % n_segments  # an offset >= 1: never first
    return np.stack([first, second], axis=1)


def make_pairs(segments: Segments, n_pairs: int, rng: np.random.Generator) -> SegmentPairs:
    """``n_pairs`` random pairs of two different segments (with replacement across pairs)."""
    return SegmentPairs.from_segments(segments, candidate_pairs(len(segments), n_pairs, rng))


def member_segment_returns(reward_model: Any, segments: _SegmentArrays) -> np.ndarray:
    """Return of every segment under every member: shape (K, *lead), e.g. (K, B, 2) for pairs.

    One ``reward_model.predict`` call on all flattened transitions (lead·T of them), so an
    ensemble runs one batched forward. Padded steps (mask False) contribute nothing.
    """
    obs, actions, next_obs = segments.flat_transitions()
    rewards = reward_model.predict(obs, actions, next_obs)  # (K, lead·T)
    k = rewards.shape[0]
    rewards = rewards.reshape(k, *segments.mask.shape)
    return np.where(segments.mask[None], rewards, 0.0).sum(axis=-1, dtype=np.float64)


def _check_array_space(space: gym.Space, what: str) -> None:
    if isinstance(space, (gym.spaces.Dict, gym.spaces.Tuple)) or not isinstance(
        space, (gym.spaces.Box, gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)
    ):
        raise TypeError(
            f"segments need array {what}s, but the env's {what} space is {space}; wrap the env in "
            "gymnasium.wrappers.FlattenObservation (or your own wrapper) so it is a Box."
        )


class SegmentRecorder:
    """Cut a stream of transitions from ``n_envs`` parallel envs into segments of T steps.

    Call :meth:`add` once per vectorised step; a segment is emitted every T steps of an
    episode and when an episode ends (padded). :meth:`pop` returns the finished ones.

    :param segment_length: T.
    :param n_envs: number of parallel envs feeding the stream.
    :param record_frames: keep the rendered frame passed with each step (ansi text or an rgb
        array), for the human labeller.
    """

    def __init__(self, segment_length: int, n_envs: int = 1, record_frames: bool = False) -> None:
        if segment_length < 1:
            raise ValueError(f"segment_length must be >= 1, got {segment_length}")
        self.segment_length = int(segment_length)
        self.n_envs = int(n_envs)
        self.record_frames = record_frames
        self._open: list[list[tuple]] = [[] for _ in range(self.n_envs)]
        self._done: list[Segments] = []

    def add(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        next_obs: np.ndarray,
        env_rewards: np.ndarray,
        dones: np.ndarray,
        frames: list | None = None,
    ) -> None:
        """Record one step of every env: arrays with leading axis n_envs; ``next_obs`` is the
        true next observation (the terminal one on episode end, not the reset one)."""
        if self.record_frames and (frames is None or len(frames) != self.n_envs):
            raise ValueError(f"record_frames=True needs one frame per env ({self.n_envs}) with every step")
        for i in range(self.n_envs):
            frame = frames[i] if self.record_frames else None
            self._open[i].append((obs[i], actions[i], next_obs[i], float(env_rewards[i]), frame))
            if len(self._open[i]) == self.segment_length or dones[i]:
                self._close(i)

    def _close(self, i: int) -> None:
        steps = self._open[i]
        self._open[i] = []
        if not steps:
            return
        valid = len(steps)
        steps = steps + [steps[-1]] * (self.segment_length - valid)  # pad by repetition, masked out
        columns = list(zip(*steps))
        self._done.append(
            Segments(
                obs=np.stack(columns[0])[None],
                actions=np.stack([np.asarray(a) for a in columns[1]])[None],
                next_obs=np.stack(columns[2])[None],
                env_rewards=np.asarray(columns[3], dtype=np.float32)[None],
                mask=(np.arange(self.segment_length) < valid)[None],
                frames=np.stack([np.asarray(f) for f in columns[4]])[None] if self.record_frames else None,
            )
        )

    def __len__(self) -> int:
        return len(self._done)

    def pop(self) -> Segments | None:
        """The finished segments joined (N, T, ...), or None if there are none; empties the list."""
        if not self._done:
            return None
        segments = Segments.concatenate(self._done)
        self._done = []
        return segments


def _policy_fn(policy: Any, env: gym.Env) -> Callable[[np.ndarray], Any]:
    if policy is None:
        return lambda obs: env.action_space.sample()
    if hasattr(policy, "predict"):  # an SB3 model
        return lambda obs: policy.predict(obs, deterministic=False)[0]
    if callable(policy):
        return policy
    raise TypeError(f"policy must be None (random), a callable obs -> action or an SB3 model; got {type(policy)}")


def _rollout_steps(env: gym.Env, act: Callable, seed: int | None, frames: bool) -> Iterator[tuple]:
    obs, _ = env.reset(seed=seed)
    while True:
        frame = env.render() if frames else None
        action = act(obs)
        next_obs, reward, terminated, truncated, info = env.step(action)
        env_reward = info.get("env_reward", reward)  # behind a RewardUncertaintyWrapper, the truth
        done = terminated or truncated
        yield obs, action, next_obs, env_reward, done, frame
        obs = env.reset()[0] if done else next_obs


def collect_segments(
    env: gym.Env,
    n_segments: int,
    segment_length: int = 25,
    policy: Any = None,
    seed: int | None = None,
    record_frames: bool = False,
    progress_bar: bool = False,
) -> Segments:
    """Roll out ``policy`` in ``env`` until ``n_segments`` segments of T steps are cut.

    :param env: a gymnasium env with array observation and action spaces.
    :param n_segments: N.
    :param segment_length: T.
    :param policy: None (uniform random actions, seeded), a callable ``obs -> action`` or an SB3 model.
    :param seed: seeds the first reset and the action space.
    :param record_frames: also keep ``env.render()`` of each step (ansi text or rgb arrays) in
        ``Segments.frames``, for the human labeller; the env must have that ``render_mode``.
    :return: Segments with arrays (N, T, ...).
    """
    _check_array_space(env.observation_space, "observation")
    _check_array_space(env.action_space, "action")
    if record_frames and env.render_mode not in ("ansi", "rgb_array"):
        raise ValueError(
            f"record_frames needs an env made with render_mode='ansi' or 'rgb_array', got {env.render_mode!r}"
        )
    if seed is not None:
        env.action_space.seed(seed)
    recorder = SegmentRecorder(segment_length, n_envs=1, record_frames=record_frames)
    parts: list[Segments] = []
    count = 0
    with tqdm(total=n_segments, desc="segments", disable=not progress_bar, leave=False) as bar:
        for obs, action, next_obs, env_reward, done, frame in _rollout_steps(
            env, _policy_fn(policy, env), seed, record_frames
        ):
            recorder.add(
                np.asarray(obs)[None],
                np.asarray(action)[None],
                np.asarray(next_obs)[None],
                np.asarray([env_reward]),
                np.asarray([done]),
                [frame],
            )
            if len(recorder):
                parts.append(recorder.pop())
                count += len(parts[-1])
                bar.update(len(parts[-1]))
                if count >= n_segments:
                    break
    return Segments.concatenate(parts)[:n_segments]
