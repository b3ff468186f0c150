"""One writer per run directory: an OS file lock held while a command writes to it.

``fastadapt train``, ``train --resume``, ``evaluate`` and ``sweep`` hold an exclusive
:func:`fcntl.flock` on ``<run_dir>/.lock`` while they work. The kernel releases it when the
holder's process ends however it ends (``kill -9`` included), so a lock is never stale. The
file records the holder's pid and command, which a refusal names; the holder removes it when
it lets go (a killed holder leaves it, unlocked, for the next writer to take). Locks of one
process conflict too (each :class:`RunLock` opens the file anew), so two trainers in one Python
session are refused alike.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from types import TracebackType

from fastadapt.errors import CheckpointError, RunLockedError, StorageError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, no protection
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_FILE", "RunLock"]

LOCK_FILE = ".lock"
"""The lock file's name inside a run directory."""


def _holder(fd: int) -> str:
    """``pid 1234 (fastadapt train)``, as the holder wrote it (a short, bounded read)."""
    with contextlib.suppress(OSError):
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
        pid, _, command = text.partition(" ")
        if pid.isdigit():
            return f"pid {pid}" + (f" ({command})" if command else "")
    return "another process"


class RunLock:
    """An exclusive lock on a run directory, as a context manager (see the module docstring).

    Args:
        directory: the run directory (or a sweep's root); it must exist.
        command: what holds it, for the refusal of the next writer (``"fastadapt train"``).

    Raises:
        RunLockedError: another process (or another :class:`RunLock`) holds it: one line
            naming the directory and the holder's pid.
        StorageError: the lock file cannot be made (a read-only directory) or is not a
            regular file.
    """

    def __init__(self, directory: Path, command: str) -> None:
        self.directory, self.command = Path(directory), command
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def acquire(self) -> RunLock:
        """Take the lock (no wait); idempotent. Returns ``self``."""
        if self._fd is None and not self.directory.is_dir():
            raise CheckpointError(f"run directory {self.directory} does not exist")
        while self._fd is None and fcntl is not None:
            fd = self._open()
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise RunLockedError(
                        f"{self.directory} is in use by {_holder(fd)}: one writer at a time; "
                        "wait for it to end or stop it (nothing was changed)") from None
                if not self._still_there(fd):  # its holder removed it as we opened it
                    os.close(fd)
                    continue
                with contextlib.suppress(OSError):  # the record is for messages only
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, f"{os.getpid()} {self.command}\n".encode(), 0)
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
        return self

    def _open(self) -> int:
        path = self.directory / LOCK_FILE
        # O_NOFOLLOW: a symlink planted as .lock is refused; O_NONBLOCK: a FIFO does not hang
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        try:
            fd = os.open(path, flags, 0o644)
        except OSError as err:
            raise StorageError.of(err, f"the lock file {path}") from err
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise StorageError(f"cannot lock {self.directory}: {path} is not a regular file; "
                               "remove it")
        return fd

    def _still_there(self, fd: int) -> bool:
        """Whether the lock file's name still leads to the file ``fd`` has open."""
        try:
            named = os.stat(self.directory / LOCK_FILE, follow_symlinks=False)
        except OSError:
            return False
        opened = os.fstat(fd)
        return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)

    def release(self) -> None:
        """Let the lock go and remove the lock file (removed first, while still held: a
        process that opened it meanwhile sees the name gone and opens it anew); idempotent."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                os.unlink(self.directory / LOCK_FILE)
            os.close(fd)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()
