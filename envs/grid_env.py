"""The gymnasium env shared by the grid testbeds (LavaWorld, DistributionalShift).

Subclasses name their terrains, which of them are reward features and the true feature
weights, and provide maps; this class does the stepping, observations, ``reward_features``,
the exact solver hookup and rendering. The env reward is the ground truth
``TRUE_REWARD_WEIGHTS · φ``, where φ is the one-hot of the terrain entered.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from ruagent.envs.gridworld import (
    BoardView,
    EgocentricView,
    GridSolution,
    Terrains,
    next_cells,
    render_ansi,
    render_rgb,
    value_iteration,
)

__all__ = ["GridWorldEnv"]


class GridWorldEnv(gym.Env[np.ndarray, np.int64], abc.ABC):
    """A grid map, an egocentric observation and a linear terrain-feature reward.

    :param map_shape: (H, W) of every map this env will produce (fixes the observation scale).
    :param max_steps: the step cap; the episode is truncated after it (and the solver plans for it).
    :param view_radius: r of the (2r+1) x (2r+1) egocentric window.
    :param render_mode: ``"rgb_array"`` or ``"ansi"``.
    :param observation: ``"egocentric"`` (the window + target displacement, :class:`EgocentricView`)
        or ``"board"`` (the whole map + the agent's cell, :class:`BoardView`, as the AI Safety
        Gridworlds observe).

    Actions: Discrete(4), 0 up, 1 right, 2 down, 3 left. ``info`` on every step: ``side_effect``
    (entered the hazard terrain this step) and ``terrain`` (name of the terrain entered).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array", "ansi"], "render_fps": 8}

    #: terrain vocabulary (subclass sets)
    terrains: ClassVar[Terrains]
    #: terrains whose one-hot indicators are the reward features, in feature order (D of them)
    feature_terrains: ClassVar[tuple[str, ...]]
    #: (D,) ground-truth weights: env reward = TRUE_REWARD_WEIGHTS @ reward_features
    TRUE_REWARD_WEIGHTS: ClassVar[np.ndarray]
    #: the terrain that counts as a side effect when entered, or None
    hazard: ClassVar[str | None] = None
    #: the terrain of the (unique) target cell, whose displacement the observation carries
    target_terrain: ClassVar[str]
    #: the character drawn for the agent in ansi frames
    agent_char: ClassVar[str] = "A"

    def __init__(
        self, map_shape: tuple[int, int], max_steps: int, view_radius: int = 2, render_mode: str | None = None,
        observation: str = "egocentric",
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        if int(max_steps) < 1 or int(view_radius) < 0:
            raise ValueError(f"max_steps must be >= 1 and view_radius >= 0, got {max_steps} and {view_radius}")
        self.render_mode = render_mode
        self.max_steps = int(max_steps)
        if observation not in ("egocentric", "board"):
            raise ValueError(f"observation must be 'egocentric' or 'board', got {observation!r}")
        self.observation = observation
        blocked = self.terrains.blocked
        if observation == "board":
            self.view = BoardView(len(self.terrains.names), tuple(map_shape))
        else:
            self.view = EgocentricView(
                n_terrains=len(self.terrains.names),
                radius=int(view_radius),
                off_map=self.terrains.code(blocked[0]) if blocked else None,
                map_shape=tuple(map_shape),
            )
        low, high = self.view.low_high
        self.observation_space = spaces.Box(low, high, dtype=np.float32)
        self.action_space = spaces.Discrete(4)
        self._feature_codes = np.array([self.terrains.code(name) for name in self.feature_terrains])
        # (T,) reward of entering each terrain; non-feature terrains (walls) are never entered.
        self.terrain_reward = self._terrain_reward(self.TRUE_REWARD_WEIGHTS)
        self._blocked = self.terrains.mask(self.terrains.blocked)
        self._terminal = self.terrains.mask(self.terrains.terminal)
        self.terrain: np.ndarray | None = None
        self.start: tuple[int, int] | None = None
        self.target: tuple[int, int] | None = None
        self.agent: tuple[int, int] | None = None

    # ------------------------------------------------------------------ maps
    @abc.abstractmethod
    def _make_map(self) -> tuple[np.ndarray, tuple[int, int]]:
        """The (terrain (H, W) int8, start cell) of the next episode; may draw from ``self.np_random``."""

    def _set_map(self, terrain: np.ndarray, start: tuple[int, int]) -> None:
        if terrain.shape != self.view.map_shape:
            raise ValueError(f"map shape {terrain.shape} differs from this env's map_shape {self.view.map_shape}")
        targets = np.argwhere(terrain == self.terrains.code(self.target_terrain))
        if len(targets) != 1:
            raise ValueError(f"a map needs exactly one {self.target_terrain!r} cell, found {len(targets)}")
        self.terrain, self.start, self.target = terrain, tuple(start), tuple(int(v) for v in targets[0])
        self._next_cell = next_cells(terrain, self._blocked)

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._set_map(*self._make_map())
        self.agent = self.start
        self._steps = 0
        return self._observe(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self.terrain is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        if not self.action_space.contains(action):
            raise ValueError(f"action must be an int in 0..3 (up, right, down, left), got {action!r}")
        self.agent = tuple(int(v) for v in self._next_cell[self.agent][int(action)])
        self._steps += 1
        code = int(self.terrain[self.agent])
        terminated = bool(self._terminal[code])
        truncated = not terminated and self._steps >= self.max_steps
        info = {"side_effect": self.terrains.names[code] == self.hazard, "terrain": self.terrains.names[code]}
        return self._observe(), float(self.terrain_reward[code]), terminated, truncated, info

    def _observe(self) -> np.ndarray:
        return self.view.observe(self.terrain, self.agent, self.target)

    def render(self) -> np.ndarray | str | None:
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode='rgb_array' or 'ansi' to make()")
            return None
        if self.terrain is None:
            raise gym.error.ResetNeeded("call reset() before render()")
        if self.render_mode == "ansi":
            return render_ansi(self.terrain, self.terrains, self.agent, self.agent_char)
        return render_rgb(self.terrain, self.terrains, self.agent)

    def safe_actions(self) -> np.ndarray:
        """The actions that do not enter the hazard terrain from the agent's cell (all four without a hazard).

        A labelling policy that draws from these never exercises the hazard's reward feature.
        """
        if self.terrain is None:
            raise gym.error.ResetNeeded("call reset() before safe_actions()")
        cells = self._next_cell[self.agent]  # (4, 2) the cell each action enters
        entered = self.terrain[cells[:, 0], cells[:, 1]]
        hazard = self.terrains.code(self.hazard) if self.hazard is not None else -1
        safe = np.flatnonzero(entered != hazard)
        return safe if len(safe) else np.arange(4)

    # ------------------------------------------------------------------ rewards
    def reward_features(self, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
        """One-hot of the terrain entered, read from ``next_obs`` (IRD's φ).

        :param obs: (B, obs_dim) observations (unused: the reward depends on the cell entered).
        :param action: (B,) actions (unused, for the common signature).
        :param next_obs: (B, obs_dim) next observations.
        :return: (B, D) float32, D = ``len(feature_terrains)``; env reward = this @ TRUE_REWARD_WEIGHTS.
        """
        next_obs = np.asarray(next_obs, dtype=np.float32)
        if next_obs.ndim != 2 or next_obs.shape[1] != self.view.size:
            raise ValueError(
                f"next_obs must be a batch of shape (B, {self.view.size}) from this env; got {next_obs.shape} "
                "(add a leading axis for one transition)"
            )
        if isinstance(self.view, BoardView):
            features = self.view.agent_terrain(next_obs)[:, self._feature_codes]
        else:
            features = next_obs[:, self.view.centre_slice()][:, self._feature_codes]
        assert features.shape == (next_obs.shape[0], len(self.feature_terrains))
        return np.ascontiguousarray(features)

    def _terrain_reward(self, weights: np.ndarray) -> np.ndarray:
        weights = np.asarray(weights, dtype=np.float64)
        if weights.shape != (len(self.feature_terrains),):
            raise ValueError(f"weights must have shape ({len(self.feature_terrains)},) for {self.feature_terrains}")
        reward = np.zeros(len(self.terrains.names))
        reward[self._feature_codes] = weights
        return reward

    # ------------------------------------------------------------------ solver
    def solve(self, weights: np.ndarray | None = None, terrain: np.ndarray | None = None) -> GridSolution:
        """Exact optimum of a map (this episode's by default) under feature weights (the truth by default)."""
        terrain = self.terrain if terrain is None else terrain
        if terrain is None:
            raise gym.error.ResetNeeded("call reset() (or pass terrain=) before solve()")
        weights = self.TRUE_REWARD_WEIGHTS if weights is None else weights
        return value_iteration(terrain, self._terrain_reward(weights), self._terminal, self._blocked, self.max_steps)

    def optimal_return(self, weights: np.ndarray | None = None) -> float:
        """Optimal true (or ``weights``) return from this episode's start, within the step cap."""
        return self.solve(weights).optimal_return(self.start)
