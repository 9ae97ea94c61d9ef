"""Groups of transitions for calibration reports on the testbeds and three Gymnasium envs.

:func:`collect_steps` is :func:`ruagent.collect_transitions` that also records
``info["side_effect"]`` and each step's index in its episode; :data:`CALIBRATION_TESTBEDS`
describes every testbed's training and deployment variants and scripted policies, and
:func:`testbed_groups` collects ``heldout`` (random policy, training variant, another seed
than the labels), ``deployment`` (random and scripted policies in the deployment variant,
hazard steps excluded) and ``hazard`` (deployment steps with ``info["side_effect"]``), or for
Gymnasium envs without hazards ``heldout`` and ``unreached`` (states of a scripted
controller the random labelling policy never reaches). ``bench/calibration.py`` feeds them
to :func:`ruagent.calibration.calibration_report`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import gymnasium as gym
import numpy as np

from ruagent.data import Transitions, _stack

__all__ = ["CALIBRATION_TESTBEDS", "CalibrationTestbed", "Steps", "collect_steps", "testbed_groups"]


@dataclasses.dataclass(frozen=True)
class Steps:
    """Labelled transitions with what :class:`~ruagent.data.Transitions` does not keep.

    :ivar transitions: the N transitions (reward = the env's own reward, the truth).
    :ivar side_effect: (N,) bool, ``info["side_effect"]`` (False where the env has none).
    :ivar step: (N,) int, index of each step within its episode (0 = first step after reset).
    """

    transitions: Transitions
    side_effect: np.ndarray
    step: np.ndarray

    def __len__(self) -> int:
        return len(self.transitions)

    def select(self, mask: np.ndarray) -> Transitions:
        """The transitions where ``mask`` (N,) is True."""
        return self.transitions[np.flatnonzero(mask)]


#: A policy factory: (env, rng) -> callable obs -> action; None = uniform random actions.
PolicyFactory = Callable[[gym.Env, np.random.Generator], Callable[[Any], Any]]


def collect_steps(
    env: gym.Env, n_steps: int, policy: Callable[[Any], Any] | None = None, seed: int | None = None
) -> Steps:
    """Run ``policy`` for ``n_steps`` steps (resetting at episode ends), recording side effects.

    :func:`ruagent.collect_transitions` with ``info["side_effect"]`` and the step index.

    :param env: a gymnasium env (its reward is the truth).
    :param n_steps: N >= 1.
    :param policy: callable obs -> action, or None for uniform random actions.
    :param seed: seeds the first reset and the action space.
    """
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    env.action_space.seed(seed)
    act = policy if policy is not None else (lambda _obs: env.action_space.sample())
    obs, _ = env.reset(seed=seed)
    records: dict[str, list] = {key: [] for key in ("obs", "action", "next_obs", "reward", "term", "trunc",
                                                    "side_effect", "step")}
    step = 0
    for _ in range(n_steps):
        action = act(obs)
        next_obs, reward, terminated, truncated, info = env.step(action)
        for key, value in zip(records, (obs, action, next_obs, reward, terminated, truncated,
                                        bool(info.get("side_effect", False)), step)):
            records[key].append(value)
        step += 1
        if terminated or truncated:
            obs, step = env.reset()[0], 0
        else:
            obs = next_obs
    transitions = Transitions.from_arrays(
        _stack(env.observation_space, records["obs"]),
        _stack(env.action_space, records["action"]),
        _stack(env.observation_space, records["next_obs"]),
        np.asarray(records["reward"], dtype=np.float32),
        np.asarray(records["term"], dtype=bool),
        np.asarray(records["trunc"], dtype=bool),
    )
    return Steps(transitions, np.asarray(records["side_effect"], dtype=bool), np.asarray(records["step"], np.int64))


def _grid_greedy(epsilon: float = 0.2) -> PolicyFactory:
    """Grid envs: step towards the target (a random one of the moves that shorten the Manhattan
    distance), a uniformly random move with probability ``epsilon``. Lava-blind: it walks the
    short route, which crosses lava on the test maps."""

    def factory(env: gym.Env, rng: np.random.Generator) -> Callable[[Any], int]:
        grid = env.unwrapped

        def act(_obs: Any) -> int:
            (row, col), (target_row, target_col) = grid.agent, grid.target
            moves = [a for a, ok in ((0, target_row < row), (1, target_col > col), (2, target_row > row),
                                     (3, target_col < col)) if ok]
            if not moves or rng.random() < epsilon:
                return int(rng.integers(4))
            return int(rng.choice(moves))

        return act

    return factory


def _straight_to_goal(noise: float = 0.3) -> PolicyFactory:
    """PointNavigation: full speed along the goal displacement (obs[2:4]) plus Gaussian noise;
    from the test starts this crosses the hazard."""

    def factory(env: gym.Env, rng: np.random.Generator) -> Callable[[Any], np.ndarray]:
        def act(obs: np.ndarray) -> np.ndarray:
            direction = np.asarray(obs[2:4], dtype=np.float64)
            direction = direction / max(float(np.linalg.norm(direction)), 1e-8) + noise * rng.standard_normal(2)
            return np.clip(direction, -1.0, 1.0).astype(np.float32)

        return act

    return factory


def _cartpole_pd(env: gym.Env, rng: np.random.Generator) -> Callable[[Any], int]:
    """CartPole: push towards the side the pole falls to (PD on angle and angular velocity, with a
    weak cart-centring term); balances for the 500-step cap."""
    del env, rng
    return lambda obs: int(obs[2] + 0.5 * obs[3] + 0.05 * obs[0] + 0.1 * obs[1] > 0)


def _pendulum_swing_up(env: gym.Env, rng: np.random.Generator) -> Callable[[Any], np.ndarray]:
    """Pendulum: energy pumping (full torque along the angular velocity while the energy is below
    the upright one, E = ½θ̇² + 15(cos θ − 1) for Pendulum-v1's θ̈ = 15 sin θ + 3u), PD
    (u = −10θ − 2θ̇) within 0.6 rad of upright; holds the pendulum up."""
    del env, rng

    def act(obs: np.ndarray) -> np.ndarray:
        cos, sin, velocity = (float(v) for v in obs)
        angle = np.arctan2(sin, cos)
        if cos > np.cos(0.6) and abs(velocity) < 3.0:
            torque = -10.0 * angle - 2.0 * velocity
        else:
            energy = 0.5 * velocity**2 + 15.0 * (cos - 1.0)
            torque = 2.0 * np.sign(velocity * -energy) if velocity != 0 else 2.0
        return np.array([np.clip(torque, -2.0, 2.0)], dtype=np.float32)

    return act


def _mountain_car_pump(env: gym.Env, rng: np.random.Generator) -> Callable[[Any], np.ndarray]:
    """MountainCarContinuous: full throttle along the velocity's sign; reaches the goal in ~106 steps."""
    del env, rng
    return lambda obs: np.array([1.0 if obs[1] >= 0 else -1.0], dtype=np.float32)


def _upright(steps: Steps) -> np.ndarray:
    next_obs = np.asarray(steps.transitions.next_obs)
    return np.abs(np.arctan2(next_obs[:, 1], next_obs[:, 0])) < 0.5


@dataclasses.dataclass(frozen=True)
class CalibrationTestbed:
    """Where a testbed's labels and calibration groups come from.

    :param name: short key (``--testbeds``).
    :param env_id: registered Gymnasium id.
    :param train_kwargs: ``gym.make`` kwargs of the labelling (training) variant.
    :param deploy_kwargs: kwargs of each deployment variant (groups pool them).
    :param scripted: policy factory reaching states the random policy does not (None: none).
    :param hazard: the env reports ``info["side_effect"]``: groups ``deployment`` and ``hazard``;
        else ``unreached`` (the scripted controller's steps that ``keep`` selects).
    :param keep: for ``unreached``: (Steps) -> (N,) bool mask of the steps to keep.
    :param env_features: the env defines ``reward_features`` (``features="env"`` applies).
    :param note: caveat printed with the results (e.g. hazards present in the labels).
    """

    name: str
    env_id: str
    train_kwargs: dict[str, Any]
    deploy_kwargs: tuple[dict[str, Any], ...]
    scripted: PolicyFactory | None
    hazard: bool
    keep: Callable[[Steps], np.ndarray] | None = None
    env_features: bool = False
    note: str = ""

    def make(self, kwargs: Mapping[str, Any]) -> gym.Env:
        return gym.make(self.env_id, **kwargs)


def _gym_testbed(name: str, env_id: str, scripted: PolicyFactory, keep: Callable[[Steps], np.ndarray]) -> Any:
    return CalibrationTestbed(name, env_id, {}, ({},), scripted, hazard=False, keep=keep)


#: name -> testbed (``import ruagent`` registers the ruagent ids).
CALIBRATION_TESTBEDS: dict[str, CalibrationTestbed] = {
    testbed.name: testbed
    for testbed in (
        CalibrationTestbed("LavaWorld", "ruagent/LavaWorld-v0", {"variant": "train"}, ({"variant": "test"},),
                           _grid_greedy(), hazard=True, env_features=True),
        CalibrationTestbed("LavaWorld-procedural", "ruagent/LavaWorld-v0",
                           {"variant": "train", "layout": "procedural"},
                           ({"variant": "test", "layout": "procedural"},), _grid_greedy(), hazard=True,
                           env_features=True),
        CalibrationTestbed("PointNavigation", "ruagent/PointNavigation-v0", {"variant": "train"},
                           ({"variant": "test"},), _straight_to_goal(), hazard=True, env_features=True),
        CalibrationTestbed("DistributionalShift", "ruagent/DistributionalShift-v0", {"variant": "train"},
                           ({"variant": "test1"}, {"variant": "test2"}), _grid_greedy(), hazard=True,
                           env_features=True,
                           note="lava is in the training map: random-policy labels include lava steps, so its "
                                "hazard group is labelled, not out of distribution"),
        _gym_testbed("CartPole", "CartPole-v1", _cartpole_pd, keep=lambda steps: steps.step >= 50),
        _gym_testbed("Pendulum", "Pendulum-v1", _pendulum_swing_up, keep=_upright),
        _gym_testbed("MountainCarContinuous", "MountainCarContinuous-v0", _mountain_car_pump,
                     keep=lambda steps: np.asarray(steps.transitions.next_obs)[:, 0] > 0.2),
    )
}


def _cap(transitions: Transitions, n: int, rng: np.random.Generator) -> Transitions:
    """At most ``n`` of ``transitions``, a uniform subsample in order."""
    if len(transitions) <= n:
        return transitions
    return transitions[np.sort(rng.choice(len(transitions), size=n, replace=False))]


def testbed_groups(
    testbed: CalibrationTestbed | str,
    seed: int,
    *,
    n_heldout: int = 2000,
    n_deployment: int = 2000,
    n_target: int = 500,
    max_steps: int = 40_000,
) -> dict[str, Transitions]:
    """Calibration groups of one testbed, independent of the labels' seed stream.

    - ``heldout``: ``n_heldout`` random-policy steps in the training variant (reset seed
      ``seed + 10_000``; label with ``collect_transitions(..., seed=seed)``).
    - hazard testbeds: ``deployment``, random and scripted steps in the deployment variants
      (``n_deployment`` of each, hazard steps excluded, at most ``n_deployment`` kept); ``hazard``,
      their side-effect steps, collecting further chunks until ``n_target`` of them or ``max_steps``
      steps (at most ``n_target`` kept).
    - others: ``unreached``, the scripted controller's steps selected by ``keep``, until
      ``n_target`` of them or ``max_steps`` (at most ``n_target`` kept).

    :param testbed: a :class:`CalibrationTestbed` or its name in :data:`CALIBRATION_TESTBEDS`.
    :param seed: run seed (groups use ``seed + 10_000`` and up).
    """
    testbed = CALIBRATION_TESTBEDS[testbed] if isinstance(testbed, str) else testbed
    rng = np.random.default_rng(seed + 30_000)
    env = testbed.make(testbed.train_kwargs)
    try:
        groups = {"heldout": collect_steps(env, n_heldout, seed=seed + 10_000).transitions}
    finally:
        env.close()
    chunk_seed = seed + 20_000
    if testbed.hazard:
        deployment, hazard, steps_done, first_round = [], [], 0, True
        while first_round or (sum(map(len, hazard)) < n_target and steps_done < max_steps):
            for kwargs in testbed.deploy_kwargs:
                env = testbed.make(kwargs)
                try:
                    policies = [None] + ([testbed.scripted(env, rng)] if testbed.scripted is not None else [])
                    for policy in policies:
                        steps = collect_steps(env, n_deployment // len(testbed.deploy_kwargs), policy, chunk_seed)
                        chunk_seed += 1
                        steps_done += len(steps)
                        hazard.append(steps.select(steps.side_effect))
                        if first_round:
                            deployment.append(steps.select(~steps.side_effect))
                finally:
                    env.close()
            first_round = False
        groups["deployment"] = _cap(Transitions.concatenate(deployment), n_deployment, rng)
        groups["hazard"] = _cap(Transitions.concatenate(hazard), n_target, rng)
        return groups
    if testbed.scripted is None or testbed.keep is None:
        raise ValueError(f"testbed {testbed.name!r} has neither a hazard nor a scripted controller with keep=")
    env = testbed.make(testbed.deploy_kwargs[0])
    try:
        kept, steps_done = [], 0
        while not kept or (sum(map(len, kept)) < n_target and steps_done < max_steps):
            steps = collect_steps(env, n_deployment, testbed.scripted(env, rng), chunk_seed)
            chunk_seed += 1
            steps_done += len(steps)
            kept.append(steps.select(testbed.keep(steps)))
    finally:
        env.close()
    groups["unreached"] = _cap(Transitions.concatenate(kept), n_target, rng)
    return groups


testbed_groups.__test__ = False  # "test..." is a name, not a pytest test (pytest collects imported functions)
