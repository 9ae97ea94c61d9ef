"""The run folder's lock: ``fcntl.flock`` on ``<run>/.lock``, held by the process writing the run.

The holder writes its PID into the file, so a refused writer can name it
(:class:`RunLockedError`). The OS drops the lock when the process dies, so a crashed run never
blocks its resume. Locks are reentrant within a process (keyed by the lock file's device and
inode), the lock file is never followed through a symbolic link, and a lock file replaced while
it was being taken (the folder deleted by ``--force``) is not trusted. Without ``fcntl``
(Windows) nothing is locked.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock; run folders are still created exclusively, but not locked
    fcntl = None

__all__ = ["LOCK", "HeldLock", "RunExistsError", "RunLockedError", "acquire", "holds", "release"]

#: Lock file inside a run folder: ``flock``-ed by the process writing the run, which writes its PID in it.
LOCK = ".lock"


class RunExistsError(FileExistsError):
    """The run folder exists already and overwriting was not asked for (or is not allowed)."""


class RunLockedError(RunExistsError):
    """Another live process holds the run folder's lock (it is writing the run); ``pid`` names it."""

    def __init__(self, message: str, pid: int | None = None) -> None:
        super().__init__(message)
        self.pid = pid


class HeldLock:
    """A lock this process holds: the open descriptor of the lock file (closing it drops the flock)."""

    def __init__(self, key: tuple[int, int], fd: int) -> None:
        self.key, self.fd = key, fd


#: (st_dev, st_ino) of each lock file this process holds -> its holder (the file stays open, so its
#: inode cannot be reused while it is listed here)
_HELD: dict[tuple[int, int], HeldLock] = {}


def _holder_pid(fd: int) -> int | None:
    """The PID the lock's holder wrote into the lock file (None if unreadable)."""
    for _ in range(20):  # the holder writes its PID right after taking the lock
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 64).decode("ascii", "replace").strip()
        if text:
            try:
                return int(text.split()[0])
            except ValueError:
                return None
        time.sleep(0.01)
    return None


def acquire(folder: Path) -> HeldLock:
    """Take ``folder/.lock`` (exclusive, non-blocking) for this process; return its entry in :data:`_HELD`.

    Reentrant within one process. The lock file is never followed through a symbolic link, and a
    lock file replaced while it was being taken (the folder deleted by ``--force``) is not trusted.

    :raises RunLockedError: another process holds it (the message names its PID).
    :raises FileNotFoundError: ``folder`` does not exist (any more).
    """
    lock_path = folder / LOCK
    for _ in range(5):
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise RunExistsError(f"{lock_path} is a symbolic link, not ruagent's lock file; ruagent does not "
                                     "write in this folder") from None
            raise
        stat = os.fstat(fd)
        key = (stat.st_dev, stat.st_ino)
        if key in _HELD:  # this process holds it already
            os.close(fd)
            return _HELD[key]
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                os.close(fd)
                raise
            pid = _holder_pid(fd)
            os.close(fd)
            holder = f"PID {pid}" if pid is not None else "a PID it has not written yet"
            raise RunLockedError(
                f"run folder {folder} is in use: another ruagent process ({holder}) holds its lock {lock_path} "
                "and is writing it; wait for it to finish or stop it before resuming, forcing or reusing "
                "this folder", pid=pid) from None
        try:
            current = os.stat(lock_path, follow_symlinks=False)
        except FileNotFoundError:
            current = None
        if current is None or (current.st_dev, current.st_ino) != key:
            os.close(fd)  # the folder was deleted or replaced meanwhile: lock what is there now
            continue
        os.lseek(fd, 0, os.SEEK_SET)  # (no truncation first: a reader never sees an empty file once written)
        os.write(fd, f"{os.getpid():<19}\n".encode("ascii"))
        os.ftruncate(fd, 20)
        _HELD[key] = held = HeldLock(key, fd)
        return held
    raise RunExistsError(f"run folder {folder} keeps being replaced by another process; try again")


def release(held: HeldLock | None) -> None:
    """Drop a lock :func:`acquire` returned (None: nothing); closing the descriptor drops the flock."""
    if held is not None and _HELD.get(held.key) is held:
        del _HELD[held.key]
        os.close(held.fd)


def holds(held: HeldLock | None) -> bool:
    """Whether ``held`` (from :func:`acquire`) is still held by this process."""
    return held is not None and _HELD.get(held.key) is held
