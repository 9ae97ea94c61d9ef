"""Label efficiency: true return of the risk-averse agent vs the number of preference labels.

For each env, budget, query strategy (random vs active) and seed:

1. labels: ``learn_reward_from_preferences`` on the *training* variant (random-policy
   rollouts, synthetic Boltzmann labeller at temperature 1, 25% of the budget at random,
   the rest in 4 active rounds);
2. optimise: :class:`ruagent.agents.RiskPPO` (CVaR over members) on the *deployment* variant
   through :class:`ruagent.RewardUncertaintyWrapper` (the agent never sees the env reward);
3. evaluate: mean true return over 20 deterministic episodes of the deployment variant.

Envs: LavaWorld (train map without lava -> test map with lava; Bayesian linear model on
IRD's terrain features, active = expected information gain under the Laplace posterior)
and CartPole-v1 (ensemble of 5 MLPs on transitions, active = ensemble disagreement).

``--schedule online`` asks only a quarter of the budget in step 1 and the rest from the
agent's own rollouts in the deployment variant while it trains (Christiano et al. 2017;
:class:`ruagent.preferences.PreferenceLearningCallback`, a round every 1/8 of training).

Output: ``--out`` folder with ``label_efficiency.json`` (every run) and
``label_efficiency.png`` (mean and 95% t-interval over seeds). Last line: JSON summary.
``--merge A.json B.json ...`` combines runs made in separate processes (e.g. one per core).

    python bench/label_efficiency.py            # 25..400 labels, 5 seeds, both envs: ~1 h on one core
    python bench/label_efficiency.py --quick    # 25 and 100 labels, 2 seeds, short training
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import scipy.stats
import torch
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv
from tqdm.auto import tqdm

import ruagent  # noqa: F401  (registers the testbeds)
from ruagent.agents import RiskPPO
from ruagent.io import atomic_write, atomic_write_text
from ruagent.preferences.learn import learn_reward_from_preferences
from ruagent.preferences.online import PreferenceLearningCallback
from ruagent.preferences.session import LabelLog
from ruagent.reward_models.ensemble import EnsembleRewardModel
from ruagent.reward_models.linear import BayesianLinearRewardModel
from ruagent.wrappers import RewardUncertaintyWrapper

#: share of the budget asked before training with ``--schedule online`` (Christiano et al. 2017 ask some up front)
ONLINE_INITIAL_FRACTION = 0.25
ENVS = {
    "LavaWorld": {
        "label_env": "ruagent/LavaWorld-train-v0",
        "deploy_env": "ruagent/LavaWorld-test-v0",
        "family": "linear",
        "active": "info_gain",
        "segment_length": 10,  # episodes last at most 50 steps
        "timesteps": (40_000, 20_000),  # (full, quick): with the true reward RiskPPO needs ~20k (10k: -5.0, 20k: 1.1)
    },
    "CartPole": {
        "label_env": "CartPole-v1",
        "deploy_env": "CartPole-v1",
        "family": "ensemble",
        "active": "disagreement",
        "segment_length": 25,
        "timesteps": (50_000, 15_000),
    },
}


def make_reward_model(family: str, env: gym.Env, seed: int):
    if family == "linear":  # IRD's setting: a linear reward on the env's terrain features
        return BayesianLinearRewardModel(
            env.observation_space, env.action_space, n_members=10, features="env", seed=seed
        )
    return EnsembleRewardModel(env.observation_space, env.action_space, n_members=5, hidden_sizes=(32, 32), seed=seed)


def run_one(
    name: str,
    budget: int,
    query: str,
    seed: int,
    quick: bool,
    standardise: bool = False,
    temperature: float = 1.0,
    schedule: str = "upfront",
) -> dict:
    spec = ENVS[name]
    start = time.perf_counter()
    label_env = gym.make(spec["label_env"])
    reward_model = make_reward_model(spec["family"], label_env, seed)
    fitter_kwargs = {"epochs": 50} if spec["family"] == "ensemble" else None
    # online: a quarter of the budget before training, the rest from the agent's own rollouts
    upfront = budget if schedule == "upfront" else max(1, round(ONLINE_INITIAL_FRACTION * budget))
    session = LabelLog()
    reward_model, log = learn_reward_from_preferences(
        label_env,
        reward_model,
        budget=upfront,
        query=query,
        segment_length=spec["segment_length"],
        temperature=temperature,
        session=session,
        seed=seed,
        progress_bar=False,
        fitter_kwargs=fitter_kwargs,
    )
    history = list(log.meta["history"])
    deploy = DummyVecEnv(
        [
            lambda: RewardUncertaintyWrapper(Monitor(gym.make(spec["deploy_env"])), reward_model, mode="mean")
            for _ in range(4)
        ]
    )
    # --standardise: members' constant offsets (unidentified by preferences between equal-length
    # segments) carry no risk signal; RiskPPO can map each member to its label-data units
    agent = RiskPPO(
        "MlpPolicy",
        deploy,
        risk="cvar",
        risk_kwargs={"alpha": 0.3},
        standardise_rewards=standardise,
        n_steps=256,
        batch_size=256,
        seed=seed,
        device="cpu",
    )
    timesteps = spec["timesteps"][1 if quick else 0]
    callback = None
    if schedule == "online":
        callback = PreferenceLearningCallback(
            reward_model,
            budget=budget,
            query=query,
            segment_length=spec["segment_length"],
            update_every=timesteps // 8,
            initial_fraction=upfront / budget,
            temperature=temperature,
            session=session,
            fitter_kwargs=fitter_kwargs,
            seed=seed,
        )
    agent.learn(timesteps, callback=callback)
    if callback is not None and callback.last_metrics:
        history.append(callback.last_metrics)
    eval_env = Monitor(gym.make(spec["deploy_env"]))
    returns, _ = evaluate_policy(agent, eval_env, n_eval_episodes=20, deterministic=True, return_episode_rewards=True)
    return {
        "env": name,
        "budget": budget,
        "query": query,
        "schedule": schedule,
        "seed": seed,
        "labels": session.n_labels,
        "fit_accuracy": history[-1]["accuracy"],
        "true_return": float(np.mean(returns)),
        "standardise": standardise,
        "temperature": temperature,
        "seconds": round(time.perf_counter() - start, 1),
    }


def interval(values: list[float]) -> tuple[float, float, float]:
    """Mean and 95% Student-t interval over seeds."""
    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, mean, mean
    half = float(scipy.stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values)))
    return mean, mean - half, mean + half


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted({r["env"] for r in results})
    fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 4), squeeze=False)
    for ax, name in zip(axes[0], names):
        for arm in sorted({r["arm"] for r in results if r["env"] == name}):
            rows = [r for r in results if r["env"] == name and r["arm"] == arm]
            budgets = sorted({r["budget"] for r in rows})
            stats = [interval([r["true_return"] for r in rows if r["budget"] == b]) for b in budgets]
            means, lows, highs = (np.array(column) for column in zip(*stats))
            ax.plot(budgets, means, marker="o", label=arm)
            ax.fill_between(budgets, lows, highs, alpha=0.2)
        ax.set_xscale("log", base=2)
        ticks = sorted({r["budget"] for r in results if r["env"] == name})
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("preference labels")
        ax.set_ylabel("true return (deployment)")
        ax.set_title(f"{name}: RiskPPO (CVaR 0.3)")
        ax.legend()
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="25 and 100 labels, 2 seeds, short agent training")
    parser.add_argument("--envs", nargs="+", default=list(ENVS), choices=list(ENVS))
    parser.add_argument("--budgets", type=int, nargs="+", default=None)
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--temperature", type=float, default=1.0, help="labeller's Boltzmann temperature (and the fit's)"
    )
    parser.add_argument(
        "--standardise", action="store_true", help="RiskPPO standardise_rewards: members in label-data units"
    )
    parser.add_argument(
        "--schedule",
        choices=("upfront", "online"),
        default="upfront",
        help="all labels before training, or a quarter before and the rest from the agent's rollouts",
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument(
        "--merge", type=Path, nargs="+", metavar="JSON", help="no runs: combine earlier label_efficiency.json files"
    )
    args = parser.parse_args()
    if args.merge:
        results = [row for path in args.merge for row in json.loads(path.read_text())]
        atomic_write_text(args.out / "label_efficiency.json", json.dumps(results, indent=1))
        summarise(results, args.out)
        return
    torch.set_num_threads(args.threads)
    budgets = args.budgets or ([25, 100] if args.quick else [25, 50, 100, 200, 400])
    n_seeds = args.seeds or (2 if args.quick else 5)
    runs = [
        (name, budget, query, seed)
        for name in args.envs
        for budget in budgets
        for query in ("random", ENVS[name]["active"])
        for seed in range(n_seeds)
    ]
    print(f"{len(runs)} runs ({'quick' if args.quick else 'full'}), load average {os.getloadavg()[0]:.1f}")
    results = []
    for name, budget, query, seed in tqdm(runs, desc="label efficiency"):
        row = run_one(
            name,
            budget,
            query,
            seed,
            args.quick,
            standardise=args.standardise,
            temperature=args.temperature,
            schedule=args.schedule,
        )
        results.append({**row, "quick": args.quick})
        tqdm.write(json.dumps(results[-1]))
        atomic_write_text(args.out / "label_efficiency.json", json.dumps(results, indent=1))
    summarise(results, args.out)


def _arm(row: dict) -> str:
    """The curve a run belongs to: its query strategy, and the schedule when labels were asked during training."""
    schedule = row.get("schedule", "upfront")
    return row["query"] if schedule == "upfront" else f"{row['query']} ({schedule})"


def summarise(results: list[dict], out: Path) -> None:
    """Print mean and 95% interval per env, arm and budget; plot; last line JSON."""
    for row in results:
        row["arm"] = _arm(row)
    plot(results, out / "label_efficiency.png")
    summary: dict = {}
    for name in sorted({r["env"] for r in results}):
        rows = [r for r in results if r["env"] == name]
        for arm in sorted({r["arm"] for r in rows}):
            for budget in sorted({r["budget"] for r in rows if r["arm"] == arm}):
                values = [r["true_return"] for r in rows if (r["arm"], r["budget"]) == (arm, budget)]
                mean, low, high = interval(values)
                summary.setdefault(name, {}).setdefault(arm, {})[budget] = [
                    round(mean, 3),
                    round(low, 3),
                    round(high, 3),
                ]
                print(
                    f"{name:10s} {arm:22s} {budget:4d} labels: true return {mean:7.3f}  95% [{low:.3f}, {high:.3f}]"
                    f"  ({len(values)} seeds)"
                )
    gains = active_gains(results)
    settings = {key: sorted({str(r.get(key)) for r in results}) for key in ("standardise", "temperature", "quick")}
    print(json.dumps({**settings, "true_return_mean_ci": summary, "active_minus_random_all_budgets": gains}))


def active_gains(results: list[dict]) -> dict:
    """Per env and schedule: mean true return of active minus random queries over ALL budgets, with a
    95% percentile bootstrap interval over SEEDS (paired: the two arms' runs of one seed and budget are
    compared, and a seed's differences averaged over budgets are the resampled unit, since the runs of
    one seed share its labels' data and its agent's seed). Printed and returned."""
    gains: dict = {}
    rng = np.random.default_rng(0)
    for name in sorted({r["env"] for r in results}):
        for schedule in sorted({r.get("schedule", "upfront") for r in results if r["env"] == name}):
            rows = [r for r in results if r["env"] == name and r.get("schedule", "upfront") == schedule]
            returns = {(r["query"], r["seed"], r["budget"]): r["true_return"] for r in rows}
            pairs = sorted({(seed, budget) for query, seed, budget in returns if query == "random"}
                           & {(seed, budget) for query, seed, budget in returns if query == ENVS[name]["active"]})
            seeds = sorted({seed for seed, _ in pairs})
            if len(seeds) < 2:
                continue
            per_seed = np.array([
                np.mean([returns[(ENVS[name]["active"], s, b)] - returns[("random", s, b)] for t, b in pairs if t == s])
                for s in seeds
            ])  # (n_seeds,)
            resampled = rng.choice(per_seed, size=(10_000, len(seeds)), replace=True).mean(axis=1)
            low, high = np.percentile(resampled, [2.5, 97.5])
            difference = float(per_seed.mean())
            gains.setdefault(name, {})[schedule] = [round(difference, 3), round(float(low), 3), round(float(high), 3)]
            print(
                f"{name:10s} {schedule:8s} {ENVS[name]['active']} - random, all budgets: {difference:+.3f} "
                f"95% [{low:+.3f}, {high:+.3f}]  (paired over {len(seeds)} seeds, {len(pairs)} run pairs)"
            )
    return gains


if __name__ == "__main__":
    main()
