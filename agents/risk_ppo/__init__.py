"""RiskPPO: PPO over a posterior of reward functions, optimising a risk measure of the members' values."""

from ruagent.agents.risk_ppo.policies import CnnPolicy, MlpPolicy, MultiInputPolicy
from ruagent.agents.risk_ppo.risk_ppo import RiskPPO

__all__ = ["CnnPolicy", "MlpPolicy", "MultiInputPolicy", "RiskPPO"]
