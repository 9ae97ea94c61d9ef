"""Small helpers shared by the CLI, reliability and agent tests."""

from __future__ import annotations

import errno
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import torch
from stable_baselines3.common.callbacks import BaseCallback


def call_main(main: Callable[[list[str]], int], *args: str) -> tuple[int, str, str]:
    """A command line's ``main(argv)`` in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exit_:
            code = exit_.code
    return code, out.getvalue(), err.getvalue()


ROOT = Path(__file__).resolve().parents[1]


def run_quick_bench(script: str, out: Path) -> dict[str, Any]:
    """``python bench/<script> --quick --out <out>`` on one thread: the JSON it printed last, checked to
    succeed and to equal the file it wrote."""
    done = subprocess.run([sys.executable, str(ROOT / "bench" / script), "--quick", "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert json.loads(out.read_text()) == summary
    return summary


class FullDisk:
    """A file object that fails with ENOSPC once more than ``limit`` bytes were written to it."""

    def __init__(self, inner: Any, limit: int = 64) -> None:
        self.inner, self.limit, self.n = inner, limit, 0

    def write(self, data: bytes) -> int:
        self.n += len(data)
        if self.n > self.limit:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.inner.write(data)

    def flush(self) -> None:
        self.inner.flush()


def parameters(model: Any) -> dict[str, torch.Tensor]:
    """A copy of an SB3 model's policy parameters, by name."""
    return {name: value.detach().clone() for name, value in model.policy.state_dict().items()}


def assert_same_parameters(a: dict, b: dict, atol: float = 0.0) -> None:
    """Two :func:`parameters` dicts hold the same tensors (exactly, by default)."""
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0.0, atol=atol, msg=f"parameter {name} differs")


class RolloutSpy(BaseCallback):
    """Copies the named rollout-buffer arrays (those the buffer has) and the logger's values at every rollout end."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        super().__init__()
        self.keys = keys
        self.rollouts: list[dict[str, Any]] = []

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        buffer = self.model.rollout_buffer
        rollout = {key: getattr(buffer, key).copy() for key in self.keys if hasattr(buffer, key)}
        self.rollouts.append({**rollout, "logged": dict(self.model.logger.name_to_value)})
