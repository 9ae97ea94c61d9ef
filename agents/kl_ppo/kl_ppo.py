"""KLPPO: PPO whose reward carries a per-step KL penalty toward a frozen reference policy.

The objective of RL from human feedback (Ziegler et al., "Fine-Tuning Language Models from
Human Preferences", 2019; Stiennon et al., NeurIPS 2020): maximise the proxy reward minus
β·KL(π ‖ π_ref), with the KL estimated on the policy's own samples and paid per step,

    r'_t = r_t − β · (log π(a_t|s_t) − log π_ref(a_t|s_t)),

so that E[Σ_t r'_t] = E[Σ_t r_t] − β·Σ_t KL(π(·|s_t) ‖ π_ref(·|s_t)). Korbak, Perez & Buckley
("RL with KL penalties is better viewed as Bayesian inference", EMNLP Findings 2022) read the
optimum π* ∝ π_ref · exp(r/β) as a posterior with π_ref as its prior; Gao, Schulman & Hilton
("Scaling Laws for Reward Model Overoptimization", ICML 2023) find the penalty acts much like
early stopping against a proxy reward. In ruagent's experiments π_ref is PPO trained on the
true reward in the *training* variant (the behaviour the labels came from, as the supervised
model is to RLHF) and r is a posterior's mean reward through
:class:`ruagent.VecRewardUncertaintyWrapper`.

The penalty is applied as the rollout buffer stores each step (``log π`` is the log-probability
PPO recorded when it sampled the action, ``log π_ref`` the reference's of the same action), so
GAE, the value target and the clipped surrogate all see the penalised reward, as in RLHF's PPO.
With β = 0 it is SB3's PPO parameter for parameter (the reference's construction does not
touch the random-number stream). The reference's weights are saved in the model's zip, so a
loaded model can learn on; ``init_from_reference=True`` starts the policy at π_ref (RLHF's
initialisation at the supervised model).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.buffers import DictRolloutBuffer, RolloutBuffer
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.save_util import load_from_zip_file
from stable_baselines3.common.utils import obs_as_tensor

__all__ = ["KLPPO", "DictKLRolloutBuffer", "KLRolloutBuffer", "reference_state_dict"]

ReferenceSource = str | Path | BaseAlgorithm | BasePolicy


class _KLPenalty:
    """Rollout-buffer mixin: ``add`` subtracts β·(log π − log π_ref) of the stored action from its reward.

    ``log_ratio(obs, action, log_prob) -> (n_envs,)`` and ``kl_coef`` are set by :class:`KLPPO`;
    ``log_ratios`` keeps every step's log-ratio of the current rollout (for the KL log).
    """

    log_ratio: Callable[[Any, np.ndarray, th.Tensor], np.ndarray] | None = None
    kl_coef: float = 0.0

    def reset(self) -> None:
        super().reset()
        self.log_ratios = np.zeros((self.buffer_size, self.n_envs), dtype=np.float32)

    def add(self, obs: Any, action: np.ndarray, reward: np.ndarray, episode_start: np.ndarray, value: th.Tensor,
            log_prob: th.Tensor) -> None:
        if self.log_ratio is None:
            raise RuntimeError("a KL rollout buffer needs its log_ratio function: build it through KLPPO")
        ratio = self.log_ratio(obs, action, log_prob)
        assert ratio.shape == (self.n_envs,), ratio.shape
        self.log_ratios[self.pos] = ratio
        if self.kl_coef != 0.0:  # β = 0 leaves the reward untouched, bit for bit
            reward = reward - self.kl_coef * ratio
        super().add(obs, action, reward, episode_start, value, log_prob)


class KLRolloutBuffer(_KLPenalty, RolloutBuffer):
    """SB3's :class:`RolloutBuffer` with the per-step KL penalty on the stored reward."""


class DictKLRolloutBuffer(_KLPenalty, DictRolloutBuffer):
    """SB3's :class:`DictRolloutBuffer` with the per-step KL penalty on the stored reward."""


def reference_state_dict(source: ReferenceSource) -> dict[str, th.Tensor]:
    """The policy weights of a reference: a saved SB3 model's zip (read without unpickling), a model, or a policy."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file() and path.with_suffix(".zip").is_file():
            path = path.with_suffix(".zip")
        if not path.is_file():
            raise FileNotFoundError(f"reference policy {source} not found: pass the model.zip of a trained SB3 PPO")
        _, params, _ = load_from_zip_file(path, load_data=False, device="cpu")
        if not params or "policy" not in params:
            raise ValueError(f"{path} holds no 'policy' weights; pass the model.zip an SB3 on-policy model saved")
        return params["policy"]
    if isinstance(source, BaseAlgorithm):
        return source.policy.state_dict()
    if isinstance(source, BasePolicy):
        return source.state_dict()
    raise TypeError(f"ref_policy must be a path to an SB3 model.zip, an SB3 model or a policy, got {type(source)}")


class KLPPO(PPO):
    """PPO maximising the reward minus β·KL(π ‖ π_ref) per step (see the module docstring).

    :param policy: as PPO (``"MlpPolicy"``, ``"CnnPolicy"``, ``"MultiInputPolicy"`` or a class).
    :param env: as PPO; usually a :class:`ruagent.VecRewardUncertaintyWrapper` (mode ``mean``).
    :param ref_policy: π_ref: path to a saved SB3 PPO ``model.zip``, an SB3 model, or a policy, with
        this model's policy architecture (same ``policy_kwargs``). Required for a new model; a loaded
        one carries its reference in its zip.
    :param kl_coef: β ≥ 0. Required for a new model.
    :param init_from_reference: start the policy at π_ref's weights (RLHF's initialisation) instead of
        a fresh draw.
    :param rollout_buffer_class: a :class:`KLRolloutBuffer` subclass (default: by observation space).
    :param ppo_kwargs: every other PPO argument, by keyword.

    Logs ``kl/coef``, ``kl/log_ratio_mean`` (the rollout's per-step estimate of KL(π ‖ π_ref)) and
    ``kl/penalty_mean`` at each update.
    """

    def __init__(
        self,
        policy: str | type[BasePolicy],
        env: Any,
        *,
        ref_policy: ReferenceSource | None = None,
        kl_coef: float | None = None,
        init_from_reference: bool = False,
        rollout_buffer_class: type[RolloutBuffer] | None = None,
        _init_setup_model: bool = True,
        **ppo_kwargs: Any,
    ) -> None:
        if _init_setup_model and (ref_policy is None or kl_coef is None):
            raise ValueError("KLPPO needs ref_policy= (a saved PPO model.zip, model or policy) and kl_coef= "
                             "(beta >= 0)")
        if kl_coef is not None and not (np.isfinite(kl_coef) and kl_coef >= 0):
            raise ValueError(f"kl_coef must be a finite number >= 0, got {kl_coef}")
        if rollout_buffer_class is not None and not issubclass(rollout_buffer_class, _KLPenalty):
            raise ValueError(f"rollout_buffer_class must subclass KLRolloutBuffer or DictKLRolloutBuffer (it applies "
                             f"the KL penalty), got {rollout_buffer_class.__name__}; leave it unset for the default")
        self.kl_coef = None if kl_coef is None else float(kl_coef)
        self.init_from_reference = bool(init_from_reference)
        self._ref_source = ref_policy
        self.ref_policy: BasePolicy | None = None
        super().__init__(policy, env, rollout_buffer_class=rollout_buffer_class, _init_setup_model=False,
                         **ppo_kwargs)
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        if self.rollout_buffer_class is None:
            dict_obs = isinstance(self.observation_space, spaces.Dict)
            self.rollout_buffer_class = DictKLRolloutBuffer if dict_obs else KLRolloutBuffer
        super()._setup_model()
        # π_ref has the policy's architecture; building it must not move the RNG (β = 0 is PPO exactly).
        with th.random.fork_rng(devices=[]):
            self.ref_policy = self.policy_class(self.observation_space, self.action_space, self.lr_schedule,
                                                use_sde=self.use_sde, **self.policy_kwargs)
        self.ref_policy = self.ref_policy.to(self.device)
        self.ref_policy.set_training_mode(False)
        self.ref_policy.requires_grad_(False)
        if self._ref_source is not None:  # a new model; a loaded one gets π_ref from its zip (set_parameters)
            state = reference_state_dict(self._ref_source)
            self._load_reference(state)
            if self.init_from_reference:
                self.policy.load_state_dict(state)
            self._ref_source = None
        self.rollout_buffer.log_ratio = self._log_ratio
        self.rollout_buffer.kl_coef = self.kl_coef

    def _load_reference(self, state: dict[str, th.Tensor]) -> None:
        try:
            self.ref_policy.load_state_dict(state)
        except RuntimeError as error:
            first = str(error).strip().splitlines()[0]
            raise ValueError(f"the reference policy's weights do not fit this KLPPO's policy ({first}); build KLPPO "
                             "with the reference's policy class and policy_kwargs (e.g. the same net_arch)") from None

    def _log_ratio(self, obs: Any, action: np.ndarray, log_prob: th.Tensor) -> np.ndarray:
        """(n_envs,) log π(a|s) − log π_ref(a|s) for the actions just sampled (``log_prob`` is π's)."""
        with th.no_grad():
            actions = th.as_tensor(action, device=self.device)
            if isinstance(self.action_space, spaces.Discrete):
                actions = actions.long().flatten()
            ref_log_prob = self.ref_policy.get_distribution(obs_as_tensor(obs, self.device)).log_prob(actions)
            return (log_prob.to(self.device) - ref_log_prob).float().cpu().numpy()

    def train(self) -> None:
        ratios = self.rollout_buffer.log_ratios
        self.logger.record("kl/coef", self.kl_coef)
        self.logger.record("kl/log_ratio_mean", float(ratios.mean()))
        self.logger.record("kl/penalty_mean", float(self.kl_coef * ratios.mean()))
        super().train()

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        state_dicts, variables = super()._get_torch_save_params()
        return [*state_dicts, "ref_policy"], variables

    def _excluded_save_params(self) -> list[str]:
        # π_ref's weights travel as a state dict (above); the source object is never pickled.
        return [*super()._excluded_save_params(), "ref_policy", "_ref_source"]
