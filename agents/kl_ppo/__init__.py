"""KLPPO: PPO with a per-step KL penalty toward a frozen reference policy (the RLHF objective)."""

from ruagent.agents.kl_ppo.kl_ppo import KLPPO
from ruagent.agents.kl_ppo.policies import CnnPolicy, MlpPolicy, MultiInputPolicy

__all__ = ["KLPPO", "CnnPolicy", "MlpPolicy", "MultiInputPolicy"]
