"""Experiments that run ruagent's protocol end to end; the headline one is :mod:`ruagent.experiments.headline`."""
