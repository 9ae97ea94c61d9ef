"""Labelled transitions: the evidence a reward posterior is fitted on.

:class:`Transitions` holds N transitions ``(obs, action, next_obs, reward, terminated,
truncated)`` as batched arrays (dicts/tuples of arrays for Dict/Tuple observation spaces),
with indexing, concatenation and a safe file format (``.npz``, ``allow_pickle=False``,
written atomically). :func:`collect_transitions` gathers them from an env and a policy.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from ruagent.io import atomic_write

__all__ = ["Transitions", "collect_transitions", "labelled_arrays"]

_FORMAT = "ruagent.transitions/1"


def _map(function: Callable, *trees: Any) -> Any:
    """Apply ``function`` to matching leaves of nested dict/tuple structures."""
    first = trees[0]
    if isinstance(first, dict):
        return {key: _map(function, *(tree[key] for tree in trees)) for key in first}
    if isinstance(first, (tuple, list)):
        return tuple(_map(function, *parts) for parts in zip(*trees))
    return function(*trees)


def _leaves(tree: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(tree, dict):
        return [leaf for key, value in tree.items() for leaf in _leaves(value, f"{prefix}[{key!r}]")]
    if isinstance(tree, (tuple, list)):
        return [leaf for i, value in enumerate(tree) for leaf in _leaves(value, f"{prefix}[{i}]")]
    return [(prefix, tree)]


def _check_finite(name: str, tree: Any) -> None:
    for where, leaf in _leaves(tree):
        if leaf.dtype.kind in "fc" and not np.isfinite(leaf).all():
            index = int(np.argwhere(~np.isfinite(leaf.reshape(len(leaf), -1)))[0][0])
            raise ValueError(
                f"{name}{where} holds NaN or inf at index {index}; drop or repair those transitions before "
                "fitting (a reward model cannot learn from non-finite values)"
            )


@dataclass(frozen=True)
class Transitions:
    """N labelled transitions. Fields are batched along their leading axis.

    :ivar obs: (N, ...) array, or dict/tuple of such arrays (Dict/Tuple observation spaces).
    :ivar action: (N, ...) array, or dict/tuple of arrays.
    :ivar next_obs: like ``obs``: the observation the step returned (at episode ends the
        true last observation, never the reset one).
    :ivar reward: (N,) float32 env rewards (the labels).
    :ivar terminated: (N,) bool.
    :ivar truncated: (N,) bool.
    """

    obs: Any
    action: Any
    next_obs: Any
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray

    @classmethod
    def from_arrays(
        cls,
        obs: Any,
        action: Any,
        next_obs: Any,
        reward: Any,
        terminated: Any = None,
        truncated: Any = None,
    ) -> Transitions:
        """Validate and build: equal lengths, finite values (errors name the field and index)."""
        obs, action, next_obs = (_map(np.asarray, value) for value in (obs, action, next_obs))
        reward = np.asarray(reward, dtype=np.float32)
        if reward.ndim != 1:
            raise ValueError(f"reward must have shape (N,), got {reward.shape}; pass one reward per transition")
        n = len(reward)
        terminated = np.zeros(n, bool) if terminated is None else np.asarray(terminated, dtype=bool)
        truncated = np.zeros(n, bool) if truncated is None else np.asarray(truncated, dtype=bool)
        fields = {"obs": obs, "action": action, "next_obs": next_obs, "terminated": terminated, "truncated": truncated}
        for name, tree in fields.items():
            for where, leaf in _leaves(tree):
                if leaf.ndim == 0 or len(leaf) != n:
                    raise ValueError(
                        f"{name}{where} has shape {leaf.shape} but reward has {n} entries; every field needs "
                        "the same leading length N"
                    )
        for name in ("obs", "action", "next_obs", "reward"):
            _check_finite(name, {"obs": obs, "action": action, "next_obs": next_obs, "reward": reward}[name])
        return cls(obs, action, next_obs, reward, terminated, truncated)

    def __len__(self) -> int:
        return len(self.reward)

    def __repr__(self) -> str:
        ends = int(np.sum(self.terminated | self.truncated))
        mean = float(np.mean(self.reward)) if len(self) else float("nan")
        return f"Transitions(N={len(self)}, episode ends={ends}, mean reward={mean:.4g})"

    def __getitem__(self, index: int | slice | np.ndarray | Sequence[int]) -> Transitions:
        """Transitions at ``index`` (slice, integer array, boolean mask; an int keeps a length-1 batch)."""
        if isinstance(index, (int, np.integer)):
            index = slice(index, index + 1) if index != -1 else slice(-1, None)
        return Transitions(*(_map(lambda leaf: leaf[index], field) for field in self._fields()))

    def _fields(self) -> tuple:
        return self.obs, self.action, self.next_obs, self.reward, self.terminated, self.truncated

    @staticmethod
    def concatenate(parts: Sequence[Transitions]) -> Transitions:
        """One batch from several, in order."""
        if not parts:
            raise ValueError("concatenate needs at least one Transitions")
        return Transitions(*(_map(lambda *leaves: np.concatenate(leaves), *fields) for fields in zip(*(
            part._fields() for part in parts
        ))))

    def __add__(self, other: Transitions) -> Transitions:
        return Transitions.concatenate([self, other])

    def save(self, path: str | os.PathLike) -> None:
        """Write to one ``.npz`` file (no pickles: structure as JSON, leaves as plain arrays), atomically."""
        arrays: dict[str, np.ndarray] = {}

        def name_leaf(leaf: np.ndarray) -> str:
            name = f"leaf{len(arrays)}"
            arrays[name] = np.asarray(leaf)
            if arrays[name].dtype == object:
                raise TypeError(f"cannot save an object array ({name}); Transitions hold numeric arrays only")
            return name

        names = [_map(name_leaf, field) for field in self._fields()]
        structure = json.dumps({"format": _FORMAT, "fields": [_jsonable(name) for name in names]})
        with atomic_write(path, "wb") as f:
            np.savez(f, __structure__=np.array(structure), **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Transitions:
        """Read a file written by :meth:`save` (``np.load(allow_pickle=False)``).

        :raises FileNotFoundError: if there is no file at ``path``.
        :raises ValueError: naming the file, if it is torn, corrupt or not a transitions file.
        """
        fields = None
        try:
            with np.load(path, allow_pickle=False) as data:
                structure = json.loads(str(data["__structure__"]))
                ours = isinstance(structure, dict) and structure.get("format") == _FORMAT
                if ours:
                    fields = [_unjson(field, data) for field in structure["fields"]]
        except FileNotFoundError:
            raise
        except Exception as exc:  # a torn or damaged zip: numpy and zipfile raise many types
            raise _unreadable(path, exc) from exc
        if fields is None:
            found = structure.get("format") if isinstance(structure, dict) else structure
            raise ValueError(f"{path} is not a ruagent transitions file ({found!r})")
        return cls(*fields)


def _unreadable(path: Any, exc: BaseException) -> ValueError:
    detail = str(exc).splitlines()[0] if str(exc) else ""
    return ValueError(f"{path} is not a readable transitions file (truncated or corrupt): {type(exc).__name__}: "
                      f"{detail}")


def _jsonable(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {"dict": {key: _jsonable(value) for key, value in tree.items()}}
    if isinstance(tree, tuple):
        return {"tuple": [_jsonable(value) for value in tree]}
    return tree


def _unjson(tree: Any, data: Any) -> Any:
    if isinstance(tree, dict) and "dict" in tree:
        return {key: _unjson(value, data) for key, value in tree["dict"].items()}
    if isinstance(tree, dict):
        return tuple(_unjson(value, data) for value in tree["tuple"])
    return data[tree]


def labelled_arrays(data: Any) -> tuple[Any, Any, Any, np.ndarray]:
    """``(obs, action, next_obs, reward)`` from Transitions or such a tuple, validated (N >= 1, finite, same N).

    Both posterior families' ``fit`` (and the linear family's ``update``) call this first, so empty
    label data is refused with one clear ``ValueError`` before a model's state is touched, instead of
    label statistics of NaN (which standardised wrappers would hand to the agent) or a reshape error.
    """
    if not isinstance(data, Transitions):
        if not isinstance(data, (tuple, list)) or len(data) != 4:
            raise TypeError(
                "reward labels must be a ruagent.data.Transitions or a tuple (obs, action, next_obs, reward); "
                f"got {type(data).__name__}"
            )
        data = Transitions.from_arrays(*data)
    else:  # built field by field or read from a file: from_arrays' checks did not run
        for name in ("obs", "action", "next_obs", "reward"):
            _check_finite(name, getattr(data, name))
    if len(data) == 0:
        raise _no_labels()
    return data.obs, data.action, data.next_obs, data.reward


def _no_labels() -> ValueError:
    return ValueError(
        "no labelled transitions: a reward model needs at least one (obs, action, next_obs, reward) to fit on. "
        "Gather labels first (ruagent.collect_transitions); in train.py, labels.budget * (1 - "
        "labels.heldout_fraction) must leave at least one label"
    )


def _stack(space: gym.Space, values: list) -> Any:
    if isinstance(space, gym.spaces.Dict):
        return {key: _stack(sub, [value[key] for value in values]) for key, sub in space.spaces.items()}
    if isinstance(space, gym.spaces.Tuple):
        return tuple(_stack(sub, [value[i] for value in values]) for i, sub in enumerate(space.spaces))
    return np.stack([np.asarray(value, dtype=space.dtype) for value in values])


def _action_function(env: gym.Env, policy: Any, seed: int | None) -> Callable[[Any], Any]:
    if policy is None:
        env.action_space.seed(seed)
        return lambda obs: env.action_space.sample()
    if hasattr(policy, "predict"):  # an SB3 model (or anything with its predict signature)
        return lambda obs: policy.predict(obs, deterministic=False)[0]
    if callable(policy):
        return policy
    raise TypeError(f"policy must be None (uniform random), an SB3 model or a callable obs -> action; got {policy!r}")


def collect_transitions(
    env: gym.Env | str,
    n_steps: int,
    policy: Any = None,
    seed: int | None = None,
    progress_bar: bool = False,
) -> Transitions:
    """Run ``policy`` in ``env`` for ``n_steps`` steps and record labelled transitions.

    :param env: a gymnasium env, or an env id (made here and closed after).
    :param n_steps: N, the number of transitions.
    :param policy: None (uniform random actions from the action space, seeded by ``seed``),
        an SB3 model (stochastic ``predict``), or a callable ``obs -> action``.
    :param seed: seeds the first ``reset`` (and the random policy).
    :return: :class:`Transitions` of length N; at episode ends ``next_obs`` is the last
        observation returned by ``step`` and the next transition starts from a fresh reset.
    """
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    owned = isinstance(env, str)
    env = gym.make(env) if owned else env
    try:
        act = _action_function(env, policy, seed)
        obs, _ = env.reset(seed=seed)
        records: dict[str, list] = {key: [] for key in ("obs", "action", "next_obs", "reward", "term", "trunc")}
        for _ in tqdm(range(n_steps), desc="collect transitions", disable=not progress_bar, leave=False):
            action = act(obs)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            for key, value in zip(records, (obs, action, next_obs, reward, terminated, truncated)):
                records[key].append(value)
            obs = env.reset()[0] if terminated or truncated else next_obs
        return Transitions.from_arrays(
            _stack(env.observation_space, records["obs"]),
            _stack(env.action_space, records["action"]),
            _stack(env.observation_space, records["next_obs"]),
            np.asarray(records["reward"], dtype=np.float32),
            np.asarray(records["term"], dtype=bool),
            np.asarray(records["trunc"], dtype=bool),
        )
    finally:
        if owned:
            env.close()
