"""SB3-compatible risk-sensitive agents over reward hypotheses, and the KL-regularised PPO baseline
(installed as ``ruagent.agents``)."""

from ruagent.agents.kl_ppo import KLPPO
from ruagent.agents.risk_dqn import RiskDQN
from ruagent.agents.risk_ppo import RiskPPO
from ruagent.agents.risk_sac import RiskSAC

__all__ = ["KLPPO", "RiskDQN", "RiskPPO", "RiskSAC"]
