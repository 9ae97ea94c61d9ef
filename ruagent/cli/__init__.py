"""Command-line internals of ``train.py`` and ``evaluate.py``: configs, run folders, stages.

``python train.py --help`` lists every stage, option and config key with its default.
"""
