"""The headline experiment's testbeds: where labels come from, where agents train and are scored.

Each :class:`TestbedSpec` fixes one row group of the results table, following the experiment
protocol (docs/cli.md): reward labels are gathered in ``label_kwargs`` (the training variant) within
``label_budget`` transitions of a labelling policy (uniformly random, or random among the moves
that never enter the hazard, so the hazard's reward is never labelled), a posterior is fitted on
them, agents train in ``deploy_kwargs`` through the posterior wrapper, and are scored by the env's
own reward in each of ``eval_variants``. DistributionalShift appears twice: the
policy-transfer case of the paper (Leike et al., 2017; agents train in its training variant and are
scored on test 1 and test 2; lava is labelled, so it tests generalisation, not reward uncertainty),
and the reward-uncertainty protocol (``distributional-shift-ru``: labels from a policy that never enters
lava, agents trained on test 1 through the posterior). TwoHypothesisCartPole ships its posterior
(the PG-BROIL check, Javed et al., ICML 2021) and has no labels to fit; its random-policy
transitions of the training variant stand in as the "seen" states of the OOD AUROC.

Posteriors (:data:`POSTERIORS`, the family x features sweep of issue 15): Bayesian linear
regression on the env's reward features (IRD's φ, Hadfield-Menell et al., NeurIPS 2017), with or
without an intercept, or on the transition featuriser; the deep ensemble with randomised priors
(Osband, Aslanides & Cassirer, NeurIPS 2018) on either input; each with its family's default
priors. ``build_posterior(..., posterior=name)`` picks one; the testbed's ``posterior`` is the default.

Hyperparameters are per testbed and per algorithm, in committed YAML files
(``ruagent/configs/hyperparams/{ppo,riskppo,klppo,sac,risksac}.yaml``, rl-baselines3-zoo style), because
the envs differ in horizon and reward scale; their comments give the reasons. Most testbeds train
on-policy agents; SpeedLimitCheetah (issue 16, the ``mujoco`` extra) trains off-policy ones (SAC,
RiskSAC) and RiskPPO beside them, and runs only when named (``--testbeds speed-limit-cheetah``).
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

__all__ = ["ALGO_FAMILIES", "HYPERPARAMS_DIR", "POSTERIORS", "SWEEP_POSTERIORS", "TESTBEDS", "PosteriorSpec",
           "TestbedSpec", "build_posterior", "label_policy", "load_hyperparams", "make_env", "resolve_posterior"]

#: the committed per-algorithm hyperparameter files, one entry per testbed
HYPERPARAMS_DIR = Path(__file__).resolve().parents[1] / "configs" / "hyperparams"
_ALGO_FILES = ("ppo", "riskppo", "klppo", "sac", "risksac")
#: the agent families a testbed trains: on-policy (PPO, RiskPPO, KL-PPO) or off-policy (SAC, RiskSAC; Box actions)
ALGO_FAMILIES = ("ppo", "sac")
#: labelling policies: uniform random actions, or uniform among the moves that do not enter the hazard
LABEL_POLICIES = ("random", "safe-random")


@dataclasses.dataclass(frozen=True)
class PosteriorSpec:
    """One posterior family and input choice.

    :param family: ``"linear"`` (:class:`ruagent.BayesianLinearRewardModel`), ``"ensemble"``
        (:class:`ruagent.EnsembleRewardModel`) or ``"two_hypothesis"`` (TwoHypothesisCartPole's own).
    :param features: ``"env"`` (the env's ``reward_features``) or ``"transition"`` (the featuriser of
        (obs, action, next_obs)); None for ``two_hypothesis``.
    :param bias: the linear family's intercept.
    """

    family: str
    features: str | None
    bias: bool = True


#: posterior name -> spec; ``--posterior`` of the headline command takes these names
POSTERIORS: dict[str, PosteriorSpec] = {
    "linear-env": PosteriorSpec("linear", "env"),
    "linear-env-nointercept": PosteriorSpec("linear", "env", bias=False),
    "linear-transition": PosteriorSpec("linear", "transition"),
    "linear-transition-nointercept": PosteriorSpec("linear", "transition", bias=False),
    "ensemble-env": PosteriorSpec("ensemble", "env"),
    "ensemble-transition": PosteriorSpec("ensemble", "transition"),
    "two_hypothesis": PosteriorSpec("two_hypothesis", None),
}
#: issue 15's family x features sweep (tier 2): linear with and without intercept, the ensemble on both inputs
SWEEP_POSTERIORS = ("linear-env", "linear-env-nointercept", "ensemble-env", "ensemble-transition")


@functools.cache
def _hyperparam_file(algo: str) -> dict[str, Any]:
    import yaml

    if algo not in _ALGO_FILES:
        raise ValueError(f"no hyperparameter file for algo {algo!r}; choose from {', '.join(_ALGO_FILES)}")
    path = HYPERPARAMS_DIR / f"{algo}.yaml"
    with open(path, encoding="utf-8") as file:
        return yaml.safe_load(file) or {}


def load_hyperparams(algo: str, testbed: str) -> dict[str, Any]:
    """The committed ``<algo>.yaml`` entry of ``testbed`` (a copy).

    :param algo: ``"ppo"`` (every agent's PPO settings), ``"riskppo"`` or ``"klppo"`` (their extras).
    :param testbed: a key of :data:`TESTBEDS`.
    """
    entries = _hyperparam_file(algo)
    if testbed not in entries:
        raise KeyError(f"{HYPERPARAMS_DIR / (algo + '.yaml')} has no entry for testbed {testbed!r}; add one "
                       f"(the file's other entries show the keys)")
    return dict(entries[testbed] or {})


@dataclasses.dataclass(frozen=True)
class TestbedSpec:
    """One testbed of the headline experiment.

    :param name: short key (folder names, ``--testbeds``, the hyperparameter files' entries).
    :param title: what the table and figures call it.
    :param env_id: registered Gymnasium id.
    :param label_kwargs: ``gym.make`` kwargs of the labelling (training) variant.
    :param deploy_kwargs: kwargs of the variant the agents train in.
    :param eval_variants: evaluation name -> kwargs of the variants the agents are scored in.
    :param posterior: the default posterior, a key of :data:`POSTERIORS`.
    :param total_timesteps: environment steps per agent in the full run.
    :param tiny_timesteps: the same in ``--tiny`` runs (the test suite).
    :param eval_episodes: evaluation episodes per agent, seed and variant.
    :param label_budget: reward labels (transitions) the posterior is fitted on.
    :param label_policy: ``"random"`` or ``"safe-random"`` (never enters the env's hazard: needs the
        grid envs' ``safe_actions``).
    :param n_members: K, posterior members.
    :param n_envs: parallel envs (a DummyVecEnv: on 2 cores subprocesses only add overhead).
    :param algo_family: ``"ppo"`` (the agents are PPO, RiskPPO and KL-PPO) or ``"sac"`` (SAC and RiskSAC:
        :func:`ruagent.experiments.agents.resolve_algo` maps each agent's role onto the family).
    :param agents: the agents (keys of ``agents.AGENTS``) that run on this testbed; None: every on-policy
        agent but ``cvar-ppo`` (which exists to put RiskPPO beside the off-policy agents).
    :param in_default_run: whether the headline runs it when no ``--testbeds`` are given (False for the
        MuJoCo testbed: it needs the ``mujoco`` extra and hours).
    :param control_env_id: an env with the same dynamics and spaces whose reward ignores what the testbed
        is about (TwoHypothesisCartPole: CartPole-v1, indifferent to the side); the ``drift`` agent trains
        there and is scored like the others, so the table shows where plain PPO ends up by itself.

    ``hyperparams`` (a property) are the settings of ``ruagent/configs/hyperparams/<algo_family>.yaml``.
    """

    __test__ = False  # "Test..." is a name, not a pytest class

    name: str
    title: str
    env_id: str
    label_kwargs: dict[str, Any]
    deploy_kwargs: dict[str, Any]
    eval_variants: dict[str, dict[str, Any]]
    posterior: str
    total_timesteps: int
    tiny_timesteps: int
    eval_episodes: int
    label_budget: int = 2000
    label_policy: str = "random"
    n_members: int = 10
    n_envs: int = 8
    algo_family: str = "ppo"
    agents: tuple[str, ...] | None = None
    in_default_run: bool = True
    control_env_id: str | None = None

    def __post_init__(self) -> None:
        if self.algo_family not in ALGO_FAMILIES:
            raise ValueError(f"algo_family must be one of {ALGO_FAMILIES}, got {self.algo_family!r}")
        if self.posterior not in POSTERIORS:
            raise ValueError(f"posterior must be one of {', '.join(POSTERIORS)}, got {self.posterior!r}")
        if self.label_policy not in LABEL_POLICIES:
            raise ValueError(f"label_policy must be one of {LABEL_POLICIES}, got {self.label_policy!r}")
        if not self.eval_variants:
            raise ValueError(f"testbed {self.name!r} needs at least one evaluation variant")

    @property
    def hyperparams(self) -> dict[str, Any]:
        """Keyword arguments shared by every agent of the testbed's family (``ppo.yaml`` or ``sac.yaml``)."""
        return load_hyperparams(self.algo_family, self.name)


_DS_TEST = {"test1": {"variant": "test1"}, "test2": {"variant": "test2"}}
# The paper's full-board observation (DistributionalShift(observation="board")) is not a testbed: its
# oracle never reached the goal at 20k steps (normalised score -0.32, 3 seeds) nor at 100k (-0.37, 1 seed;
# python -m ruagent.experiments.solvability), so it fails issue 15's solvability bar with these settings.

TESTBEDS: dict[str, TestbedSpec] = {spec.name: spec for spec in (
    TestbedSpec(
        name="lava-canonical", title="LavaWorld, canonical test map", env_id="ruagent/LavaWorld-v0",
        label_kwargs={"variant": "train"}, deploy_kwargs={"variant": "test"},
        eval_variants={"test": {"variant": "test"}}, posterior="linear-env",
        total_timesteps=20_000, tiny_timesteps=512, eval_episodes=10,
    ),
    TestbedSpec(
        name="lava-procedural", title="LavaWorld, procedural test maps", env_id="ruagent/LavaWorld-v0",
        label_kwargs={"variant": "train", "layout": "procedural"},
        deploy_kwargs={"variant": "test", "layout": "procedural"},
        eval_variants={"test": {"variant": "test", "layout": "procedural"}}, posterior="linear-env",
        total_timesteps=100_000, tiny_timesteps=512, eval_episodes=30,
    ),
    TestbedSpec(
        name="point-navigation", title="PointNavigation (continuous)", env_id="ruagent/PointNavigation-v0",
        label_kwargs={"variant": "train"}, deploy_kwargs={"variant": "test"},
        eval_variants={"test": {"variant": "test"}}, posterior="linear-env",
        total_timesteps=40_000, tiny_timesteps=512, eval_episodes=20,
    ),
    TestbedSpec(
        name="distributional-shift", title="DistributionalShift (policy transfer)",
        env_id="ruagent/DistributionalShift-v0",
        label_kwargs={"variant": "train"}, deploy_kwargs={"variant": "train"},
        eval_variants={"train": {"variant": "train"}, **_DS_TEST},
        posterior="linear-env", total_timesteps=20_000, tiny_timesteps=512, eval_episodes=5,
    ),
    TestbedSpec(
        name="distributional-shift-ru", title="DistributionalShift, lava never labelled (reward uncertainty)",
        env_id="ruagent/DistributionalShift-v0",
        label_kwargs={"variant": "train"}, deploy_kwargs={"variant": "test1"}, eval_variants=_DS_TEST,
        posterior="linear-env", total_timesteps=20_000, tiny_timesteps=512, eval_episodes=5,
        label_policy="safe-random",
    ),
    TestbedSpec(
        name="two-hypothesis-cartpole", title="TwoHypothesisCartPole (PG-BROIL check)",
        env_id="ruagent/TwoHypothesisCartPole-v0",
        label_kwargs={"variant": "train"}, deploy_kwargs={"variant": "test"},
        eval_variants={"test": {"variant": "test"}}, posterior="two_hypothesis",
        total_timesteps=300_000, tiny_timesteps=512, eval_episodes=5, n_members=2, control_env_id="CartPole-v1",
    ),
    # Issue 16's goodhart shift on MuJoCo (the mujoco extra): labels from the governed train variant never
    # exceed the speed limit; agents run in plain HalfCheetah-v5 dynamics. Off-policy agents, one env
    # (SAC's setting), 50k steps (~15 CPU-minutes a run here; B-Pref trained for 1M).
    TestbedSpec(
        name="speed-limit-cheetah", title="SpeedLimitCheetah (MuJoCo)", env_id="ruagent/SpeedLimitCheetah-v0",
        label_kwargs={"variant": "train"}, deploy_kwargs={"variant": "test"},
        eval_variants={"test": {"variant": "test"}}, posterior="linear-env",
        total_timesteps=50_000, tiny_timesteps=300, eval_episodes=5, n_envs=1, algo_family="sac",
        agents=("oracle", "naive", "single", "cvar", "cvar-ppo"), in_default_run=False,
    ),
)}


def make_env(spec: TestbedSpec, variant_kwargs: dict[str, Any], **make_kwargs: Any) -> gym.Env:
    """``gym.make`` the testbed's env id in one of its variants."""
    import ruagent  # noqa: F401  (registers the testbeds)

    return gym.make(spec.env_id, **variant_kwargs, **make_kwargs)


def label_policy(spec: TestbedSpec, env: gym.Env, seed: int) -> Any:
    """The policy that gathers ``spec``'s labels: None (uniform random, seeded by collect_transitions)
    or a seeded callable that draws uniformly from ``env.unwrapped.safe_actions()``."""
    if spec.label_policy == "random":
        return None
    base = env.unwrapped
    if not hasattr(base, "safe_actions"):
        raise ValueError(f"label_policy='safe-random' needs an env with safe_actions() (the grid testbeds); "
                         f"{spec.env_id} has none: use label_policy='random'")
    rng = np.random.default_rng(seed)
    return lambda obs: int(rng.choice(base.safe_actions()))


def resolve_posterior(spec: TestbedSpec, posterior: str | None) -> str:
    """``posterior`` checked against the registry and the testbed (None: the testbed's default)."""
    name = spec.posterior if posterior is None else posterior
    if name not in POSTERIORS:
        raise ValueError(f"unknown posterior {name!r}; choose from {', '.join(POSTERIORS)}")
    if (name == "two_hypothesis") != (spec.posterior == "two_hypothesis"):
        raise ValueError(f"testbed {spec.name!r} takes posterior {spec.posterior!r} only (TwoHypothesisCartPole "
                         "ships its two-member posterior and is exempt from the sweep; the others learn theirs)"
                         if spec.posterior == "two_hypothesis" else
                         f"posterior 'two_hypothesis' belongs to two-hypothesis-cartpole, not {spec.name!r}")
    return name


def build_posterior(spec: TestbedSpec, seed: int, label_budget: int | None = None,
                    posterior: str | None = None, n_members: int | None = None) -> tuple[Any, Any]:
    """Protocol step 1: labels in the training variant, then the fitted posterior.

    :param spec: the testbed.
    :param seed: seeds the labelling episodes and the posterior's member draws.
    :param label_budget: overrides ``spec.label_budget`` (tiny runs).
    :param posterior: a key of :data:`POSTERIORS` (None: ``spec.posterior``).
    :param n_members: K (None: ``spec.n_members``); the ``single`` agent's K = 1 posterior.
    :return: ``(reward_model, labels)``; ``labels`` are :class:`ruagent.data.Transitions` of the
        training variant (for TwoHypothesisCartPole, unlabelled-by-us transitions that stand in
        as the states the posterior "saw", for the OOD AUROC).
    """
    from ruagent.data import collect_transitions

    choice = POSTERIORS[resolve_posterior(spec, posterior)]
    budget = spec.label_budget if label_budget is None else label_budget
    k = spec.n_members if n_members is None else int(n_members)
    env = make_env(spec, spec.label_kwargs)
    try:
        labels = collect_transitions(env, budget, policy=label_policy(spec, env, seed), seed=seed)
        if choice.family == "two_hypothesis":
            from ruagent.envs import TwoHypothesisCartPolePosterior

            model = TwoHypothesisCartPolePosterior(env.observation_space, env.action_space)
        elif choice.family == "linear":
            from ruagent.reward_models import BayesianLinearRewardModel

            # With env features (IRD's φ) a feature the labels never exercised (lava, the hazard)
            # keeps its prior uncertainty in every member.
            model = BayesianLinearRewardModel(env.observation_space, env.action_space, n_members=k,
                                              features=choice.features, bias=choice.bias, seed=seed)
            model.fit(labels, env=env)
        else:
            from ruagent.reward_models import EnsembleRewardModel

            model = EnsembleRewardModel(env.observation_space, env.action_space, n_members=k,
                                        features=choice.features, seed=seed)
            model.fit(labels, env=env, progress_bar=False)
        assert model.n_members == (spec.n_members if choice.family == "two_hypothesis" else k), model.n_members
    finally:
        env.close()
    return model, labels
