"""The shared grid machinery: map parsing, the exact solver, the egocentric view, rendering."""

import numpy as np
import pytest

from ruagent.envs.gridworld import (
    EgocentricView,
    Terrains,
    next_cells,
    parse_map,
    render_ansi,
    render_rgb,
    value_iteration,
)

TERRAINS = Terrains(
    names=("floor", "wall", "goal", "mud"),
    chars=(".", "#", "G", "m"),
    colours=((255, 255, 255), (0, 0, 0), (0, 255, 0), (120, 80, 40)),
    blocked=("wall",),
    terminal=("goal",),
)
FLOOR, WALL, GOAL, MUD = range(4)
TERMINAL = TERRAINS.mask(TERRAINS.terminal)
BLOCKED = TERRAINS.mask(TERRAINS.blocked)


def test_parse_map_reads_terrain_and_start():
    terrain, start = parse_map(
        """
        S.#
        m.G
        """,
        TERRAINS,
        "S",
        "floor",
    )
    assert start == (0, 0)
    np.testing.assert_array_equal(terrain, [[FLOOR, FLOOR, WALL], [MUD, FLOOR, GOAL]])


@pytest.mark.parametrize(
    "ascii_map, message",
    [("S.\n...", "equal-length rows"), ("S.\nx.", "unknown map characters"), ("..\n..", "exactly one start")],
)
def test_parse_map_errors_name_the_problem(ascii_map, message):
    with pytest.raises(ValueError, match=message):
        parse_map(ascii_map, TERRAINS, "S", "floor")


def test_moves_stay_put_at_walls_and_edges():
    terrain, _ = parse_map("S#\n..", TERRAINS, "S", "floor")
    nxt = next_cells(terrain, BLOCKED)
    assert nxt[0, 0].tolist() == [[0, 0], [0, 0], [1, 0], [0, 0]]  # up: edge, right: wall, down: ok, left: edge
    assert nxt[1, 1].tolist() == [[1, 1], [1, 1], [1, 1], [1, 0]]  # up into the wall stays


def test_value_iteration_finds_the_cheaper_detour():
    # Straight through 2 mud cells (cost 3 each) vs round the top through 4 extra floor cells.
    terrain, start = parse_map(
        """
        .....
        Smm.G
        """,
        TERRAINS,
        "S",
        "floor",
    )
    reward = np.array([-1.0, 0.0, 10.0, -3.0])
    solution = value_iteration(terrain, reward, TERMINAL, BLOCKED, horizon=20)
    _actions, cells, total = solution.rollout(start)
    # Detour: up, 4 x right, down = 5 floor steps, then the goal: -5 + 10 = 5 beats -3 - 3 - 1 + 10 = 3.
    assert total == solution.optimal_return(start) == 5.0
    assert all(terrain[cell] != MUD for cell in cells) and cells[-1] == (1, 4)
    # With mud as cheap as floor the straight route (4 steps, -3 + 10 = 7) wins.
    cheap_mud = value_iteration(terrain, np.array([-1.0, 0.0, 10.0, -1.0]), TERMINAL, BLOCKED, horizon=20)
    assert cheap_mud.optimal_return(start) == 7.0 and cheap_mud.rollout(start)[0] == [1, 1, 1, 1]


def test_value_iteration_respects_the_step_cap_and_discount():
    terrain, start = parse_map("S...G", TERRAINS, "S", "floor")
    reward = np.array([-1.0, 0.0, 10.0, 0.0])
    assert value_iteration(terrain, reward, TERMINAL, BLOCKED, horizon=4).optimal_return(start) == 7.0
    # One step short: the goal is out of reach, so the best is 3 unavoidable floor steps.
    assert value_iteration(terrain, reward, TERMINAL, BLOCKED, horizon=3).optimal_return(start) == -3.0
    discounted = value_iteration(terrain, reward, TERMINAL, BLOCKED, horizon=4, gamma=0.5)
    assert discounted.optimal_return(start) == pytest.approx(-1 - 0.5 - 0.25 + 0.125 * 10)


def test_egocentric_view_pads_off_map_and_centres_the_agent():
    terrain, start = parse_map("SG\n.m", TERRAINS, "S", "floor")
    view = EgocentricView(n_terrains=4, radius=1, off_map=WALL, map_shape=terrain.shape)
    obs = view.observe(terrain, start, (0, 1))
    assert obs.shape == (view.size,) == (3 * 3 * 4 + 2,)
    window = obs[:-2].reshape(3, 3, 4).argmax(-1)
    np.testing.assert_array_equal(window, [[WALL, WALL, WALL], [WALL, FLOOR, GOAL], [WALL, FLOOR, MUD]])
    np.testing.assert_array_equal(obs[view.centre_slice()], np.eye(4)[FLOOR])
    np.testing.assert_allclose(obs[-2:], [0, 0.5])
    extra = EgocentricView(n_terrains=4, radius=1, off_map=None, map_shape=terrain.shape)
    assert extra.observe(terrain, start, (0, 1))[:-2].reshape(3, 3, 5)[0, 0, 4] == 1  # off-map channel


def test_renderers_draw_every_cell():
    terrain, start = parse_map("S#\nmG", TERRAINS, "S", "floor")
    assert render_ansi(terrain, TERRAINS, start) == "A#\nmG"
    frame = render_rgb(terrain, TERRAINS, start, cell_px=10)
    assert frame.shape == (20, 20, 3) and frame.dtype == np.uint8
    assert tuple(frame[15, 15]) == TERRAINS.colours[GOAL] and tuple(frame[5, 15]) == TERRAINS.colours[WALL]


def test_value_iteration_matches_brute_force_over_all_action_sequences():
    """Exhaustive search over every 4^6 action sequence of a tiny map agrees with the solver."""
    terrain, start = parse_map("S.m\n#mG", TERRAINS, "S", "floor")
    reward = np.array([-1.0, 0.0, 4.0, -2.5])
    horizon = 6
    nxt = next_cells(terrain, BLOCKED)
    sequences = np.array(np.meshgrid(*[range(4)] * horizon, indexing="ij")).reshape(horizon, -1).T
    best = -np.inf
    for sequence in sequences:
        cell, total = start, 0.0
        for action in sequence:
            cell = tuple(nxt[cell][action])
            total += reward[terrain[cell]]
            if TERMINAL[terrain[cell]]:
                break
        best = max(best, total)
    solution = value_iteration(terrain, reward, TERMINAL, BLOCKED, horizon)
    assert solution.optimal_return(start) == pytest.approx(best)
    assert solution.rollout(start)[2] == pytest.approx(best)
