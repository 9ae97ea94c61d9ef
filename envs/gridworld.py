"""Shared machinery of the grid testbeds: ASCII maps, an exact solver, observations, rendering.

A map is an ``(H, W)`` int8 array of terrain codes plus a start cell. The agent moves
up/right/down/left (actions 0-3); a move into a blocked terrain (wall) or off the map
leaves it in place. The reward of a step is a function of the terrain of the cell the agent
occupies after it ("the cell entered"), so a step's reward is ``w · onehot(terrain entered)``
for a weight vector ``w`` over terrains, and an episode ends on entering a terminal terrain
or at the step cap.

:func:`value_iteration` solves any map exactly under any terrain weights: finite-horizon
dynamic programming over the step cap (with optional discount), so optimal returns are
exact rather than approximations of a discounted infinite-horizon problem.

Observations (:class:`EgocentricView`) are an egocentric one-hot terrain window around the
agent plus the displacement to the target. One policy can then act on any map of the same
terrains (what it needs to see is local terrain and where the target lies), the observation
is Markov on a fixed map (the displacement pins the position), and the centre cell of the
window is the terrain just entered, so feature rewards are functions of ``next_obs`` alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from ruagent.envs.canvas import Canvas

__all__ = [
    "MOVES",
    "BoardView",
    "EgocentricView",
    "GridSolution",
    "Terrains",
    "parse_map",
    "render_ansi",
    "render_rgb",
    "value_iteration",
]

#: (4, 2) row/column offsets of actions 0 up, 1 right, 2 down, 3 left.
MOVES = np.array([[-1, 0], [0, 1], [1, 0], [0, -1]], dtype=np.int64)


@dataclasses.dataclass(frozen=True)
class Terrains:
    """The terrain vocabulary of a grid testbed (index = terrain code).

    :param names: terrain names, e.g. ``("dirt", "grass", "target", "lava")``.
    :param chars: one ASCII character per terrain, for maps and ``ansi`` frames.
    :param colours: RGB per terrain, for ``rgb_array`` frames.
    :param blocked: names the agent cannot enter (walls). Off-map cells count as the first of
        them in observations, or as an extra "wall" channel when there is none.
    :param terminal: names whose entry ends the episode.
    """

    names: tuple[str, ...]
    chars: tuple[str, ...]
    colours: tuple[tuple[int, int, int], ...]
    blocked: tuple[str, ...] = ()
    terminal: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.names)
        if len(self.chars) != n or len(self.colours) != n or len(set(self.chars)) != n:
            raise ValueError("Terrains needs one distinct char and one colour per name")
        unknown = (set(self.blocked) | set(self.terminal)) - set(self.names)
        if unknown:
            raise ValueError(f"blocked/terminal name unknown terrains {sorted(unknown)}; known: {self.names}")

    def code(self, name: str) -> int:
        return self.names.index(name)

    def mask(self, names: Sequence[str]) -> np.ndarray:
        """(T,) bool: which terrain codes are in ``names``."""
        return np.isin(np.array(self.names), list(names))


def parse_map(ascii_map: str, terrains: Terrains, start_char: str, start_terrain: str) -> tuple[np.ndarray, tuple]:
    """Parse an ASCII map (one row a line, surrounding blank lines and indentation ignored).

    :param start_char: the character marking the start cell, which has terrain ``start_terrain``.
    :return: ``(terrain (H, W) int8, start (row, col))``.
    """
    lines = [line.strip() for line in ascii_map.strip("\n").splitlines() if line.strip()]
    if not lines or len({len(line) for line in lines}) != 1:
        raise ValueError(f"a map needs equal-length rows, got row lengths {[len(line) for line in lines]}")
    lookup = {char: code for code, char in enumerate(terrains.chars)}
    lookup[start_char] = terrains.code(start_terrain)
    bad = sorted({char for line in lines for char in line} - set(lookup))
    if bad:
        raise ValueError(f"unknown map characters {bad}; use {lookup} ({terrains.names} and the start)")
    starts = [(r, c) for r, line in enumerate(lines) for c, char in enumerate(line) if char == start_char]
    if len(starts) != 1:
        raise ValueError(f"a map needs exactly one start {start_char!r}, found {len(starts)}")
    terrain = np.array([[lookup[char] for char in line] for line in lines], dtype=np.int8)
    return terrain, starts[0]


def next_cells(terrain: np.ndarray, blocked: np.ndarray) -> np.ndarray:
    """(H, W, 4, 2) cell reached by each action from each cell (staying put at walls and edges)."""
    height, width = terrain.shape
    cells = np.stack(np.indices((height, width)), axis=-1)[:, :, None, :] + MOVES  # (H, W, 4, 2)
    inside = (cells[..., 0] >= 0) & (cells[..., 0] < height) & (cells[..., 1] >= 0) & (cells[..., 1] < width)
    clipped = np.clip(cells, 0, [height - 1, width - 1])
    stay = ~inside | blocked[terrain[clipped[..., 0], clipped[..., 1]]]
    here = np.broadcast_to(np.stack(np.indices((height, width)), axis=-1)[:, :, None, :], cells.shape)
    return np.where(stay[..., None], here, clipped)


@dataclasses.dataclass(frozen=True)
class GridSolution:
    """Exact finite-horizon optimum of a grid map under one terrain-reward vector.

    ``q_values[t - 1]`` is Q with ``t`` steps left, shape (horizon, H, W, 4); ``values[t]`` is V
    with ``t`` steps left, shape (horizon + 1, H, W). The optimal policy is time-dependent
    (the step cap matters), so :meth:`rollout` follows ``argmax q_values[t - 1]``.
    """

    q_values: np.ndarray
    values: np.ndarray
    next_cell: np.ndarray
    terminal_cell: np.ndarray
    cell_reward: np.ndarray

    @property
    def horizon(self) -> int:
        return self.q_values.shape[0]

    def optimal_return(self, start: tuple[int, int]) -> float:
        """The optimal (discounted if gamma < 1) return of an episode from ``start``."""
        return float(self.values[self.horizon][start])

    def rollout(self, start: tuple[int, int]) -> tuple[list[int], list[tuple[int, int]], float]:
        """Follow the optimal policy (lowest action index on ties) from ``start``.

        :return: ``(actions, cells entered, undiscounted return)``.
        """
        cell, actions, cells, total = tuple(start), [], [], 0.0
        for steps_left in range(self.horizon, 0, -1):
            action = int(np.argmax(self.q_values[steps_left - 1][cell]))
            cell = tuple(int(v) for v in self.next_cell[cell][action])
            actions.append(action)
            cells.append(cell)
            total += float(self.cell_reward[cell])
            if self.terminal_cell[cell]:
                break
        return actions, cells, total


def value_iteration(
    terrain: np.ndarray,
    terrain_reward: np.ndarray,
    terminal: np.ndarray,
    blocked: np.ndarray,
    horizon: int,
    gamma: float = 1.0,
) -> GridSolution:
    """Solve a grid map exactly by backward induction over the step cap.

    :param terrain: (H, W) terrain codes.
    :param terrain_reward: (T,) reward of entering each terrain (e.g. ``features @ weights``).
    :param terminal: (T,) bool, entering ends the episode.
    :param blocked: (T,) bool, cannot be entered.
    :param horizon: the step cap (steps in an episode at most).
    :param gamma: discount; 1 (none) by default, as the testbeds' returns are undiscounted.
    """
    terrain_reward = np.asarray(terrain_reward, dtype=np.float64)
    assert terrain.ndim == 2 and terrain_reward.shape == terminal.shape == blocked.shape, (
        terrain.shape,
        terrain_reward.shape,
        terminal.shape,
        blocked.shape,
    )
    height, width = terrain.shape
    nxt = next_cells(terrain, blocked)
    # Flat state indices make each backup one gather over a (S, 4) table: fast enough to
    # solve hundreds of maps in a test.
    flat_next = (nxt[..., 0] * width + nxt[..., 1]).reshape(-1, 4)
    entered = terrain.reshape(-1)[flat_next]  # (S, 4)
    step_reward = terrain_reward[entered]
    discount = gamma * ~terminal[entered]
    flat_values = np.zeros((horizon + 1, height * width))
    flat_q = np.empty((horizon, height * width, 4))
    for steps_left in range(1, horizon + 1):
        np.add(step_reward, discount * flat_values[steps_left - 1][flat_next], out=flat_q[steps_left - 1])
        flat_values[steps_left] = flat_q[steps_left - 1].max(axis=1)
        if np.array_equal(flat_values[steps_left], flat_values[steps_left - 1]):
            # A fixed point: every later backup is identical, so copy instead of iterating.
            flat_q[steps_left:] = flat_q[steps_left - 1]
            flat_values[steps_left + 1 :] = flat_values[steps_left]
            break
    q_values = flat_q.reshape(horizon, height, width, 4)
    values = flat_values.reshape(horizon + 1, height, width)
    return GridSolution(q_values, values, nxt, terminal[terrain], terrain_reward[terrain])


@dataclasses.dataclass(frozen=True)
class EgocentricView:
    """Builds observations: a one-hot terrain window centred on the agent + target displacement.

    Layout of the flat float32 vector: ``window`` of shape (2r+1, 2r+1, C) flattened
    (C = T terrain channels, plus one "off-map" channel when the terrains have no wall), then
    ``(Δrow, Δcol) / max(H, W)`` to the target.

    :param n_terrains: T.
    :param radius: r, cells visible in each direction.
    :param off_map: terrain code shown off the map, or None for an extra channel.
    :param map_shape: (H, W), for the displacement scale.
    """

    n_terrains: int
    radius: int
    off_map: int | None
    map_shape: tuple[int, int]

    @property
    def n_channels(self) -> int:
        return self.n_terrains + (self.off_map is None)

    @property
    def size(self) -> int:
        side = 2 * self.radius + 1
        return side * side * self.n_channels + 2

    @property
    def low_high(self) -> tuple[np.ndarray, np.ndarray]:
        low = np.zeros(self.size, dtype=np.float32)
        low[-2:] = -1.0
        return low, np.ones(self.size, dtype=np.float32)

    def centre_slice(self) -> slice:
        """Slice of the flat observation holding the one-hot of the agent's own cell."""
        side = 2 * self.radius + 1
        start = (self.radius * side + self.radius) * self.n_channels
        return slice(start, start + self.n_terrains)

    def observe(self, terrain: np.ndarray, agent: tuple[int, int], target: tuple[int, int]) -> np.ndarray:
        r = self.radius
        off_code = self.n_terrains if self.off_map is None else self.off_map
        padded = np.pad(terrain, r, constant_values=off_code)
        window = padded[agent[0] : agent[0] + 2 * r + 1, agent[1] : agent[1] + 2 * r + 1]
        onehot = np.eye(self.n_channels, dtype=np.float32)[window].reshape(-1)
        displacement = (np.asarray(target) - np.asarray(agent)) / max(self.map_shape)
        obs = np.concatenate([onehot, displacement.astype(np.float32)])
        assert obs.shape == (self.size,)
        return obs


class BoardView:
    """Builds full-board observations, the AI Safety Gridworlds' own (Leike et al., 2017): the
    one-hot terrain of every cell, then the one-hot of the agent's cell.

    Layout of the flat float32 vector: (H, W, T) terrain one-hot flattened, then (H, W) agent
    one-hot flattened; size H·W·(T + 1), values in {0, 1}.

    :param n_terrains: T.
    :param map_shape: (H, W).
    """

    def __init__(self, n_terrains: int, map_shape: tuple[int, int]) -> None:
        self.n_terrains, self.map_shape = int(n_terrains), tuple(map_shape)
        self.n_cells = self.map_shape[0] * self.map_shape[1]

    @property
    def size(self) -> int:
        return self.n_cells * (self.n_terrains + 1)

    @property
    def low_high(self) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros(self.size, dtype=np.float32), np.ones(self.size, dtype=np.float32)

    def observe(self, terrain: np.ndarray, agent: tuple[int, int], target: tuple[int, int]) -> np.ndarray:
        del target  # visible on the board
        onehot = np.eye(self.n_terrains, dtype=np.float32)[terrain].reshape(-1)
        position = np.zeros(self.map_shape, dtype=np.float32)
        position[agent] = 1.0
        obs = np.concatenate([onehot, position.reshape(-1)])
        assert obs.shape == (self.size,)
        return obs

    def agent_terrain(self, obs: np.ndarray) -> np.ndarray:
        """(B, T) one-hot of the terrain under the agent, for a batch of (B, size) observations."""
        board = obs[:, : self.n_cells * self.n_terrains].reshape(-1, self.n_cells, self.n_terrains)
        position = obs[:, self.n_cells * self.n_terrains :]
        return np.einsum("bc,bct->bt", position, board)


def render_ansi(terrain: np.ndarray, terrains: Terrains, agent: tuple[int, int], agent_char: str = "A") -> str:
    """The map as text, one row a line, the agent drawn as ``agent_char``."""
    chars = np.array(terrains.chars)[terrain]
    chars[agent] = agent_char
    return "\n".join("".join(row) for row in chars)


def render_rgb(terrain: np.ndarray, terrains: Terrains, agent: tuple[int, int], cell_px: int = 16) -> np.ndarray:
    """The map as an (H * cell_px, W * cell_px, 3) uint8 frame, the agent as a dark disc."""
    height, width = terrain.shape
    frame = np.repeat(np.repeat(np.array(terrains.colours, dtype=np.uint8)[terrain], cell_px, 0), cell_px, 1)
    canvas = Canvas(height * cell_px, width * cell_px)
    canvas.pixels[:] = frame
    # Thin grid lines make cells countable in videos.
    canvas.pixels[::cell_px] = canvas.pixels[::cell_px] * 0.85
    canvas.pixels[:, ::cell_px] = canvas.pixels[:, ::cell_px] * 0.85
    canvas.disc((agent[1] + 0.5) * cell_px, (agent[0] + 0.5) * cell_px, cell_px * 0.35, (30, 30, 120))
    return canvas.pixels
