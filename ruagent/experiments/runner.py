"""One job of the headline experiment: a posterior for (testbed, seed), or one trained agent.

Jobs are independent processes' work (the experiment runs them in a process pool) and
write their results atomically under the output folder, so a killed run keeps every
finished job and a rerun skips them:

```
<out>/runs/<testbed>/seed<k>/posterior.json        OOD AUROC of the posterior per evaluation variant
<out>/runs/<testbed>/seed<k>/reward_model.pt       the posterior (ruagent.load_reward_model)
<out>/runs/<testbed>/seed<k>/labels.npz            its reward labels (ruagent.data.Transitions)
<out>/runs/<testbed>/seed<k>/<agent>/model.zip     the trained SB3 model
<out>/runs/<testbed>/seed<k>/<agent>/result.json   per-episode scores and the goodhart curve
```

A posterior is a deterministic function of (testbed, seed, posterior choice); agent jobs load
the posterior job's ``reward_model.pt`` and run that job first where it has not run (an
ensemble's fit takes minutes, so it is fitted once). Only the JSON files are committed
(results/.gitignore), so a run resumed on a fresh clone refits a finished posterior job's
posterior, checks its labels against the digest in ``posterior.json`` and keeps it. A KL-PPO
job likewise runs its reference job first where needed and reads its ``model.zip``. The
posterior choice (``Job.posterior``, a key of :data:`ruagent.experiments.testbeds.POSTERIORS`)
is recorded in every result; one output folder holds one choice, and a job refuses to reuse a
result of another. Evaluation episodes use seeds disjoint from training (``EVAL_SEED_OFFSET``).
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ruagent.experiments.agents import AGENTS, build_agent, make_training_env, reference_agent, resolve_algo
from ruagent.experiments.testbeds import (
    TESTBEDS,
    TestbedSpec,
    build_posterior,
    load_hyperparams,
    make_env,
    resolve_posterior,
)
from ruagent.io import atomic_write_bytes, atomic_write_text

__all__ = ["EVAL_SEED_OFFSET", "Budget", "Job", "run_job"]

#: Evaluation episodes of seed k start from reset(seed=EVAL_SEED_OFFSET + k): never a training seed.
EVAL_SEED_OFFSET = 10_000
RESULT_SCHEMA = "ruagent.headline.job/1"


@dataclass(frozen=True)
class Budget:
    """How much work each job does: the full run's, or ``tiny`` (the test suite's).

    :param tiny: use each testbed's ``tiny_timesteps``, tiny rollouts and few episodes.
    :param total_timesteps: overrides every testbed's training steps per agent (None: the spec's).
    """

    tiny: bool = False
    total_timesteps: int | None = None

    def timesteps(self, testbed: TestbedSpec) -> int:
        if self.total_timesteps is not None:
            return self.total_timesteps
        return testbed.tiny_timesteps if self.tiny else testbed.total_timesteps

    def hyperparams(self, testbed: TestbedSpec, algo: str = "ppo") -> dict[str, Any]:
        """The committed settings of ``testbed`` for the base algorithm (ppo.yaml or sac.yaml), plus
        ``algo``'s extras (riskppo.yaml, klppo.yaml, risksac.yaml)."""
        base = "sac" if algo in ("sac", "risksac") else "ppo"
        params = load_hyperparams(base, testbed.name)
        if algo == "klppo":
            extras = load_hyperparams("klppo", testbed.name)
            params.update(kl_coef=extras["kl_coef"], init_from_reference=extras.get("init_from_reference", False))
        elif algo != base:
            params.update(load_hyperparams(algo, testbed.name))
        if not self.tiny:
            return params
        if base == "sac":  # a few hundred steps still fill the buffer and take gradient steps
            return {**params, "learning_starts": 64, "batch_size": 32, "buffer_size": 1_000}
        # Tiny runs still do two full PPO updates: rollouts of 8 envs x 32 steps.
        return {**params, "n_steps": 32, "batch_size": 64}

    def eval_episodes(self, testbed: TestbedSpec) -> int:
        return 2 if self.tiny else testbed.eval_episodes

    def label_budget(self, testbed: TestbedSpec) -> int:
        return 200 if self.tiny else testbed.label_budget

    def curve_points(self) -> int:
        """Evaluations along training (the goodhart curve), the last one at the end."""
        return 2 if self.tiny else 8

    def curve_episodes(self, testbed: TestbedSpec) -> int:
        return 1 if self.tiny else min(testbed.eval_episodes, 3)


@dataclass(frozen=True)
class Job:
    """``agent=None``: the posterior job of (testbed, seed); else train and score that agent.

    ``posterior``: a key of :data:`ruagent.experiments.testbeds.POSTERIORS` (None: the testbed's default).
    """

    testbed: str
    seed: int
    agent: str | None = None
    posterior: str | None = None

    def folder(self, out: Path) -> Path:
        seed_folder = Path(out) / "runs" / self.testbed / f"seed{self.seed}"
        return seed_folder if self.agent is None else seed_folder / self.agent

    def result_path(self, out: Path) -> Path:
        return self.folder(out) / ("posterior.json" if self.agent is None else "result.json")

    def __str__(self) -> str:
        return f"{self.testbed}/seed{self.seed}/{self.agent or 'posterior'}"


def run_job(job: Job, out: str | Path, budget: Budget) -> Path:
    """Run ``job`` (unless its result exists) and return the path of its result JSON."""
    out = Path(out)
    path = job.result_path(out)
    testbed = TESTBEDS[job.testbed]
    posterior = resolve_posterior(testbed, job.posterior)
    if path.is_file():
        found = json.loads(path.read_text()).get("posterior", testbed.posterior)
        if found != posterior:
            raise ValueError(f"{path} holds a result with posterior {found!r}, not {posterior!r}: one output folder "
                             "holds one posterior choice; pass a new --out for this one")
        return path
    import torch

    torch.set_num_threads(1)  # small MLPs: one thread each, jobs in parallel (rl-zoo3 does the same)
    started = time.perf_counter()
    if job.agent is None:
        reward_model, labels = build_posterior(testbed, job.seed, budget.label_budget(testbed), posterior)
        result = _posterior_result(testbed, job, reward_model, labels, budget, out)
    else:
        agent = AGENTS[job.agent]
        if agent.n_members is None:
            reward_model = load_posterior(testbed, job, out, budget)
        else:  # the agent's own K (the single-model baseline): same labels and seed, fitted here
            reward_model, _ = build_posterior(testbed, job.seed, budget.label_budget(testbed), posterior,
                                              n_members=agent.n_members)
        ref_policy = None
        if resolve_algo(agent, testbed) == "klppo":
            ref_job = Job(job.testbed, job.seed, reference_agent(testbed), job.posterior)
            ref_policy = run_job(ref_job, out, budget).parent / "model.zip"
        result = _agent_result(testbed, job, reward_model, budget, out, ref_policy)
    result.update(schema=RESULT_SCHEMA, testbed=job.testbed, seed=job.seed, agent=job.agent, posterior=posterior,
                  wall_seconds=time.perf_counter() - started)
    atomic_write_text(path, json.dumps(result, indent=1))
    return path


# ---------------------------------------------------------------------------- posterior job
def _posterior_result(testbed: TestbedSpec, job: Job, reward_model: Any, labels: Any, budget: Budget,
                      out: Path) -> dict[str, Any]:
    """Save the posterior and its labels; OOD AUROC of its member std per evaluation variant."""
    from ruagent.cli.eval_posterior import ood_auroc  # evaluate.py's definition, so both report the same number
    from ruagent.rollouts import run_episodes

    folder = job.folder(out)
    _save_posterior(folder, reward_model, labels)
    ood = {}
    for variant, kwargs in testbed.eval_variants.items():
        env = make_env(testbed, kwargs)
        # Random-policy episodes cover the variant's states whatever the agents learnt.
        random = run_episodes(env, None, max(10, 2 * budget.eval_episodes(testbed)), reward_model=reward_model,
                              seed=EVAL_SEED_OFFSET + job.seed)
        env.close()
        ood[variant] = ood_auroc(reward_model, labels, [random], random, seed=job.seed)
    return {"n_labels": len(labels), "labels_sha256": labels_digest(labels), "n_members": reward_model.n_members,
            "ood": ood}


def labels_digest(labels: Any) -> str:
    """SHA-256 of the label rewards: identifies a label set (a refit must draw the same one)."""
    return hashlib.sha256(np.ascontiguousarray(labels.reward, dtype=np.float32).tobytes()).hexdigest()


def load_posterior(testbed: TestbedSpec, job: Job, out: Path, budget: Budget) -> Any:
    """The posterior job's saved posterior for ``job`` (running that job first if it has not run,
    refitting it where only its ``posterior.json`` is left)."""
    import ruagent

    posterior_job = Job(job.testbed, job.seed, None, job.posterior)
    result_path = run_job(posterior_job, out, budget)
    folder = result_path.parent
    if not (folder / "reward_model.pt").is_file():
        _refit_posterior(testbed, job, json.loads(result_path.read_text()), folder, budget)
    env = make_env(testbed, testbed.label_kwargs)
    try:
        return ruagent.load_reward_model(folder / "reward_model.pt", env=env)
    finally:
        env.close()


def _refit_posterior(testbed: TestbedSpec, job: Job, recorded: dict[str, Any], folder: Path, budget: Budget) -> None:
    """Refit the posterior of a finished posterior job whose weights are gone (a fresh clone of
    committed results) and save it, after checking that the refit drew the recorded labels."""
    reward_model, labels = build_posterior(testbed, job.seed, budget.label_budget(testbed),
                                           resolve_posterior(testbed, job.posterior))
    expected = recorded.get("labels_sha256")  # absent in files written before it was recorded
    if len(labels) != recorded["n_labels"] or (expected is not None and labels_digest(labels) != expected):
        raise RuntimeError(f"{folder / 'reward_model.pt'} is missing and refitting drew other labels than "
                           f"{folder / 'posterior.json'} records: delete that posterior.json (and its agents' "
                           "results) to rerun the seed from scratch")
    _save_posterior(folder, reward_model, labels)


def _save_posterior(folder: Path, reward_model: Any, labels: Any) -> None:
    """The files agent jobs load (git-ignored: a fresh clone has only ``posterior.json``)."""
    reward_model.save(folder / "reward_model.pt")
    labels.save(folder / "labels.npz")


# ---------------------------------------------------------------------------- agent job
def _agent_result(testbed: TestbedSpec, job: Job, reward_model: Any, budget: Budget, out: Path,
                  ref_policy: Path | None = None) -> dict[str, Any]:
    from ruagent.callbacks import GoodhartEvalCallback

    agent = AGENTS[job.agent]
    algo = resolve_algo(agent, testbed)
    venv = make_training_env(testbed, agent, reward_model, job.seed)
    hyperparams = {**budget.hyperparams(testbed, algo), **agent.algo_kwargs}
    model = build_agent(agent, venv, hyperparams, job.seed, ref_policy=ref_policy, algo=algo)
    total = budget.timesteps(testbed)
    curve_env = make_env(testbed, testbed.deploy_kwargs)
    curve = GoodhartEvalCallback(
        curve_env, reward_model=reward_model, eval_freq=max(1, total // budget.curve_points()),
        n_eval_episodes=budget.curve_episodes(testbed), seed=EVAL_SEED_OFFSET + job.seed,
    )
    model.learn(total, callback=curve)
    curve_env.close()
    buffer = io.BytesIO()
    model.save(buffer)  # through memory, so the zip on disk is written atomically
    atomic_write_bytes(job.folder(out) / "model.zip", buffer.getvalue())
    evaluation = {
        variant: _score(testbed, kwargs, model, reward_model, budget.eval_episodes(testbed), job.seed)
        for variant, kwargs in testbed.eval_variants.items()
    }
    venv.close()
    return {
        "timesteps": int(model.num_timesteps),
        "algo": algo,
        "n_members": int(reward_model.n_members),
        "hyperparams": hyperparams,
        "curve": [{"step": step, "true_return": true, "proxy_return": proxy}
                  for step, true, proxy in curve.evaluations],
        "evaluation": evaluation,
    }


def _score(testbed: TestbedSpec, variant_kwargs: dict[str, Any], model: Any, reward_model: Any, n_episodes: int,
           seed: int) -> dict[str, list[float]]:
    """Per-episode scores of the deterministic policy in one variant, by the env's own reward."""
    from ruagent.rollouts import run_episodes

    env = make_env(testbed, variant_kwargs)
    episodes = run_episodes(env, model, n_episodes, reward_model=reward_model, seed=EVAL_SEED_OFFSET + seed,
                            solve_optimal=True)
    env.close()
    lengths = episodes.lengths().astype(np.float64)
    side_effect_steps = np.bincount(episodes.episode_ids, weights=episodes.side_effects.astype(np.float64),
                                    minlength=episodes.n_episodes)
    per_episode = {
        "true_return": episodes.true_returns(),
        "proxy_return": episodes.proxy_returns(),
        "goodhart_gap": episodes.goodhart_gaps(),
        "side_effect": episodes.side_effect_episodes(),
        "side_effect_steps": side_effect_steps / lengths,  # share of the episode's steps: CartPole's "time right"
        "episode_length": lengths,
    }
    if episodes.optimal_returns is not None:
        per_episode["optimal_return"] = episodes.optimal_returns
    if testbed.posterior == "two_hypothesis":
        # The posterior's members are the hypotheses: the return under each, beside the episode length
        # and the share of steps right of centre (side_effect_steps in the test variant).
        right = np.asarray(episodes.next_obs)[:, 0] > 0  # the cart position x of the state entered
        per_episode["right_of_centre"] = np.bincount(episodes.episode_ids, weights=right.astype(np.float64),
                                                     minlength=episodes.n_episodes) / lengths
        for k, rewards in enumerate(episodes.member_rewards):
            per_episode[f"return_hypothesis{k}"] = np.bincount(episodes.episode_ids, weights=rewards,
                                                               minlength=episodes.n_episodes)
    assert all(len(values) == n_episodes for values in per_episode.values())
    return {name: [float(v) for v in values] for name, values in per_episode.items()}
