"""Testbed environments with a train/test distribution shift (installed as ``ruagent.envs``)."""
