"""Fixed-size float vectors from batches of gymnasium space values, and reward-model inputs.

* :class:`SpaceEncoder` flattens one space: Box (flatten, no scaling by bounds, so infinite
  bounds work), Discrete (one-hot, respecting ``start``), MultiDiscrete (concatenated
  one-hots), MultiBinary (0/1 floats), Dict (gymnasium's key order) and Tuple, recursively.
* :class:`Featuriser` concatenates the encodings of ``(obs, action, next_obs)``.
* :class:`RandomFourierFeatures` approximates an RBF kernel with a finite basis
  (Rahimi & Recht, "Random Features for Large-Scale Kernel Machines", NIPS 2007).
* :class:`RewardInputs` is what a reward model reads: the featuriser (``"transition"``),
  the env's own ``reward_features`` (``"env"``, IRD's φ), or a user callable.

Featurisers do not normalise: normalising from the label data is the reward model's job.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from ruagent.spaces import UnsupportedSpaceError

__all__ = [
    "FEATURE_MODES",
    "FeaturesUnavailableError",
    "Featuriser",
    "RandomFourierFeatures",
    "RewardInputs",
    "SpaceEncoder",
]

FEATURE_MODES = ("transition", "env", "callable")
TRANSITION_PARTS = ("obs", "action", "next_obs")


class FeaturesUnavailableError(RuntimeError):
    """A reward model's inputs cannot be computed yet (unbound env features, missing callable)."""


def _leaf(value: Any, path: tuple) -> Any:
    for key in path:
        value = value[key]
    return value


class _Leaf:
    """One leaf space: where its value sits in the nested batch and in the output columns."""

    def __init__(
        self,
        path: tuple,
        offset: int,
        space: gym.Space,
        kind: str,
        shape: tuple,
        sizes: np.ndarray | None = None,
        first: Any = None,
    ) -> None:
        self.path, self.offset, self.space, self.kind, self.shape = path, offset, space, kind, tuple(shape)
        if kind == "dense":
            self.width = int(np.prod(shape, dtype=np.int64))
        else:  # one-hot blocks of sizes[i] columns; values start at first[i]
            self.sizes = np.asarray(sizes, dtype=np.uint64).reshape(-1)
            self.first = np.asarray(first, dtype=np.int64).reshape(-1)
            self.one_hot_offsets = np.concatenate(([0], np.cumsum(self.sizes)[:-1])).astype(np.int64)
            self.width = int(self.sizes.sum())
            # one block (Discrete): rows of the identity, gathered by ``take`` (a quarter of the
            # cost of a fancy-indexed write at wrapper batch sizes)
            self.identity = np.eye(self.width, dtype=np.float32) if len(self.sizes) == 1 else None


class SpaceEncoder:
    """Flattens batches of values of one space into ``(B, dim)`` float32 columns.

    The space is compiled once into a list of leaves (path into the nested value, column
    offset, kind), so encoding a batch is a few numpy writes with no recursion.

    :param space: a Box, Discrete, MultiDiscrete, MultiBinary, or Dict/Tuple of those.
    :param name: what the space is (``"observation"``, ``"action"``), used in error messages.
    :raises UnsupportedSpaceError: for any other space (Text, Graph, Sequence, ...).
    """

    def __init__(self, space: gym.Space, name: str = "space") -> None:
        self.space = space
        self.name = name
        self._leaves: list[_Leaf] = []
        self._rows: dict[int, np.ndarray] = {}  # cached (B, 1) row indices for one-hot writes
        self.dim = self._compile(space, (), 0)

    def _compile(self, space: gym.Space, path: tuple, offset: int) -> int:
        if isinstance(space, spaces.Dict):
            for key, sub in space.spaces.items():  # gymnasium's (sorted) key order
                offset = self._compile(sub, (*path, key), offset)
            return offset
        if isinstance(space, spaces.Tuple):
            for index, sub in enumerate(space.spaces):
                offset = self._compile(sub, (*path, index), offset)
            return offset
        if isinstance(space, spaces.Box):
            leaf = _Leaf(path, offset, space, "dense", space.shape)
        elif isinstance(space, spaces.MultiBinary):
            leaf = _Leaf(path, offset, space, "dense", tuple(np.atleast_1d(space.n).tolist()))
        elif isinstance(space, spaces.Discrete):
            leaf = _Leaf(path, offset, space, "one_hot", (), np.array([space.n]), np.array([space.start]))
        elif isinstance(space, spaces.MultiDiscrete):
            leaf = _Leaf(path, offset, space, "one_hot", space.nvec.shape, space.nvec.reshape(-1), space.start)
        else:
            raise UnsupportedSpaceError(space, where=f"{self.name} space")
        self._leaves.append(leaf)
        return offset + leaf.width

    def __call__(self, batch: Any, out: np.ndarray | None = None, column: int = 0) -> np.ndarray:
        """Encode a batch (leading axis B) into ``out[:, column:column + dim]``.

        :param batch: array with leading axis B, or dict/tuple of such arrays for Dict/Tuple.
        :param out: (B, >= column + dim) float32 array to fill, zeroed where one-hots go;
            allocated (zeros) when None.
        :return: ``out`` (B, D) float32.
        """
        if out is None:
            first = self._value(batch, self._leaves[0]) if self._leaves else np.zeros(0)
            if first.ndim == 0:  # an unbatched scalar (Discrete, Box of shape ())
                raise ValueError(self._shape_message(self._leaves[0].path, first.shape, ("B", *self._leaves[0].shape)))
            out = np.zeros((len(first), self.dim), dtype=np.float32)
        n_rows = out.shape[0]
        for leaf in self._leaves:
            value = self._value(batch, leaf)
            start = column + leaf.offset
            if value.ndim == 0 or value.shape[1:] != leaf.shape or value.shape[0] != n_rows:
                # SB3 VecEnvs hand Discrete values as (B, 1) as well as (B,)
                if not (leaf.shape == () and value.shape == (n_rows, 1)):
                    raise ValueError(self._shape_message(leaf.path, value.shape, (n_rows, *leaf.shape)))
            if leaf.kind == "dense":
                out[:, start : start + leaf.width] = value.reshape(n_rows, leaf.width)
                continue
            if leaf.identity is not None:
                out[:, start : start + leaf.width] = self._one_hot_rows(leaf, value.reshape(n_rows))
                continue
            index = value.reshape(n_rows, -1).astype(np.int64) - leaf.first
            if value.dtype.kind == "f" and not np.array_equal(index + leaf.first, value.reshape(n_rows, -1)):
                raise ValueError(self._non_integer_message(leaf))
            # one unsigned comparison catches both index < 0 (wraps to huge) and index >= n
            if (index.view(np.uint64) >= leaf.sizes).any():
                raise ValueError(self._outside_message(leaf, value))
            rows = self._rows.get(n_rows)
            if rows is None:
                rows = self._rows[n_rows] = np.arange(n_rows)[:, None]
            out[rows, start + leaf.one_hot_offsets + index] = 1.0
        return out

    def _value(self, batch: Any, leaf: _Leaf) -> np.ndarray:
        try:
            return np.asarray(_leaf(batch, leaf.path))
        except (KeyError, IndexError, TypeError) as exc:
            raise ValueError(
                f"{self.name} batch has no entry {list(leaf.path)} required by {self.space}; pass values "
                "structured like the space (dict of batches for Dict, tuple of batches for Tuple)"
            ) from exc

    def _one_hot_rows(self, leaf: _Leaf, value: np.ndarray) -> np.ndarray:
        """(B,) values of a Discrete leaf -> (B, n) rows of the identity; the leaf's checks on the way."""
        index = value
        if value.dtype.kind not in "iu":
            index = value.astype(np.int64)
            if not np.array_equal(index, value):
                raise ValueError(self._non_integer_message(leaf))
        if leaf.first[0]:
            index = index - leaf.first[0]
        # take raises on index >= n but wraps negative ones: those are checked first
        # (``index.size``: the min of an empty batch would raise)
        if index.size and index.min() < 0:
            raise ValueError(self._outside_message(leaf, value))
        try:
            return leaf.identity.take(index, axis=0)
        except IndexError:
            raise ValueError(self._outside_message(leaf, value)) from None

    def _non_integer_message(self, leaf: _Leaf) -> str:
        return f"{self._where(leaf.path)} holds non-integer values for {leaf.space}"

    def _outside_message(self, leaf: _Leaf, value: np.ndarray) -> str:
        return f"{self._where(leaf.path)} holds values outside {leaf.space}: {value.reshape(-1)[:8]}"

    def _where(self, path: tuple) -> str:
        return f"{self.name}{''.join(f'[{key!r}]' for key in path)}"

    def _shape_message(self, path: tuple, got: tuple, expected: tuple) -> str:
        return (
            f"{self._where(path)} has shape {got}, expected {expected} (batch of B values of {self.space}); "
            "add a leading batch axis for a single transition"
        )


class Featuriser:
    """``(obs, action, next_obs)`` batches -> ``(B, D)`` float32 features, by concatenation.

    :param observation_space: the env's observation space.
    :param action_space: the env's action space.
    :param parts: which of ``"obs"``, ``"action"``, ``"next_obs"`` to include, in that order
        (e.g. ``("next_obs",)`` for a reward of the state entered).
    """

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        parts: Sequence[str] = TRANSITION_PARTS,
    ) -> None:
        unknown = [part for part in parts if part not in TRANSITION_PARTS]
        if unknown or not parts:
            raise ValueError(f"parts must be a non-empty subset of {TRANSITION_PARTS}, got {parts!r}")
        self.parts = tuple(part for part in TRANSITION_PARTS if part in parts)
        obs_encoder = SpaceEncoder(observation_space, "observation")
        encoders = {
            "obs": obs_encoder,
            "action": SpaceEncoder(action_space, "action"),
            "next_obs": SpaceEncoder(observation_space, "next observation"),
        }
        self._encoders = [(TRANSITION_PARTS.index(part), encoders[part]) for part in self.parts]
        self.slices: dict[str, slice] = {}
        column = 0
        for part in self.parts:
            self.slices[part] = slice(column, column + encoders[part].dim)
            column += encoders[part].dim
        #: D, the feature width.
        self.dim = column

    def __call__(self, obs: Any, action: Any, next_obs: Any) -> np.ndarray:
        """Features of B transitions: float32 array (B, D)."""
        values = (obs, action, next_obs)
        first_encoder = self._encoders[0][1]
        first = np.asarray(_leaf(values[self._encoders[0][0]], first_encoder._leaves[0].path))
        if first.ndim == 0:  # an unbatched scalar: there is no batch axis to size the output by
            leaf = first_encoder._leaves[0]
            raise ValueError(first_encoder._shape_message(leaf.path, first.shape, ("B", *leaf.shape)))
        out = np.zeros((first.shape[0], self.dim), dtype=np.float32)
        for (index, encoder), part in zip(self._encoders, self.parts):
            encoder(values[index], out, self.slices[part].start)
        return out


class RandomFourierFeatures:
    """``z(x) = sqrt(2/M) cos(x Ωᵀ / ℓ + b)``, Ω ~ N(0, I), b ~ U(0, 2π), for ``x`` (B, D) -> (B, M).

    ``z(x)·z(y)`` approximates the RBF kernel ``exp(-|x - y|² / (2ℓ²))`` (Rahimi & Recht,
    NIPS 2007), so Bayesian linear regression on ``z`` approximates a GP with that kernel.

    :param in_dim: D.
    :param n_features: M.
    :param lengthscale: ℓ, in the units of ``x`` (standardise x first).
    :param seed: seeds Ω and b.
    """

    def __init__(self, in_dim: int, n_features: int, lengthscale: float = 1.0, seed: int | None = None) -> None:
        if n_features < 1 or lengthscale <= 0:
            raise ValueError(f"need n_features >= 1 and lengthscale > 0, got {n_features}, {lengthscale}")
        rng = np.random.default_rng(seed)
        self.lengthscale = float(lengthscale)
        #: Ω (M, D) and b (M,), float64.
        self.frequencies = rng.standard_normal((n_features, in_dim))
        self.phases = rng.uniform(0.0, 2.0 * math.pi, n_features)

    @classmethod
    def from_arrays(cls, frequencies: np.ndarray, phases: np.ndarray, lengthscale: float) -> RandomFourierFeatures:
        """Rebuild saved features (Ω (M, D), b (M,))."""
        rff = cls.__new__(cls)
        rff.frequencies = np.asarray(frequencies, dtype=np.float64)
        rff.phases = np.asarray(phases, dtype=np.float64)
        rff.lengthscale = float(lengthscale)
        assert rff.frequencies.shape[0] == rff.phases.shape[0], (rff.frequencies.shape, rff.phases.shape)
        return rff

    @property
    def dim(self) -> int:
        """M, the number of features."""
        return self.frequencies.shape[0]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """(B, D) -> (B, M), in x's float dtype (float32 on the hot path: numpy's SIMD cos)."""
        assert x.ndim == 2 and x.shape[1] == self.frequencies.shape[1], (x.shape, self.frequencies.shape)
        projection_matrix, phases = self._cast(x.dtype)
        projection = x @ projection_matrix
        projection += phases
        np.cos(projection, out=projection)
        projection *= math.sqrt(2.0 / self.dim)
        return projection

    def _cast(self, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
        # C-contiguous Ωᵀ/ℓ per dtype: a transposed (Fortran-order) operand makes numpy's
        # matmul skip BLAS and run ~100x slower.
        cache = self.__dict__.setdefault("_cast_cache", {})
        if dtype not in cache:
            cache[dtype] = (
                np.ascontiguousarray(self.frequencies.T / self.lengthscale, dtype=dtype),
                self.phases.astype(dtype),
            )
        return cache[dtype]


class RewardInputs:
    """The ``(B, D)`` inputs a reward model reads, from one of three sources.

    * ``"transition"``: :class:`Featuriser` of ``(obs, action, next_obs)``;
    * ``"env"``: the env's ``reward_features(obs, action, next_obs) -> (B, D)``, looked up
      through the wrapper chain by :meth:`bind` (IRD's φ);
    * a callable with that signature (recorded by name only: files cannot hold code).

    :param features: ``"transition"``, ``"env"`` or a callable.
    """

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, features: str | Callable) -> None:
        self._function: Callable | None = None
        if callable(features):
            self.mode, self._function = "callable", features
            self.callable_name = getattr(features, "__qualname__", type(features).__name__)
        elif features == "transition":
            self.mode, self.callable_name = "transition", None
            self._function = Featuriser(observation_space, action_space)
        elif features == "env":
            self.mode, self.callable_name = "env", None
        else:
            raise ValueError(
                f"features must be 'transition', 'env' or a callable (obs, action, next_obs) -> (B, D), "
                f"got {features!r}"
            )

    @classmethod
    def from_record(
        cls,
        observation_space: gym.Space,
        action_space: gym.Space,
        record: dict[str, Any],
        features: str | Callable | None = None,
    ) -> RewardInputs:
        """Rebuild from :meth:`describe`; a saved callable needs ``features`` (the function) again."""
        mode = record["mode"]
        if features is not None:
            if mode != "callable" and features != mode:
                raise ValueError(f"the file was saved with features={mode!r}; got features={features!r}")
            return cls(observation_space, action_space, features)
        if mode == "callable":
            inputs = cls(observation_space, action_space, "env")
            inputs.mode, inputs.callable_name = "callable", record.get("callable_name")
            return inputs
        return cls(observation_space, action_space, mode)

    @property
    def dim(self) -> int | None:
        """D when known before seeing data (transition features), else None."""
        return self._function.dim if isinstance(self._function, Featuriser) else None

    @property
    def ready(self) -> bool:
        """Whether inputs can be computed now."""
        return self._function is not None

    def bind(self, env: Any) -> None:
        """Look up ``reward_features`` on ``env`` (through wrappers) in ``"env"`` mode; no-op otherwise."""
        if self.mode != "env":
            return
        try:
            if hasattr(env, "get_wrapper_attr"):
                function = env.get_wrapper_attr("reward_features")
            else:  # an SB3 VecEnv: every sub-env shares the feature map, take the first
                function = env.get_attr("reward_features", indices=[0])[0]
        except AttributeError as exc:
            raise FeaturesUnavailableError(
                f"features='env' but {env} has no reward_features(obs, action, next_obs) method (searched "
                "through its wrappers); use features='transition', pass features=callable, or add "
                "reward_features to the env"
            ) from exc
        if not callable(function):
            raise FeaturesUnavailableError(f"{env}.reward_features is not callable: {function!r}")
        self._function = function

    def set_callable(self, function: Callable) -> None:
        """Supply the callable of a model saved with ``features=callable`` (files hold no code)."""
        if not callable(function):
            raise TypeError(f"features must be callable (obs, action, next_obs) -> (B, D), got {function!r}")
        self.mode, self._function = "callable", function
        self.callable_name = getattr(function, "__qualname__", type(function).__name__)

    def __call__(self, obs: Any, action: Any, next_obs: Any) -> np.ndarray:
        """(B, D) float32 inputs."""
        if self._function is None:
            if self.mode == "env":
                raise FeaturesUnavailableError(
                    "this reward model reads the env's reward_features but is not bound to an env; call "
                    "model.bind(env) (or load_reward_model(path, env=env), or fit(..., env=env)) first"
                )
            raise FeaturesUnavailableError(
                f"this reward model was saved with a user-supplied features callable ({self.callable_name}); "
                "files cannot hold code, so pass it again: Model.load(path, features=fn) or "
                "model.set_features(fn)"
            )
        features = np.asarray(self._function(obs, action, next_obs), dtype=np.float32)
        if features.ndim != 2:
            raise ValueError(
                f"reward features must have shape (B, D), got {features.shape} from {self.mode} features; "
                "return one row per transition"
            )
        return features

    def describe(self) -> dict[str, Any]:
        """JSON-able record for saving."""
        return {"mode": self.mode, "callable_name": self.callable_name}
