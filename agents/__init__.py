"""Risk-sensitive SB3 algorithms (installed as ``ruagent.agents``)."""
