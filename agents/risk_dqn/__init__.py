"""RiskDQN: DQN over a posterior of reward functions, acting greedily on a per-state risk of the members' Q."""

from ruagent.agents.risk_dqn.policies import CnnPolicy, MlpPolicy, MultiInputPolicy
from ruagent.agents.risk_dqn.risk_dqn import RiskDQN

__all__ = ["CnnPolicy", "MlpPolicy", "MultiInputPolicy", "RiskDQN"]
