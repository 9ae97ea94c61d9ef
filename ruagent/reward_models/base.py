"""The reward-posterior protocol every family implements.

A reward model holds K fixed reward hypotheses ("members"). ``predict`` maps a batch of
transitions to member rewards of shape ``(K, B)``, float32; member k is the same function
across calls until the model is refit or resampled. Wrappers, agents and metrics depend
only on this class.

Persistence is one file per model: a ``torch.save`` of plain containers (str, int, float,
lists, dicts and tensors), read back with ``torch.load(weights_only=True)`` so loading
never unpickles code. The file records the family, the spaces (as JSON), K and the
hyperparameters, next to the weights.
"""

from __future__ import annotations

import abc
import importlib
import json
import os
import zipfile
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch

from ruagent.io import atomic_write
from ruagent.spaces import space_from_dict, space_to_dict, spaces_equal

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "RewardModel",
    "RewardModelFileError",
    "SpaceMismatchError",
    "align_member_offsets",
    "load_reward_model",
    "member_mean_variance",
    "member_moments",
]

FORMAT_NAME = "ruagent.reward_model"
FORMAT_VERSION = 1

#: family -> module that defines it, imported on demand by :func:`load_reward_model`.
FAMILY_MODULES = {
    "ensemble": "ruagent.reward_models.ensemble",
    "linear": "ruagent.reward_models.linear",
    "two_hypothesis_cartpole": "ruagent.envs.two_hypothesis_cartpole",
}


class SpaceMismatchError(ValueError):
    """The env's spaces differ from those a reward model was fitted on."""


class RewardModelFileError(ValueError):
    """A reward-model file that cannot be read: missing, truncated, corrupt or too new."""


class RewardModel(abc.ABC):
    """K reward hypotheses over transitions ``(obs, action, next_obs)``.

    :param observation_space: the env's observation space.
    :param action_space: the env's action space.
    :param n_members: K, the number of hypotheses.
    :param member_probs: (K,) posterior weights of the members; uniform when None.
    :param check_finite: if True (default), ``predict`` raises on NaN/inf member rewards
        (costs one ``np.isfinite`` pass over a (K, B) array).
    """

    #: Registry key written to files; subclasses set it and are registered automatically.
    family: ClassVar[str]
    _families: ClassVar[dict[str, type[RewardModel]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        family = cls.__dict__.get("family")
        if family is not None:
            RewardModel._families[family] = cls

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        n_members: int,
        member_probs: np.ndarray | None = None,
        check_finite: bool = True,
    ) -> None:
        if int(n_members) < 1:
            raise ValueError(f"n_members must be >= 1, got {n_members}")
        self.observation_space = observation_space
        self.action_space = action_space
        self._n_members = int(n_members)
        self.member_probs = self._validate_probs(member_probs, self._n_members)
        self.check_finite = check_finite
        # Per-member location/scale of predicted rewards on the label data, set by fitting;
        # used to standardise members so that constant offsets carry no risk signal.
        self.reward_loc: np.ndarray | None = None
        self.reward_scale: np.ndarray | None = None

    # ------------------------------------------------------------------ members
    @property
    def n_members(self) -> int:
        """K, the number of reward hypotheses."""
        return self._n_members

    @staticmethod
    def _validate_probs(member_probs: np.ndarray | None, k: int) -> np.ndarray:
        if member_probs is None:
            return np.full(k, 1.0 / k)
        probs = np.asarray(member_probs, dtype=np.float64)
        if probs.shape != (k,) or not np.all(np.isfinite(probs)) or np.any(probs < 0) or probs.sum() <= 0:
            raise ValueError(f"member_probs must be {k} non-negative finite numbers, got {member_probs!r}")
        return probs / probs.sum()

    # ------------------------------------------------------------------ prediction
    @abc.abstractmethod
    def _predict(self, obs: Any, action: Any, next_obs: Any, batch_size: int) -> np.ndarray:
        """Member rewards (K, B) for a validated batch."""

    def predict(self, obs: Any, action: Any, next_obs: Any) -> np.ndarray:
        """Rewards of every member for a batch of B transitions.

        :param obs: batch of observations, leading dimension B (dicts/tuples of batches for
            Dict/Tuple spaces).
        :param action: batch of actions, leading dimension B.
        :param next_obs: batch of next observations, like ``obs``.
        :return: float32 array of shape (K, B).
        """
        batch_size = self._check_batch(obs, action, next_obs)
        return self._checked_members(self._predict(obs, action, next_obs, batch_size), batch_size)

    @staticmethod
    def _check_batch(obs: Any, action: Any, next_obs: Any) -> int:
        """B, after checking that obs, action and next_obs have the same leading axis."""
        batch_size = _batch_size(obs, "obs")
        for name, value in (("action", action), ("next_obs", next_obs)):
            if _batch_size(value, name) != batch_size:
                raise ValueError(
                    f"{name} has batch size {_batch_size(value, name)} but obs has {batch_size}; "
                    "pass batches of the same length (add a leading axis for a single transition)"
                )
        return batch_size

    def _checked_members(self, rewards: Any, batch_size: int) -> np.ndarray:
        rewards = np.asarray(rewards, dtype=np.float32)
        assert rewards.shape == (self.n_members, batch_size), (rewards.shape, self.n_members, batch_size)
        if self.check_finite and not np.isfinite(rewards).all():
            bad = np.argwhere(~np.isfinite(rewards))[0]
            raise FloatingPointError(
                f"{type(self).__name__}.predict produced a non-finite reward (member {bad[0]}, batch index "
                f"{bad[1]}); check the inputs for NaN/inf. Set check_finite=False to skip this check."
            )
        return rewards

    def predict_moments(self, obs: Any, action: Any, next_obs: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Member rewards and the posterior's mean and std of the reward, with one model call.

        ``mean`` and ``std`` are the family's posterior mean and standard deviation of the
        reward function at each transition: analytic where the family has them (the linear
        family: ``φᵀμ`` and ``√(φᵀΣφ)``), else the ``member_probs``-weighted moments of the K
        draws. ``members`` are the K draws, exactly what :meth:`predict` returns.

        :return: ``members`` (K, B) float32, ``mean`` (B,) float64, ``std`` (B,) float64.
        """
        batch_size = self._check_batch(obs, action, next_obs)
        members, moments = self._predict_with_moments(obs, action, next_obs, batch_size)
        members = self._checked_members(members, batch_size)
        if moments is None:
            return (members, *member_moments(members, self.member_probs))
        mean, std = (np.asarray(m, dtype=np.float64) for m in moments)
        assert mean.shape == std.shape == (batch_size,), (mean.shape, std.shape, batch_size)
        return members, mean, std

    def _predict_with_moments(
        self, obs: Any, action: Any, next_obs: Any, batch_size: int
    ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
        """Member rewards (K, B) and analytic (mean, std) of shape (B,), or None for the members' moments."""
        return self._predict(obs, action, next_obs, batch_size), None

    def standardise(self, rewards: np.ndarray) -> np.ndarray:
        """Align the members' constant offsets on the label data: ``r_k - loc_k + Σ_j p_j loc_j``.

        Members of an ensemble can differ by a constant offset that says nothing about risk
        (Brown et al. and IRD anchor their worst case for the same reason); shifting each member
        so that its label-data mean equals the posterior's removes it. Only offsets move: the
        common level is kept (a constant survival reward stays a reward, so an episodic task
        keeps its optimum) and nothing is rescaled (the prior's spread stays in reward units).
        Identity when the model has no label statistics. See :func:`align_member_offsets`.
        """
        if self.reward_loc is None:
            return rewards
        return align_member_offsets(rewards, self.reward_loc, self.member_probs)

    def bind(self, env: gym.Env) -> None:
        """Attach env-provided pieces (e.g. ``reward_features``) after construction or load.

        Checks the spaces; families that read env features override this to look them up.
        """
        self.check_spaces(env.observation_space, env.action_space)

    def check_spaces(self, observation_space: gym.Space, action_space: gym.Space) -> None:
        """Raise :class:`SpaceMismatchError` naming both spaces if they differ from the model's."""
        for what, mine, theirs in (
            ("observation", self.observation_space, observation_space),
            ("action", self.action_space, action_space),
        ):
            if not spaces_equal(mine, theirs):
                raise SpaceMismatchError(
                    f"{type(self).__name__} was fitted on {what} space {mine} but the env has {what} space "
                    f"{theirs}; fit a reward model on this env (train.py fit-reward) or use the env it was "
                    "fitted on."
                )

    # ------------------------------------------------------------------ persistence
    @abc.abstractmethod
    def _get_state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """(hyperparameters as JSON-able dict, named tensors) that rebuild this model."""

    @classmethod
    @abc.abstractmethod
    def _from_state(
        cls,
        observation_space: gym.Space,
        action_space: gym.Space,
        config: dict[str, Any],
        tensors: dict[str, torch.Tensor],
    ) -> RewardModel:
        """Rebuild a model from what :meth:`_get_state` returned."""

    def save(self, path: str | os.PathLike) -> None:
        """Write the model to one file (atomically)."""
        config, tensors = self._get_state()
        common = {
            "n_members": self.n_members,
            "member_probs": self.member_probs.tolist(),
            "check_finite": self.check_finite,
            "reward_loc": None if self.reward_loc is None else self.reward_loc.tolist(),
            "reward_scale": None if self.reward_scale is None else self.reward_scale.tolist(),
        }
        payload = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "family": self.family,
            "observation_space": json.dumps(space_to_dict(self.observation_space)),
            "action_space": json.dumps(space_to_dict(self.action_space)),
            "common": json.dumps(common),
            "config": json.dumps(config),
            "tensors": {name: t.detach().cpu().contiguous() for name, t in tensors.items()},
        }
        with atomic_write(path, "wb") as f:
            torch.save(payload, f)

    @classmethod
    def load(cls, path: str | os.PathLike, env: gym.Env | None = None) -> RewardModel:
        """Load a model saved by :meth:`save`; with ``env``, check its spaces and bind it."""
        model = load_reward_model(path, env=env)
        if not isinstance(model, cls):
            raise RewardModelFileError(f"{path} holds a {type(model).__name__}, not a {cls.__name__}")
        return model


def align_member_offsets(members: np.ndarray, loc: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Members (K, B) shifted so that member k's label-data mean ``loc_k`` becomes ``Σ_j p_j loc_j``; float32."""
    loc = np.asarray(loc, dtype=np.float64)
    shift = (np.asarray(probs, dtype=np.float64) @ loc) - loc  # (K,)
    return (members + shift[:, None]).astype(np.float32)


def member_moments(members: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Probability-weighted mean and std over members: (K, B) and (K,) -> two (B,) float64 arrays."""
    mean, variance = member_mean_variance(members, probs)
    return mean, np.sqrt(variance, out=variance)


def member_mean_variance(members: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Probability-weighted mean and variance over members: (K, B) and (K,) -> two (B,) float64 arrays.

    The variance is a weighted sum of squares, so it is never negative: no clipping before a sqrt.
    """
    mean = probs @ members
    centred = members - mean
    return mean, probs @ np.square(centred, out=centred)


def _batch_size(value: Any, name: str) -> int:
    if isinstance(value, dict):
        if not value:
            raise ValueError(f"{name} is an empty dict")
        return _batch_size(next(iter(value.values())), name)
    if isinstance(value, tuple):
        if not value:
            raise ValueError(f"{name} is an empty tuple")
        return _batch_size(value[0], name)
    array = np.asarray(value)
    if array.ndim == 0:
        raise ValueError(f"{name} must be batched (leading axis B); got a scalar. Use value[None] for B=1.")
    return int(array.shape[0])


def _check_zip_crcs(path: Path) -> None:
    """Refuse a torch zip whose members fail their CRC-32 (torch's reader does not check them, so a byte
    flipped inside tensor data would load as a different weight) or whose file entries are flagged as
    folders. Files that are not zips are left to ``torch.load``, which names what they are."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
            # torch's reader takes an entry flagged as a folder (MS-DOS attribute 0x10) to be empty
            bad = bad or next((i.filename for i in archive.infolist() if i.external_attr & 0x10 and i.file_size), None)
    except zipfile.BadZipFile:  # no zip directory at all: torch.load says what the file is
        return
    except Exception as exc:  # damaged headers: zipfile raises several types
        raise RewardModelFileError(
            f"{path} is corrupt (truncated, corrupt, or another format): {type(exc).__name__}: {exc}"
        ) from exc
    if bad is not None:
        raise RewardModelFileError(
            f"{path} is corrupt: its entry {bad!r} fails its CRC-32 or attribute check (damaged on disk or in "
            "transfer); refit the posterior (train.py fit-reward) or restore the file from a copy"
        )


def load_reward_model(path: str | os.PathLike, env: gym.Env | None = None) -> RewardModel:
    """Load any reward model saved by ruagent; the family is read from the file.

    Loading uses ``torch.load(weights_only=True)``: the file holds plain data and tensors
    only, so no code from it is executed. With ``env``, the model's spaces are checked
    against the env's (:class:`SpaceMismatchError` on mismatch) and env features bound.
    """
    path = Path(path)
    if not path.is_file():
        raise RewardModelFileError(f"no reward-model file at {path}")
    _check_zip_crcs(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for torn or foreign files
        raise RewardModelFileError(
            f"{path} is not a readable ruagent reward-model file (truncated, corrupt, or another format): "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_NAME:
        raise RewardModelFileError(f"{path} is not a ruagent reward-model file")
    version = payload.get("version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise RewardModelFileError(
            f"{path} has reward-model format version {version}; this ruagent reads up to version "
            f"{FORMAT_VERSION}. Upgrade ruagent to load it."
        )
    family = payload.get("family")
    if family not in RewardModel._families and family in FAMILY_MODULES:
        importlib.import_module(FAMILY_MODULES[family])
    model_cls = RewardModel._families.get(family)
    if model_cls is None:
        raise RewardModelFileError(
            f"{path} holds unknown reward-model family {family!r}; known: {sorted(RewardModel._families)}"
        )
    try:
        observation_space = space_from_dict(json.loads(payload["observation_space"]))
        action_space = space_from_dict(json.loads(payload["action_space"]))
        common = json.loads(payload["common"])
        config = json.loads(payload["config"])
        tensors = payload["tensors"]
        model = model_cls._from_state(observation_space, action_space, config, tensors)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise RewardModelFileError(f"{path} is corrupt: {type(exc).__name__}: {exc}") from exc
    model.member_probs = RewardModel._validate_probs(np.asarray(common["member_probs"]), model.n_members)
    model.check_finite = bool(common.get("check_finite", True))
    if common.get("reward_loc") is not None:
        model.reward_loc = np.asarray(common["reward_loc"], dtype=np.float32)
        model.reward_scale = np.asarray(common["reward_scale"], dtype=np.float32)
    if env is not None:
        model.bind(env)
    return model
