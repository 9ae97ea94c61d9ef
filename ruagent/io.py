"""Crash-safe file writes.

Every file ruagent writes (posteriors, configs, eval results, checkpoints) goes through
:func:`atomic_write`: the bytes land in a temporary file in the same folder, are flushed
and fsynced, then renamed over the target. A crash leaves either the old file or the new
one, never a torn one. A write that fails for lack of space (or any other OS error) raises
:class:`WriteError`, an ``OSError`` that keeps the errno and names the file being written, even
where the writer (``torch.save``) reported it as a ``RuntimeError`` of its own.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = ["WriteError", "atomic_write", "atomic_write_bytes", "atomic_write_text"]


class WriteError(OSError):
    """Writing a file failed for lack of storage or a storage fault (``ENOSPC``: disk full, ``EDQUOT``,
    ``EFBIG``, ``EROFS``, ``EIO``).

    ``errno``, ``strerror`` and ``filename`` (the file that was being written, not its temporary
    copy) are those of the ``OSError`` underneath; the target keeps its previous content.
    """

    def __str__(self) -> str:
        name = errno.errorcode.get(self.errno, "?") if self.errno is not None else "?"
        return f"cannot write {self.filename}: {self.strerror} (errno {self.errno}, {name})"


#: errnos that mean "the bytes could not be stored" (others, e.g. a source file missing, pass unchanged)
_WRITE_ERRNOS = frozenset(getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EFBIG", "EROFS", "EIO")
                          if hasattr(errno, name))


def _os_error(exc: BaseException) -> OSError | None:
    """The storage OSError that caused ``exc``: itself, or one in its chain (torch.save raises
    RuntimeError("unexpected pos ...") with the file object's OSError as its context)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError) and exc.errno in _WRITE_ERRNOS:
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    # The rename is durable only once the directory entry is on disk (POSIX).
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file that replaces ``path`` atomically when the block exits cleanly.

    :raises WriteError: when an OS error (disk full, ...) interrupts the write, naming ``path``.

    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "hello.txt"
    >>> with atomic_write(target, "w") as f:
    ...     _ = f.write("hi")
    >>> target.read_text()
    'hi'
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write supports modes 'w' and 'wb', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates 0600; give the file the permissions open() would (0666 & ~umask).
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
        _fsync_dir(path.parent)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        cause = None if isinstance(exc, WriteError) else _os_error(exc)
        if cause is not None:
            raise WriteError(cause.errno, cause.strerror, str(path)) from exc
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_write(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_write(path, "w") as f:
        f.write(text)
