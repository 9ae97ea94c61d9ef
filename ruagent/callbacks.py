"""SB3 callbacks that put reward uncertainty and goodharting on TensorBoard.

Pass them to your own ``model.learn(callback=[...])`` when you train through
:class:`ruagent.RewardUncertaintyWrapper` (``train.py`` uses the same ones). The tags are a
small, stable set, documented in docs/evaluate.md:

=============================  ==========================================================
``ruagent/true_return``        mean true episode return (SB3 Monitor *inside* the wrapper)
``ruagent/proxy_return``       mean posterior-mean episode return (what the agent is paid)
``ruagent/goodhart_gap``       proxy − true, mean over the same episodes
``ruagent/side_effect_rate``   share of episodes with at least one ``info["side_effect"]``
``ruagent/reward_std_mean``    mean member-reward std over the rollout's steps
``ruagent/reward_std``         histogram of the member-reward std over the rollout's steps
``posterior/n_labels``         labels the posterior has seen (when it reports ``n_labels``)
``posterior/<loss>``           posterior fit losses per epoch (:func:`log_posterior_fit`)
``eval/true_return``           :class:`GoodhartEvalCallback`: true return on the deployment env
``eval/proxy_return``          ... posterior-mean return of the same episodes
``eval/goodhart_gap``          ... proxy − true
``eval/side_effect_rate``      ... share of episodes with a side effect
``eval/reward_std_mean``       ... mean member-reward std along the evaluated episodes
=============================  ==========================================================

RiskPPO logs its own ``risk/*`` tags (risk value, per-member J spread) to the same logger;
RiskSAC and RiskDQN log their per-state analogues (docs/offpolicy.md).
Episode means use a window of the last ``stats_window_size`` episodes, like SB3's
``rollout/ep_rew_mean``.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Logger, configure

from ruagent.reward_models.base import RewardModel
from ruagent.rollouts import run_episodes

__all__ = ["TAGS", "GoodhartEvalCallback", "RewardUncertaintyCallback", "log_posterior_fit"]

#: Every scalar/histogram tag the callbacks write (``posterior/<loss>`` names vary by family).
TAGS = (
    "ruagent/true_return",
    "ruagent/proxy_return",
    "ruagent/goodhart_gap",
    "ruagent/side_effect_rate",
    "ruagent/reward_std_mean",
    "ruagent/reward_std",
    "posterior/n_labels",
    "eval/true_return",
    "eval/proxy_return",
    "eval/goodhart_gap",
    "eval/side_effect_rate",
    "eval/reward_std_mean",
)
# Histograms go to TensorBoard only: stdout, csv and json cannot show arrays.
_TENSORBOARD_ONLY = ("stdout", "log", "json", "csv")


class RewardUncertaintyCallback(BaseCallback):
    """Log true vs proxy returns, member disagreement and side effects while training.

    Reads the info keys of :class:`ruagent.RewardUncertaintyWrapper` (``reward_mean``,
    ``reward_std``, ``env_reward``) and SB3's Monitor ``info["episode"]`` on every step, and
    records the tags in the module docstring at the end of every rollout.

    :param reward_model: optional posterior; if it has an ``n_labels`` attribute (active
        preference learning grows it), ``posterior/n_labels`` is logged each rollout.
    :param stats_window_size: episodes averaged for the return tags (SB3's default 100).
    :param max_histogram_steps: cap on the std values kept per rollout for the histogram
        (a uniform subsample beyond it keeps memory flat on long rollouts).
    """

    def __init__(
        self,
        reward_model: RewardModel | None = None,
        stats_window_size: int = 100,
        max_histogram_steps: int = 10_000,
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose)
        self.reward_model = reward_model
        self.stats_window_size = stats_window_size
        self.max_histogram_steps = max_histogram_steps
        self._true_returns: deque[float] = deque(maxlen=stats_window_size)
        self._proxy_returns: deque[float] = deque(maxlen=stats_window_size)
        self._side_effect_episodes: deque[float] = deque(maxlen=stats_window_size)
        self._rollout_stds: list[np.ndarray] = []
        self._warned_missing_keys = False

    def _init_callback(self) -> None:
        n_envs = self.training_env.num_envs
        # Running per-env sums over the current episode (the wrapper reports per step).
        self._episode_proxy = np.zeros(n_envs)
        self._episode_true = np.zeros(n_envs)
        self._episode_side_effect = np.zeros(n_envs, dtype=bool)

    def _on_step(self) -> bool:
        infos: Sequence[dict[str, Any]] = self.locals["infos"]
        dones = np.asarray(self.locals["dones"], dtype=bool)
        if "reward_mean" not in infos[0]:
            self._warn_unwrapped()
            return True
        self._episode_proxy += np.fromiter((info["reward_mean"] for info in infos), float, len(infos))
        self._episode_true += np.fromiter((info.get("env_reward", 0.0) for info in infos), float, len(infos))
        self._episode_side_effect |= np.fromiter(
            (bool(info.get("side_effect", False)) for info in infos), bool, len(infos)
        )
        self._rollout_stds.append(np.fromiter((info["reward_std"] for info in infos), np.float32, len(infos)))
        for env_index in np.flatnonzero(dones):
            info = infos[env_index]
            # Monitor inside the wrapper records the true return; summing env_reward is the fallback.
            true_return = info["episode"]["r"] if "episode" in info else self._episode_true[env_index]
            self._true_returns.append(float(true_return))
            self._proxy_returns.append(float(self._episode_proxy[env_index]))
            self._side_effect_episodes.append(float(self._episode_side_effect[env_index]))
            self._episode_proxy[env_index] = 0.0
            self._episode_true[env_index] = 0.0
            self._episode_side_effect[env_index] = False
        return True

    def _on_rollout_end(self) -> None:
        if self._true_returns:
            true, proxy = np.mean(self._true_returns), np.mean(self._proxy_returns)
            self.logger.record("ruagent/true_return", float(true))
            self.logger.record("ruagent/proxy_return", float(proxy))
            self.logger.record("ruagent/goodhart_gap", float(proxy - true))
            self.logger.record("ruagent/side_effect_rate", float(np.mean(self._side_effect_episodes)))
        if self._rollout_stds:
            stds = np.concatenate(self._rollout_stds)
            self._rollout_stds.clear()
            self.logger.record("ruagent/reward_std_mean", float(stds.mean()))
            if stds.size > self.max_histogram_steps:
                stds = np.random.default_rng(self.num_timesteps).choice(stds, self.max_histogram_steps, replace=False)
            self.logger.record("ruagent/reward_std", stds, exclude=_TENSORBOARD_ONLY)
        n_labels = getattr(self.reward_model, "n_labels", None)
        if n_labels is not None:
            self.logger.record("posterior/n_labels", int(n_labels))

    def _warn_unwrapped(self) -> None:
        if not self._warned_missing_keys:
            self._warned_missing_keys = True
            import warnings

            warnings.warn(
                "RewardUncertaintyCallback found no 'reward_mean' in the step infos, so it logs nothing: the "
                "training env is not wrapped by ruagent.RewardUncertaintyWrapper / VecRewardUncertaintyWrapper. "
                "Wrap the env (with a Monitor inside the wrapper) or drop this callback.",
                stacklevel=2,
            )


class GoodhartEvalCallback(BaseCallback):
    """Every ``eval_freq`` environment steps, evaluate the policy on the deployment env.

    Logs the true return (the env's reward), the proxy return (posterior mean) of the same
    episodes, their gap and the side-effect rate under ``eval/``, then dumps the logger at
    the current step, so TensorBoard draws the goodhart curve: under a misspecified proxy,
    true return first rises with the proxy, then falls while the proxy keeps rising
    (Gao, Schulman & Hilton, ICML 2023; Skalse et al., NeurIPS 2022).

    :param eval_env: the deployment gymnasium env (one env, not a VecEnv). If it is wrapped by
        RewardUncertaintyWrapper, the truth is read from ``info["env_reward"]``.
    :param reward_model: the posterior that scores the proxy; None reads ``reward_model`` from
        the eval env's wrapper chain.
    :param eval_freq: evaluate every this many environment steps (summed over sub-envs,
        i.e. ``model.num_timesteps``), and once at the end of training.
    :param n_eval_episodes: episodes per evaluation.
    :param deterministic: act greedily.
    :param seed: seed of the first evaluation reset; each evaluation reuses it, so
        successive points differ by the policy only.
    """

    def __init__(
        self,
        eval_env: gym.Env,
        reward_model: RewardModel | None = None,
        eval_freq: int = 10_000,
        n_eval_episodes: int = 5,
        deterministic: bool = True,
        seed: int | None = 0,
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose)
        if eval_freq < 1 or n_eval_episodes < 1:
            raise ValueError(f"eval_freq and n_eval_episodes must be >= 1, got {eval_freq} and {n_eval_episodes}")
        if hasattr(eval_env, "num_envs"):
            raise TypeError(
                "GoodhartEvalCallback takes one gymnasium env, not a VecEnv; pass e.g. gym.make(env_id, variant='test')"
            )
        if reward_model is None:
            try:
                reward_model = eval_env.get_wrapper_attr("reward_model")
            except AttributeError:
                raise ValueError(
                    "GoodhartEvalCallback needs the posterior to score proxy returns: pass reward_model=, or an "
                    "eval_env wrapped by RewardUncertaintyWrapper"
                ) from None
        self.eval_env = eval_env
        self.reward_model = reward_model
        self.eval_freq = eval_freq
        self.n_eval_episodes = n_eval_episodes
        self.deterministic = deterministic
        self.seed = seed
        self._next_eval = eval_freq
        #: one row per evaluation: (num_timesteps, mean true return, mean proxy return)
        self.evaluations: list[tuple[int, float, float]] = []

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next_eval:
            self._next_eval = (self.num_timesteps // self.eval_freq + 1) * self.eval_freq
            self._evaluate()
        return True

    def _on_training_end(self) -> None:
        if not self.evaluations or self.evaluations[-1][0] != self.num_timesteps:
            self._evaluate()

    def _evaluate(self) -> None:
        episodes = run_episodes(
            self.eval_env, self.model, self.n_eval_episodes, reward_model=self.reward_model,
            seed=self.seed, deterministic=self.deterministic,
        )
        true, proxy = float(episodes.true_returns().mean()), float(episodes.proxy_returns().mean())
        self.evaluations.append((self.num_timesteps, true, proxy))
        self.logger.record("eval/true_return", true)
        self.logger.record("eval/proxy_return", proxy)
        self.logger.record("eval/goodhart_gap", proxy - true)
        self.logger.record("eval/side_effect_rate", float(episodes.side_effect_episodes().mean()))
        self.logger.record("eval/reward_std_mean", float(episodes.reward_std().mean()))
        if self.verbose:
            print(f"step {self.num_timesteps}: true return {true:.2f}, proxy return {proxy:.2f}")
        self.logger.dump(self.num_timesteps)


def log_posterior_fit(
    logger_or_folder: Logger | str | os.PathLike,
    history: Mapping[str, Sequence[float]],
    n_labels: int | None = None,
) -> None:
    """Write a posterior's fit curves to TensorBoard as ``posterior/<name>`` per epoch.

    :param logger_or_folder: an SB3 logger, or a folder for a TensorBoard-only one (e.g. the
        run's ``tensorboard/posterior``).
    :param history: loss name -> per-epoch values, e.g. ``{"train_loss": [...], "val_loss": [...]}``.
    :param n_labels: labels the posterior was fitted on, logged as ``posterior/n_labels``.
    """
    logger = logger_or_folder if isinstance(logger_or_folder, Logger) else configure(
        os.fspath(logger_or_folder), ["tensorboard"]
    )
    n_epochs = max((len(values) for values in history.values()), default=0)
    for epoch in range(n_epochs):
        for name, values in history.items():
            if epoch < len(values):
                logger.record(f"posterior/{name}", float(values[epoch]))
        if n_labels is not None:
            logger.record("posterior/n_labels", int(n_labels))
        logger.dump(epoch)
    if n_epochs == 0 and n_labels is not None:
        logger.record("posterior/n_labels", int(n_labels))
        logger.dump(0)
    if logger is not logger_or_folder:
        logger.close()
