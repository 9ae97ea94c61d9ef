"""Benchmark: ensemble fit on a wide, gridworld-structured observation (issue 18, item 2).

MiniGrid through ``FlatObsWrapper`` gives a 2,835-wide Box observation: a 7×7×3 egocentric
image (object, colour, state codes; 147 columns) and the mission string one-hot encoded
(96 characters × 28 codes; 2,688 columns). MiniGrid is not a dependency, so this script
simulates that structure: random walled rooms with goal and lava cells, an agent with a
heading and MiniGrid's 7 actions, the egocentric 7×7 view in front of it, and a fixed
mission. What matters for the fit is kept: most columns constant in the labels (the mission,
the state channel), small-integer codes that are one-hot-ish in a few values, colour codes
that are a function of the object codes (collinear columns), obs and next_obs almost equal,
and a reward that depends on a few columns (the cell the agent stands on in ``next_obs``:
+1 on a goal, −1 on lava, −0.01 a step otherwise).

The fit is timed (process CPU and wall, medians of ``--repeats`` fits of fresh models on the
same data) at the library's defaults (K = 10, 64×64, 300 epochs, patience 30), with the
epochs run, the held-out loss (MSE of the posterior mean on ``--heldout`` transitions of other
rooms, not used for fitting) and the novelty prior's subspace. ``--before REV`` times the
library as it was at a git revision on the same data: ``git archive REV ruagent`` is unpacked
into a temporary directory and a worker process imports ``ruagent`` from there (no checkout).
Torch runs on ``--threads`` threads (default 1: on a shared 2-core machine a second thread
spins on every small kernel and inflates CPU time; pass 2 for both cores).

    python bench/wide_obs.py --before HEAD --before-repeats 1 --repeats 3  # README "Benchmarks"
    python bench/wide_obs.py --quick                     # a few seconds (the test runs this)
    python bench/wide_obs.py --repeats 1 --scaling       # fit time at other N and D (linear in N·D?)

Writes ``results/bench/wide_obs.json`` (``--out`` to change); last stdout line: JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from _output import output_path

ROOT = Path(__file__).resolve().parents[1]

# MiniGrid's encoding (minigrid.core.constants): object, colour and state codes
UNSEEN, EMPTY, WALL, GOAL, LAVA = 0, 1, 2, 8, 9
COLOUR = {UNSEEN: 0, EMPTY: 0, WALL: 5, GOAL: 1, LAVA: 0}  # grey walls, green goal, red lava
VIEW = 7
MISSION_CHARS, CHAR_CODES = 96, 28
MISSION = "get to the green goal square"
OBS_DIM = VIEW * VIEW * 3 + MISSION_CHARS * CHAR_CODES  # 2,835
STEP_REWARD, GOAL_REWARD, LAVA_REWARD = -0.01, 1.0, -1.0
#: forward, turn left, turn right, then MiniGrid's pickup, drop, toggle, done (no-ops here)
FORWARD_BIAS = np.array([0.45, 0.2, 0.2, 0.05, 0.05, 0.025, 0.025])
HEADINGS = np.array([(1, 0), (0, 1), (-1, 0), (0, -1)])  # (dx, dy): east, south, west, north


def _mission_one_hot() -> np.ndarray:
    """(2,688,) the mission's characters one-hot, as FlatObsWrapper encodes them (a-z, space)."""
    encoded = np.zeros((MISSION_CHARS, CHAR_CODES), dtype=np.uint8)
    for i, char in enumerate(MISSION):
        encoded[i, 26 if char == " " else ord(char) - ord("a")] = 1
    return encoded.reshape(-1)


def _room(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size) object codes: walls around, a few interior walls, lava patches and goals."""
    grid = np.full((size, size), EMPTY, dtype=np.uint8)
    grid[[0, -1], :] = grid[:, [0, -1]] = WALL
    interior = rng.random((size - 2, size - 2))
    inner = grid[1:-1, 1:-1]
    inner[interior < 0.08] = WALL
    inner[(interior >= 0.08) & (interior < 0.14)] = LAVA
    inner[(interior >= 0.14) & (interior < 0.18)] = GOAL
    return grid


def _view(grid: np.ndarray, x: int, y: int, heading: int) -> np.ndarray:
    """(7, 7, 3) egocentric image: the agent at the bottom centre, facing up (MiniGrid's layout)."""
    forward, right = HEADINGS[heading], HEADINGS[(heading + 1) % 4]
    rows = np.arange(VIEW)[:, None]  # 0 = farthest ahead, 6 = the agent's row
    cols = np.arange(VIEW)[None, :] - VIEW // 2
    ahead = VIEW - 1 - rows
    wx = x + ahead * forward[0] + cols * right[0]
    wy = y + ahead * forward[1] + cols * right[1]
    inside = (wx >= 0) & (wx < grid.shape[1]) & (wy >= 0) & (wy < grid.shape[0])
    objects = np.where(inside, grid[np.clip(wy, 0, grid.shape[0] - 1), np.clip(wx, 0, grid.shape[1] - 1)], UNSEEN)
    colours = np.vectorize(COLOUR.get)(objects)
    image = np.stack([objects, colours, np.zeros_like(objects)], axis=-1)  # state channel: 0 (no doors)
    return image.astype(np.uint8)


def gridworld_transitions(n: int, seed: int = 0, room_size: int = 12, episode_steps: int = 60) -> tuple:
    """``(obs, action, next_obs, reward)`` of ``n`` random-policy steps, obs ``(n, 2,835)`` uint8.

    Episodes end on a goal or lava cell or after ``episode_steps``; each starts in a new room.
    """
    rng = np.random.default_rng(seed)
    mission = _mission_one_hot()
    obs = np.empty((n, OBS_DIM), dtype=np.uint8)
    next_obs = np.empty((n, OBS_DIM), dtype=np.uint8)
    action = rng.choice(len(FORWARD_BIAS), size=n, p=FORWARD_BIAS)
    reward = np.empty(n, dtype=np.float32)

    def reset() -> tuple[np.ndarray, int, int, int]:
        grid = _room(rng, room_size)
        free = np.argwhere(grid == EMPTY)
        y, x = free[rng.integers(len(free))]
        return grid, int(x), int(y), int(rng.integers(4))

    def observe(grid, x, y, heading) -> np.ndarray:
        return np.concatenate([_view(grid, x, y, heading).reshape(-1), mission])

    grid, x, y, heading = reset()
    t = 0
    for i in range(n):
        obs[i] = observe(grid, x, y, heading)
        a = action[i]
        if a == 0:  # forward, unless a wall is in the way
            nx, ny = x + HEADINGS[heading][0], y + HEADINGS[heading][1]
            if grid[ny, nx] != WALL:
                x, y = nx, ny
        elif a in (1, 2):
            heading = (heading + (-1 if a == 1 else 1)) % 4
        cell = grid[y, x]
        reward[i] = GOAL_REWARD if cell == GOAL else LAVA_REWARD if cell == LAVA else STEP_REWARD
        next_obs[i] = observe(grid, x, y, heading)
        t += 1
        if cell in (GOAL, LAVA) or t >= episode_steps:
            grid, x, y, heading = reset()
            t = 0
    return obs, action.astype(np.int64), next_obs, reward


def spaces(tile: int = 1) -> tuple[gym.Space, gym.Space]:
    return gym.spaces.Box(0, 255, (OBS_DIM * tile,), dtype=np.uint8), gym.spaces.Discrete(len(FORWARD_BIAS))


def scaling(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Fit CPU seconds at N ∈ {500, 1000, 2000} labels and at 2× the width, a fixed number of epochs.

    Early stopping off (patience = epochs), so the rows compare the same work per epoch;
    ``cpu_per_nd`` is CPU seconds per (N · D), relative to N = 1,000 at the base width.
    """
    rows = []
    for n_labels, tile in ((500, 1), (1000, 1), (2000, 1), (1000, 2)):
        fit = fit_and_time(n_labels, 500, args.seed, 1, args.scaling_epochs, args.scaling_epochs, tile)
        rows.append({"labels": n_labels, "feature_dim": fit["feature_dim"], "varied_columns": fit["varied_columns"],
                     "epochs": fit["epochs"][0], "cpu_s": fit["cpu_s_median"]})
    base = next(r for r in rows if r["labels"] == 1000 and r["feature_dim"] == rows[0]["feature_dim"])
    for row in rows:
        work = row["labels"] * row["feature_dim"] / (base["labels"] * base["feature_dim"])
        row["cpu_per_nd"] = round(row["cpu_s"] / base["cpu_s"] / work, 2)
    return rows


def fit_and_time(n_labels: int, n_heldout: int, seed: int, repeats: int, epochs: int, patience: int,
                 tile: int = 1) -> dict[str, Any]:
    """Fit ``repeats`` fresh default ensembles on the same labels; CPU and wall seconds, epochs, held-out MSE.

    Runs with whatever ``ruagent`` is importable (the worker of ``--before`` imports an older one).
    ``tile`` repeats every observation column that many times (D and the varied columns grow ×tile).
    """
    import ruagent
    from ruagent.reward_models import EnsembleRewardModel

    def widened(obs, action, next_obs, reward):
        return np.tile(obs, tile), action, np.tile(next_obs, tile), reward

    obs, action, next_obs, reward = widened(*gridworld_transitions(n_labels, seed=seed))
    heldout = widened(*gridworld_transitions(n_heldout, seed=seed + 10_000))
    observation_space, action_space = spaces(tile)
    cpu, wall, epochs_run, heldout_mse = [], [], [], []
    for _ in range(repeats):
        model = EnsembleRewardModel(observation_space, action_space, seed=seed)
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        history = model.fit((obs, action, next_obs, reward), epochs=epochs, patience=patience, progress_bar=False)
        cpu.append(time.process_time() - cpu_start)
        wall.append(time.perf_counter() - wall_start)
        epochs_run.append(history["epochs"])
        _, mean, _ = model.predict_moments(*heldout[:3])
        heldout_mse.append(float(np.mean(np.square(mean.astype(np.float64) - heldout[3]))))
    basis = model.novelty.basis.shape[1]
    never_varied = model.in_dim - basis if model.novelty.complement else basis
    return {
        "ruagent": str(Path(ruagent.__file__).parent),
        "cpu_s": [round(t, 2) for t in cpu],
        "wall_s": [round(t, 2) for t in wall],
        "cpu_s_median": round(statistics.median(cpu), 2),
        "wall_s_median": round(statistics.median(wall), 2),
        "epochs": epochs_run,
        "heldout_mse": heldout_mse,
        "label_mse_reference": float(np.var(heldout[3])),  # the loss of predicting the held-out mean
        "feature_dim": int(model.in_dim),
        "never_varied_dims": int(never_varied),
        "varied_columns": int(np.count_nonzero(np.ptp(model.features(obs, action, next_obs), axis=0))),
    }


def run_before(rev: str, args: argparse.Namespace) -> dict[str, Any]:
    """:func:`fit_and_time` in a worker process that imports ``ruagent`` as it was at ``rev``."""
    commit = subprocess.run(["git", "rev-parse", rev], cwd=ROOT, check=True, capture_output=True, text=True).stdout
    with tempfile.TemporaryDirectory() as tree:
        archive = subprocess.run(["git", "archive", rev, "ruagent"], cwd=ROOT, check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", tree], input=archive.stdout, check=True)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([tree, os.environ.get("PYTHONPATH", "")])}
        command = [sys.executable, __file__, "--worker", "--labels", str(args.labels), "--heldout", str(args.heldout),
                   "--seed", str(args.seed), "--repeats", str(args.before_repeats), "--epochs", str(args.epochs),
                   "--patience", str(args.patience), "--threads", str(args.threads)]
        done = subprocess.run(command, cwd=tree, env=env, check=True, capture_output=True, text=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["ruagent"].startswith(tree), result["ruagent"]  # the old library, not this checkout
    result.update(rev=rev, commit=commit.strip(), ruagent=f"git archive {commit.strip()[:10]}")
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, default=1000)
    parser.add_argument("--heldout", type=int, default=5000, help="held-out transitions for the loss")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--patience", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (see the module docstring)")
    parser.add_argument("--before", metavar="REV", default=None, help="also time the library at this git revision")
    parser.add_argument("--before-repeats", type=int, default=1)
    parser.add_argument("--scaling", action="store_true", help="also fit at other N and D (see scaling())")
    parser.add_argument("--scaling-epochs", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="200 labels, 20 epochs, 1 repeat, no --before")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON path (default results/bench/wide_obs.json; with --quick bench/results/)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.out = output_path(ROOT / "results" / "bench" / "wide_obs.json", args.quick, args.out)
    if args.quick:
        args.labels, args.heldout, args.epochs, args.repeats, args.before, args.scaling = 200, 500, 20, 1, None, False
    torch.set_num_threads(args.threads)
    if args.worker:  # the --before side: print the measurement only
        result = fit_and_time(args.labels, args.heldout, args.seed, args.repeats, args.epochs, args.patience)
        print(json.dumps(result))
        return result
    before = run_before(args.before, args) if args.before else None
    after = fit_and_time(args.labels, args.heldout, args.seed, args.repeats, args.epochs, args.patience)
    result: dict[str, Any] = {
        "command": "python bench/wide_obs.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "config": {"labels": args.labels, "heldout": args.heldout, "seed": args.seed, "obs_dim": OBS_DIM,
                   "n_members": 10, "hidden_sizes": [64, 64], "epochs": args.epochs, "patience": args.patience,
                   "repeats": args.repeats, "before_repeats": args.before_repeats if before else None,
                   "torch_threads": args.threads, "cpu_count": os.cpu_count(), "torch": torch.__version__},
        "after": after,
        "before": before,
        "scaling": scaling(args) if args.scaling else None,
    }
    if before:
        result["speedup_cpu"] = round(before["cpu_s_median"] / after["cpu_s_median"], 1)
        result["speedup_wall"] = round(before["wall_s_median"] / after["wall_s_median"], 1)
        result["heldout_mse_ratio"] = round(statistics.median(after["heldout_mse"])
                                            / statistics.median(before["heldout_mse"]), 4)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for name, side in (("before", before), ("after", after)):
        if side:
            print(f"{name:>6}: fit {side['cpu_s_median']:.1f} s CPU, {side['wall_s_median']:.1f} s wall (medians of "
                  f"{len(side['cpu_s'])}), epochs {side['epochs']}, held-out MSE {side['heldout_mse'][0]:.5f}",
                  file=sys.stderr)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
