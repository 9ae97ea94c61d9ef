"""Throughput of preference learning: ensemble training pairs/s and candidate pairs scored/s.

Setting: K = 5 members, 500 labelled pairs of 25-step CartPole segments. Figures:

* ``train_pairs_per_s``: pairs × epochs / seconds of :class:`EnsemblePreferenceFitter` (fixed
  epochs, no early stopping, minibatches of ``--batch-size`` pairs), all members in one batched
  computation; a whole ``fit`` is timed (featurising, the prior pass, training, statistics).
* ``autograd_train_pairs_per_s``: the same fitter with the segment returns computed by
  autograd through every step (what ``stacked_segment_returns``' hand-written backward
  replaced), in the same run.
* ``previous_train_pairs_per_s``: the same fit done the way the fitter did it before its
  fast path (each member its own resampled minibatch, every step recomputing the fixed prior
  nets and applying the output layer to every step), in the same run: the speed-up's baseline.
* ``score_pairs_per_s``: candidate pairs scored by ensemble disagreement per second, as the
  active loop uses it: candidates are pairs from a pool of recent segments (500 segments,
  20,000 pairs), so each segment is evaluated once.
* ``score_distinct_pairs_per_s``: the same with no segment shared between pairs (every
  pair costs 2·T fresh transitions): the worst case.
* baselines in the same run: a Python loop over K single-member models (imitation 1.0.1
  loops over members like this, but also goes pair by pair; this baseline keeps the
  flattened-pairs batching, so it isolates the member loop), for training and scoring.

Anchor: imitation 1.0.1 ≈ 430 training and ≈ 645 scoring pairs/s on 2 cores, with
its default reward net (BasicRewardNet, hidden (32, 32)); so ``--hidden`` defaults to (32, 32).
Our ensemble's own default is (64, 64): run ``--hidden 64 64`` for it.
Every figure is the median of ``--repeats`` runs, as wall-clock rates and (``per_cpu_second``)
rates per second of this process's CPU time, which is what a shared machine still measures
fairly. Writes ``results/bench/preferences.json``; the last stdout line is that JSON.

    python bench/preferences.py [--repeats 3] [--epochs 5] [--hidden 32 32] [--threads 2] [--batch-size 64]
    python bench/preferences.py --quick   # tiny sizes, to check the script runs (writes under bench/results/)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from _output import output_path

from ruagent.io import atomic_write_text
from ruagent.preferences.bradley_terry import bradley_terry_loss
from ruagent.preferences.fit import EnsemblePreferenceFitter
from ruagent.preferences.labellers import SyntheticLabeller
from ruagent.preferences.queries import DisagreementQuery
from ruagent.preferences.segments import SegmentPairs, Segments, candidate_pairs, collect_segments, make_pairs
from ruagent.reward_models.ensemble import EnsembleRewardModel
from ruagent.reward_models.training import train_members

RESULTS = Path(__file__).resolve().parents[1] / "results" / "bench" / "preferences.json"
#: process CPU seconds of the last median_time call's median run (the machine is shared, so
#: wall time includes waiting for a core; CPU time is what the work itself took)
LAST_CPU_SECONDS = [0.0]
#: glibc malloc settings recorded with the figures: without them glibc returns the MB-sized activations
#: freed after every step to the OS, and the next step page-faults them back in
MALLOC_ENV = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "LD_PRELOAD")


def median_time(function, repeats: int) -> float:
    """Median wall seconds of ``repeats`` calls; the median CPU seconds go to LAST_CPU_SECONDS."""
    walls, cpus = [], []
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        function()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu_start)
    LAST_CPU_SECONDS[0] = statistics.median(cpus)
    return statistics.median(walls)


def make_model(env: gym.Env, k: int, hidden: tuple[int, ...], seed: int) -> EnsembleRewardModel:
    return EnsembleRewardModel(env.observation_space, env.action_space, n_members=k, hidden_sizes=hidden, seed=seed)


def fitter(model: EnsembleRewardModel, epochs: int, batch_size: int) -> EnsemblePreferenceFitter:
    # fixed work per fit: no held-out split, no early stopping
    return EnsemblePreferenceFitter(
        model, epochs=epochs, batch_size=batch_size, val_fraction=0.0, patience=epochs, seed=0
    )


def previous_fit(fitter: EnsemblePreferenceFitter, pairs: SegmentPairs, labels: np.ndarray) -> None:
    """The fit as done before the fast path, for a same-run baseline (same model, loss, epochs, batch size).

    Each member draws its own minibatch of its resample ((K, b·2·T, D) inputs), and every step
    runs the full member forward (prior nets included) and the output layer on every step.
    """
    model = fitter.reward_model
    flat = model.features_torch(*pairs.flat_transitions())
    n, t, d, k = len(pairs), pairs.segment_length, flat.shape[-1], model.n_members
    features = flat.reshape(n, 2 * t, d)
    mask = torch.as_tensor(pairs.mask, dtype=flat.dtype)
    y = torch.as_tensor(labels)

    def member_loss(indices: torch.Tensor) -> torch.Tensor:  # (K, b) -> (K,)
        b = indices.shape[1]
        returns = fitter.member_returns_torch(features[indices].reshape(k, b * 2 * t, d), mask[indices])
        return bradley_terry_loss(returns, y[indices])

    train_members(
        model.parameters(),
        member_loss,
        n_items=n,
        n_members=k,
        epochs=fitter.epochs,
        batch_size=fitter.batch_size,
        lr=fitter.lr,
        val_fraction=0.0,
        patience=fitter.epochs,
        generator=fitter.generator,
        progress_bar=False,
    )
    model.set_reward_statistics(flat.numpy())  # as before: a second full forward, through the numpy path
    with torch.no_grad():
        fitter.member_returns_torch(flat, mask)  # the metrics' full forward


def use_autograd_segment_returns(model: EnsembleRewardModel) -> None:
    """Route the model's segment returns through autograd over every step (the same-run baseline)."""

    def segment_returns(features: torch.Tensor, mask: torch.Tensor, workspace: object = None) -> torch.Tensor:
        rewards = model.trainable_rewards_torch(features)  # (K, S·T): every layer, every step
        return (rewards.reshape(model.n_members, *mask.shape) * mask).sum(dim=-1)

    model.trainable_segment_returns_torch = segment_returns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--pairs", type=int, default=500)
    parser.add_argument("--segment-length", type=int, default=25)
    parser.add_argument("--hidden", type=int, nargs="+", default=[32, 32], help="the anchor's net; ours is 64 64")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64, help="pairs per gradient step")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON path (default results/bench/preferences.json; with --quick bench/results/)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check the script runs")
    args = parser.parse_args()
    out = output_path(RESULTS, args.quick, args.out)
    # candidate pairs with no segment shared (the worst-case scoring figure), and pool pairs scored
    n_distinct, n_candidates = 10_000, 20_000
    if args.quick:
        args.members, args.pairs, args.epochs, args.repeats = 2, 50, 1, 1
        n_distinct, n_candidates = 100, 1_000
    torch.set_num_threads(args.threads)
    k, n_pairs, t, hidden = args.members, args.pairs, args.segment_length, tuple(args.hidden)

    env = gym.make("CartPole-v1")
    pool = collect_segments(env, 2 * (n_pairs + n_distinct), t, seed=0)  # distinct segments for every measurement
    rng = np.random.default_rng(0)
    pairs = make_pairs(pool[: 2 * n_pairs], n_pairs, rng)
    labels = SyntheticLabeller(seed=0).label(pairs)
    print(
        f"K={k}, {n_pairs} pairs of {t}-step segments, hidden {hidden}, {args.threads} torch threads, "
        f"minibatches of {args.batch_size} pairs, "
        f"load average {os.getloadavg()[0]:.1f}"
    )

    # ---------------------------------------------------------------- training
    batched = fitter(make_model(env, k, hidden, 0), args.epochs, args.batch_size)
    batched.fit(pairs, labels)  # warm-up: normalisation, allocator
    train_s = median_time(lambda: batched.fit(pairs, labels), args.repeats)
    train_pairs_per_s = n_pairs * args.epochs / train_s
    train_cpu = n_pairs * args.epochs / LAST_CPU_SECONDS[0]
    autograd = fitter(make_model(env, k, hidden, 0), args.epochs, args.batch_size)
    use_autograd_segment_returns(autograd.reward_model)
    autograd.fit(pairs, labels)
    autograd_pairs_per_s = n_pairs * args.epochs / median_time(lambda: autograd.fit(pairs, labels), args.repeats)
    autograd_cpu = n_pairs * args.epochs / LAST_CPU_SECONDS[0]
    previous = fitter(make_model(env, k, hidden, 0), args.epochs, args.batch_size)
    previous.fit(pairs, labels)  # the same normalisation and warm-up
    previous_pairs_per_s = (
        n_pairs * args.epochs / median_time(lambda: previous_fit(previous, pairs, labels), args.repeats)
    )
    previous_cpu = n_pairs * args.epochs / LAST_CPU_SECONDS[0]
    singles = [fitter(make_model(env, 1, hidden, seed), args.epochs, args.batch_size) for seed in range(k)]
    for single in singles:
        single.fit(pairs, labels)

    def loop_train() -> None:
        for single in singles:  # one member at a time, as imitation 1.0.1 does
            single.fit(pairs, labels)

    loop_train_pairs_per_s = n_pairs * args.epochs / median_time(loop_train, args.repeats)
    loop_train_cpu = n_pairs * args.epochs / LAST_CPU_SECONDS[0]
    print(
        f"train: batched {train_pairs_per_s:,.0f} pairs/s ({train_cpu:,.0f} per CPU-s); autograd segment returns "
        f"{autograd_pairs_per_s:,.0f} ({autograd_cpu:,.0f}; {train_cpu / autograd_cpu:.1f}x per CPU-s); "
        f"previous fitter "
        f"{previous_pairs_per_s:,.0f} ({previous_cpu:,.0f}; {train_cpu / previous_cpu:.1f}x per CPU-s); "
        f"loop over members {loop_train_pairs_per_s:,.0f} ({loop_train_cpu:,.0f}; {train_cpu / loop_train_cpu:.1f}x)"
    )

    # ---------------------------------------------------------------- scoring
    model = batched.reward_model
    query = DisagreementQuery(model)
    segment_pool = pool[:500]
    index = candidate_pairs(len(segment_pool), n_candidates, rng)
    query.scores(segment_pool, index)  # warm-up
    score_pairs_per_s = n_candidates / median_time(lambda: query.scores(segment_pool, index), args.repeats)
    score_cpu = n_candidates / LAST_CPU_SECONDS[0]
    distinct = Segments.concatenate([pool[2 * n_pairs : 2 * n_pairs + 2 * n_distinct]])
    distinct_index = np.arange(2 * n_distinct).reshape(n_distinct, 2)
    score_distinct = n_distinct / median_time(lambda: query.scores(distinct, distinct_index), args.repeats)
    score_distinct_cpu = n_distinct / LAST_CPU_SECONDS[0]
    single_queries = [DisagreementQuery(s.reward_model) for s in singles]
    distinct_pairs = SegmentPairs.from_segments(distinct, distinct_index)

    def loop_score() -> None:
        for single in single_queries:  # member by member on the same candidates
            single.member_probabilities(distinct, distinct_index)

    loop_score_per_s = n_distinct / median_time(loop_score, args.repeats)
    loop_score_cpu = n_distinct / LAST_CPU_SECONDS[0]
    assert len(distinct_pairs) == n_distinct
    print(
        f"score: pool of 500 segments {score_pairs_per_s:,.0f} pairs/s; distinct segments {score_distinct:,.0f} "
        f"pairs/s; loop over members (distinct) {loop_score_per_s:,.0f} pairs/s "
        f"({score_distinct / loop_score_per_s:.1f}x)"
    )
    results = {
        "train_pairs_per_s": round(train_pairs_per_s),
        "score_pairs_per_s": round(score_pairs_per_s),
        "score_distinct_pairs_per_s": round(score_distinct),
        "autograd_train_pairs_per_s": round(autograd_pairs_per_s),
        "previous_train_pairs_per_s": round(previous_pairs_per_s),
        "loop_train_pairs_per_s": round(loop_train_pairs_per_s),
        "loop_score_pairs_per_s": round(loop_score_per_s),
        "per_cpu_second": {
            "train": round(train_cpu),
            "score": round(score_cpu),
            "score_distinct": round(score_distinct_cpu),
            "autograd_train": round(autograd_cpu),
            "previous_train": round(previous_cpu),
            "loop_train": round(loop_train_cpu),
            "loop_score": round(loop_score_cpu),
        },
        "members": k,
        "pairs": n_pairs,
        "segment_length": t,
        "hidden": list(hidden),
        "threads": args.threads,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "load_average": round(os.getloadavg()[0], 1),
        # glibc settings that keep freed memory mapped (see docs/preferences.md); None = default
        "malloc_env": {name: os.environ.get(name) for name in MALLOC_ENV},
    }
    atomic_write_text(out, json.dumps(results, indent=2) + "\n")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
