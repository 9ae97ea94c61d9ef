"""RiskSAC: SAC over a posterior of reward functions, the actor maximising a per-state risk of the members' Q."""

from ruagent.agents.risk_sac.policies import CnnPolicy, MlpPolicy, MultiInputPolicy
from ruagent.agents.risk_sac.risk_sac import RiskSAC

__all__ = ["CnnPolicy", "MlpPolicy", "MultiInputPolicy", "RiskSAC"]
