"""SB3-compatible risk-sensitive agents over reward hypotheses (installed as ``ruagent.agents``)."""

from ruagent.agents.risk_dqn import RiskDQN
from ruagent.agents.risk_ppo import RiskPPO
from ruagent.agents.risk_sac import RiskSAC

__all__ = ["RiskDQN", "RiskPPO", "RiskSAC"]
