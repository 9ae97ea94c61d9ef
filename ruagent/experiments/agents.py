"""The headline experiment's agents: how each one sees the reward and what it optimises.

Every agent but the oracle and the reference trains through
:class:`ruagent.VecRewardUncertaintyWrapper` and never sees the env's reward (step 2 of the
experiment protocol, docs/cli.md):

=================  ===========================================================================
``oracle``         SB3 PPO on the env's true reward, no wrapper: the upper reference
``reference``      SB3 PPO on the true reward in the *training* (labelling) variant: KL-PPO's π_ref,
                   the behaviour the labels came from (as the supervised model is to RLHF)
``naive``          PPO on the posterior-mean reward
``lcb``            PPO on mean − 1·std per step (per-step pessimism)
``step-worst``     PPO on the worst member's reward per step
``sample``         PPO on one member drawn per episode (posterior/Thompson sampling)
``cvar``           RiskPPO, CVaR_α of the members' returns, α = 0.05
``worst``          RiskPPO, the worst member's return
``broil``          RiskPPO, BROIL λ·mean + (1 − λ)·CVaR_α, λ = 0.5, α = 0.05
``kl-ppo``         :class:`ruagent.agents.KLPPO` on the posterior mean − β·KL(π ‖ π_ref) per step,
                   π_ref the ``reference`` agent's policy (the ``oracle``'s where the training and
                   deployment variants coincide), β from ``klppo.yaml`` (chosen on the training variant)
``kl-ppo-<β>``     KL-PPO with β fixed to another value (tier 3's sweep: ``kl-ppo-0.01``, ``kl-ppo-0.1``,
                   ``kl-ppo-10``): was KL-PPO's failure a matter of β?
``single``         one reward model: PPO on the reward of a K = 1 posterior (the usual reward-learning
                   pipeline, a point estimate that extrapolates with full confidence)
``cvar-ppo``       RiskPPO CVaR_α on a testbed whose other agents are off-policy (RiskPPO beside RiskSAC)
``drift``          PPO on the testbed's control env (TwoHypothesisCartPole: CartPole-v1, whose reward
                   ignores the side), scored like the others: where plain PPO ends up by itself
=================  ===========================================================================

The names are roles; the algorithm is the testbed's family (:func:`resolve_algo`). On an off-policy
testbed (``algo_family="sac"``, SpeedLimitCheetah) the oracle is SB3 SAC, the RiskPPO agents become
:class:`ruagent.agents.RiskSAC` with their measure, the per-step modes (``naive``, ``lcb``, ``sample``,
``single``) train SAC on the wrapper's scalar, and KL-PPO does not run. So ``naive`` is SAC on the
analytic posterior mean, as PPO is on the on-policy testbeds (issue 14: the naive baseline uses the
family's posterior mean), not ``RiskSAC(risk="mean")``, whose average over K draws carries the draws'
sampling noise on never-labelled weights (with K = 1 and ``risk="mean"`` RiskSAC is SAC, tested).

KL-PPO is the RLHF baseline of issue 15 (Ziegler et al., 2019; Korbak, Perez & Buckley, 2022;
Gao, Schulman & Hilton, 2023): it stays near the behaviour that was labelled rather than
reasoning about which rewards are uncertain. Its β is selected once per testbed by
:mod:`ruagent.experiments.kl_selection` and then fixed.

λ = 0.5 and α = 0.05 are PG-BROIL's defaults (Javed et al., ICML 2021; Brown, Niekum &
Petrik, NeurIPS 2020). RiskPPO reads all K member rewards from ``info["reward_members"]``;
its wrapper's scalar reward (the mean) is only logged.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ruagent.experiments.testbeds import TestbedSpec, make_env

__all__ = [
    "AGENTS",
    "DEFAULT_RUN_AGENTS",
    "KL_SWEEP",
    "TIER1_AGENTS",
    "TIER2_AGENTS",
    "TIER3_AGENTS",
    "AgentSpec",
    "agents_for",
    "build_agent",
    "make_training_env",
    "reference_agent",
    "resolve_algo",
]


@dataclasses.dataclass(frozen=True)
class AgentSpec:
    """One agent of the headline experiment.

    :param name: short key (folder names, ``--agents``, table rows).
    :param algo: ``"ppo"`` (stable_baselines3.PPO), ``"riskppo"`` (:class:`ruagent.agents.RiskPPO`) or
        ``"klppo"`` (:class:`ruagent.agents.KLPPO`); also the hyperparameter file its extras come from.
    :param mode: the wrapper's per-step reward mode; None trains on the env's reward (oracle).
    :param risk: RiskPPO's risk measure (a :data:`ruagent.risk.RISK_MEASURES` name), or None.
    :param risk_kwargs: the measure's parameters.
    :param wrapper_kwargs: extra :class:`ruagent.VecRewardUncertaintyWrapper` arguments.
    :param description: one line for the docs and the table legend.
    :param train_variant: ``"deploy"`` (the testbed's deployment variant, the protocol), ``"label"``
        (its training variant: the reference policy) or ``"control"`` (the testbed's ``control_env_id``).
    :param n_members: K of the agent's own posterior (fitted on the same labels, same seed); None: the
        testbed's posterior.
    :param family: the agent family it always uses (``"ppo"``: ``cvar-ppo``); None: the testbed's.
    :param algo_kwargs: settings that override the testbed's committed hyperparameters for this agent
        (``{"kl_coef": 10.0}``: the KL sweep).
    """

    name: str
    algo: str
    mode: str | None
    description: str
    risk: str | None = None
    risk_kwargs: dict[str, float] = dataclasses.field(default_factory=dict)
    wrapper_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    train_variant: str = "deploy"
    n_members: int | None = None
    family: str | None = None
    algo_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.algo not in ("ppo", "riskppo", "klppo"):
            raise ValueError(f"algo must be 'ppo', 'riskppo' or 'klppo', got {self.algo!r}")
        if self.train_variant not in ("deploy", "label", "control"):
            raise ValueError(f"train_variant must be 'deploy', 'label' or 'control', got {self.train_variant!r}")
        if (self.algo == "riskppo") != (self.risk is not None):
            raise ValueError(f"agent {self.name!r}: a risk measure goes with algo='riskppo' and only with it")
        if self.algo == "riskppo" and self.mode is None:
            raise ValueError(f"agent {self.name!r}: RiskPPO needs the posterior wrapper (set mode)")
        if self.family not in (None, "ppo", "sac"):
            raise ValueError(f"agent {self.name!r}: family must be None, 'ppo' or 'sac', got {self.family!r}")
        if self.n_members is not None and (self.n_members < 1 or self.mode is None):
            raise ValueError(f"agent {self.name!r}: n_members needs a posterior (set mode) and must be >= 1")
        if "kl_coef" in self.algo_kwargs and self.algo != "klppo":
            raise ValueError(f"agent {self.name!r}: kl_coef is KL-PPO's setting (algo='klppo'), not {self.algo!r}'s")


#: PG-BROIL's defaults.
BROIL_LAMBDA, RISK_ALPHA = 0.5, 0.05
#: tier 3's KL coefficients beside klppo.yaml's chosen one (1.0 on the headline testbeds, the upper end of
#: the selection grid: 10 asks whether a still larger β would have helped)
KL_SWEEP = (0.01, 0.1, 10.0)

AGENTS: dict[str, AgentSpec] = {spec.name: spec for spec in (
    AgentSpec("oracle", "ppo", None, "PPO on the true reward (no wrapper): upper reference"),
    AgentSpec("reference", "ppo", None, "PPO on the true reward in the training variant: KL-PPO's reference",
              train_variant="label"),
    AgentSpec("naive", "ppo", "mean", "PPO on the posterior-mean reward"),
    AgentSpec("lcb", "ppo", "lcb", "PPO on mean - 1 std per step", wrapper_kwargs={"lcb_c": 1.0}),
    AgentSpec("step-worst", "ppo", "worst", "PPO on the worst member's reward per step"),
    AgentSpec("sample", "ppo", "sample", "PPO on one posterior member drawn per episode"),
    AgentSpec("cvar", "riskppo", "mean", f"RiskPPO, CVaR({RISK_ALPHA}) of member returns",
              risk="cvar", risk_kwargs={"alpha": RISK_ALPHA}),
    AgentSpec("worst", "riskppo", "mean", "RiskPPO, worst member return", risk="worst"),
    AgentSpec("broil", "riskppo", "mean", f"RiskPPO, BROIL(lambda={BROIL_LAMBDA}, alpha={RISK_ALPHA})",
              risk="broil", risk_kwargs={"lam": BROIL_LAMBDA, "alpha": RISK_ALPHA}),
    AgentSpec("kl-ppo", "klppo", "mean", "PPO on the posterior mean - beta KL(pi || reference) per step"),
    # mode "sample" with K = 1 is that one member's reward ("mean" would be the linear family's analytic
    # posterior mean, which is the naive agent's)
    AgentSpec("single", "ppo", "sample", "one reward model: the reward of a K = 1 posterior", n_members=1),
    AgentSpec("cvar-ppo", "riskppo", "mean", f"RiskPPO, CVaR({RISK_ALPHA}) of member returns (beside off-policy "
              "agents)", risk="cvar", risk_kwargs={"alpha": RISK_ALPHA}, family="ppo"),
    AgentSpec("drift", "ppo", None, "PPO on the control env's reward (side-indifferent CartPole): the drift "
              "control", train_variant="control"),
    *(AgentSpec(f"kl-ppo-{beta:g}", "klppo", "mean", f"KL-PPO with beta = {beta:g} (tier 3's sweep)",
                algo_kwargs={"kl_coef": beta}) for beta in KL_SWEEP),
)}

#: issue 15's tier 1 (the default posterior, every testbed); kl-ppo also runs its reference
TIER1_AGENTS = ("oracle", "naive", "cvar", "worst", "lcb", "kl-ppo", "sample")
#: tier 2 (the posterior family x features sweep)
TIER2_AGENTS = ("naive", "cvar")
#: tier 3 (BROIL and the KL coefficient sweep, beside the mean agent, CVaR and the chosen β)
TIER3_AGENTS = ("naive", "cvar", "broil", "kl-ppo", *(f"kl-ppo-{beta:g}" for beta in KL_SWEEP))


#: the agents of an on-policy testbed that does not list its own (``drift`` joins where there is a control env)
_DEFAULT_AGENTS = tuple(name for name in AGENTS if name not in ("cvar-ppo", "drift"))
#: the agents a run trains when none are named: all but the sweep variants (``algo_kwargs``), which run
#: only when named (tier 3)
DEFAULT_RUN_AGENTS = tuple(name for name, spec in AGENTS.items() if not spec.algo_kwargs)


def agents_for(testbed: TestbedSpec) -> tuple[str, ...]:
    """The agents that run on ``testbed``: its ``agents``, or every on-policy agent but ``cvar-ppo``, with
    ``drift`` where the testbed has a control env."""
    if testbed.agents is not None:
        return testbed.agents
    return _DEFAULT_AGENTS + (("drift",) if testbed.control_env_id else ())


def resolve_algo(agent: AgentSpec, testbed: TestbedSpec) -> str:
    """The algorithm ``agent`` trains with on ``testbed``: ``ppo``, ``riskppo``, ``klppo``, ``sac`` or ``risksac``
    (also the hyperparameter file of its extras)."""
    family = agent.family or testbed.algo_family
    if family == "ppo":
        return agent.algo
    if agent.algo == "klppo":
        raise ValueError(f"agent {agent.name!r} (KL-PPO) is on-policy; testbed {testbed.name!r} trains off-policy "
                         f"agents: choose from {', '.join(agents_for(testbed))}")
    return "risksac" if agent.algo == "riskppo" else "sac"


def reference_agent(testbed: TestbedSpec) -> str:
    """The agent whose policy is KL-PPO's π_ref: ``reference`` (PPO on the truth in the training variant),
    or the ``oracle`` where the agents train in the training variant anyway (the same run)."""
    return "oracle" if testbed.label_kwargs == testbed.deploy_kwargs else "reference"


def make_training_env(testbed: TestbedSpec, agent: AgentSpec, reward_model: Any, seed: int) -> Any:
    """The VecEnv ``agent`` trains in: the deployment variant, Monitor inside each sub-env (so
    episode statistics are the true return), the posterior wrapper outside (none for the oracle)."""
    from stable_baselines3.common.env_util import make_vec_env

    if agent.train_variant == "control":
        if testbed.control_env_id is None:
            raise ValueError(f"agent {agent.name!r} trains in the testbed's control env; {testbed.name!r} has none")
        return make_vec_env(testbed.control_env_id, n_envs=testbed.n_envs, seed=seed)
    variant = testbed.label_kwargs if agent.train_variant == "label" else testbed.deploy_kwargs
    venv = make_vec_env(lambda: make_env(testbed, variant), n_envs=testbed.n_envs, seed=seed)
    if agent.mode is None:
        return venv
    from ruagent.wrappers import VecRewardUncertaintyWrapper

    return VecRewardUncertaintyWrapper(venv, reward_model, mode=agent.mode, seed=seed, **agent.wrapper_kwargs)


def build_agent(agent: AgentSpec, venv: Any, hyperparams: dict[str, Any], seed: int,
                ref_policy: Any = None, algo: str | None = None) -> Any:
    """An untrained SB3 model for ``agent`` on ``venv`` (one CPU device, no verbosity).

    :param hyperparams: the algorithm's keyword arguments (PPO's or SAC's, plus the extras of RiskPPO,
        KLPPO or RiskSAC).
    :param ref_policy: KL-PPO's reference (a saved PPO model.zip); required for ``algo="klppo"``.
    :param algo: :func:`resolve_algo`'s answer for the testbed (None: ``agent.algo``, the on-policy family).
    """
    algo = agent.algo if algo is None else algo
    kwargs = {"seed": seed, "device": "cpu", "verbose": 0, **hyperparams}
    if algo == "risksac":
        from ruagent.agents import RiskSAC

        return RiskSAC("MlpPolicy", venv, risk=agent.risk or "mean", risk_kwargs=agent.risk_kwargs, **kwargs)
    if algo == "sac":
        from stable_baselines3 import SAC

        return SAC("MlpPolicy", venv, **kwargs)
    if algo == "klppo":
        from ruagent.agents import KLPPO

        if ref_policy is None:
            raise ValueError(f"agent {agent.name!r} needs ref_policy= (the reference agent's model.zip)")
        return KLPPO("MlpPolicy", venv, ref_policy=ref_policy, **kwargs)
    if algo == "riskppo":
        from ruagent.agents import RiskPPO

        return RiskPPO("MlpPolicy", venv, risk=agent.risk, risk_kwargs=agent.risk_kwargs, **kwargs)
    from stable_baselines3 import PPO

    return PPO("MlpPolicy", venv, **kwargs)
