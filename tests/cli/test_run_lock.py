"""The run folder's lock on its own: reentrant in a process, refused across processes naming the PID."""

import os
import subprocess
import sys

import pytest

from ruagent.cli.run_lock import LOCK, RunExistsError, RunLockedError, acquire, holds, release

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="flock is POSIX")

TRY_LOCK = """
import sys
from ruagent.cli.run_lock import RunLockedError, acquire
try:
    acquire(__import__("pathlib").Path(sys.argv[1]))
except RunLockedError as exc:
    print("refused", exc.pid)
else:
    print("taken")
"""


def try_from_another_process(folder):
    done = subprocess.run([sys.executable, "-c", TRY_LOCK, str(folder)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_reentrant_in_a_process_exclusive_across_processes_and_released(tmp_path):
    held = acquire(tmp_path)
    try:
        assert acquire(tmp_path) is held and holds(held)
        assert int((tmp_path / LOCK).read_text().split()[0]) == os.getpid()
        assert try_from_another_process(tmp_path) == ["refused", str(os.getpid())]
    finally:
        release(held)
    assert not holds(held)
    assert try_from_another_process(tmp_path) == ["taken"]  # and that process's exit dropped it again
    assert try_from_another_process(tmp_path) == ["taken"]


def test_a_symlinked_lock_file_is_refused(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("not a lock")
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / LOCK).symlink_to(target)
    with pytest.raises(RunExistsError, match="symbolic link"):
        acquire(folder)
    assert target.read_text() == "not a lock"


def test_a_missing_folder_is_not_created(tmp_path):
    with pytest.raises(FileNotFoundError):
        acquire(tmp_path / "gone")
    assert not (tmp_path / "gone").exists()


def test_release_of_nothing_is_a_no_op():
    release(None)
    assert not holds(None)
    assert issubclass(RunLockedError, RunExistsError)
