"""Benchmark: reward-posterior prediction cost on the wrapper's hot path (CPU).

For a 10-member ensemble of 64x64 MLPs on CartPole-v1 transitions, and batch sizes B, times
one ``predict`` call (featuriser + folded numpy/torch forward, what the VecEnv wrapper
calls every step), the featuriser alone, the folded numpy forward, and the same ensemble
through torch (``member_rewards_torch`` under ``torch.inference_mode``), plus the Bayesian
linear model with 256 random Fourier features. Times are process-CPU microseconds per
call (robust on a shared machine; torch runs on one thread here), medians of
``--repeats`` interleaved repeats. Last stdout line: JSON, with ``numpy_vs_torch_b8``
(torch time / numpy time at B=8; > 1 means the numpy path is faster); writes
``results/bench/reward_models.json`` (``--out`` to change).

    python bench/reward_models.py            # about a minute
    python bench/reward_models.py --quick
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import gymnasium as gym
import torch
from _output import output_path

from ruagent.data import collect_transitions
from ruagent.io import atomic_write_text
from ruagent.reward_models import BayesianLinearRewardModel, EnsembleRewardModel

RESULTS = Path(__file__).resolve().parents[1] / "results" / "bench" / "reward_models.json"


def per_call_us(function, n_calls: int) -> float:
    function()  # warm-up (builds caches)
    start = time.process_time()
    for _ in range(n_calls):
        function()
    return (time.process_time() - start) / n_calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON path (default results/bench/reward_models.json; with --quick bench/results/)")
    args = parser.parse_args()
    args.out = output_path(RESULTS, args.quick, args.out)
    repeats, calls = (3, 200) if args.quick else (args.repeats, args.calls)
    torch.set_num_threads(1)

    env = gym.make("CartPole-v1")
    data = collect_transitions(env, 512, seed=0)
    spaces = (env.observation_space, env.action_space)
    ensemble = EnsembleRewardModel(*spaces, n_members=10, hidden_sizes=(64, 64), seed=0)
    ensemble.fit(data, epochs=2 if args.quick else 20, progress_bar=False)
    linear = BayesianLinearRewardModel(*spaces, n_members=10, random_fourier_features=256, seed=0)
    linear.fit(data)

    results: dict[str, float] = {}
    for batch in (8, 256):
        part = data[:batch]
        inputs = (part.obs, part.action, part.next_obs)
        features = ensemble.features(*inputs)
        features_t = torch.from_numpy(features)

        def torch_forward(x=features_t):
            with torch.inference_mode():
                return ensemble.member_rewards_torch(x).numpy()

        arms = {
            "ensemble_predict": lambda inputs=inputs: ensemble.predict(*inputs),
            "featuriser": lambda inputs=inputs: ensemble.features(*inputs),
            "ensemble_forward_folded": lambda x=features: ensemble._predict_features(x),
            "ensemble_forward_torch": torch_forward,
            "linear_rff256_predict": lambda inputs=inputs: linear.predict(*inputs),
        }
        samples: dict[str, list[float]] = {name: [] for name in arms}
        for _ in range(repeats):
            for name, function in arms.items():  # interleaved: drifting load hits every arm
                samples[name].append(per_call_us(function, max(calls * 8 // batch, 20)))
        for name, values in samples.items():
            results[f"{name}_b{batch}_us"] = round(statistics.median(values), 2)
            print(f"B={batch:4d}  {name:26s} {results[f'{name}_b{batch}_us']:10.1f} µs/call")
    speedup = results["ensemble_forward_torch_b8_us"] / results["ensemble_forward_folded_b8_us"]
    results["numpy_vs_torch_b8"] = round(speedup, 2)
    atomic_write_text(args.out, json.dumps(results, indent=2) + "\n")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
