"""SB3-compatible risk-sensitive agents over reward hypotheses (installed as ``ruagent.agents``)."""

from ruagent.agents.risk_ppo import RiskPPO

__all__ = ["RiskPPO"]
