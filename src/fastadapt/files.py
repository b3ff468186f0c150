"""Reading and writing the files a command is given, safely.

Reading (:func:`read_file`, :func:`read_json`): only a regular file is read (a symlink to one
counts). A FIFO, a device, a directory or a socket is refused before it is opened, so a FIFO
cannot block the command and ``/dev/zero`` cannot fill the memory; the file is opened
non-blocking and checked again on the open descriptor (it may have been replaced in between),
and never more than a size limit is read. Every problem is one line naming the file.

Writing (:func:`atomic_write`): a temporary file next to the target (:data:`LEFTOVER` names
it), flushed and fsync'ed, renamed over the target, and the directory fsync'ed, so readers see
the old file or the whole new one. A target that is a symlink is written through (the link
stays, its target is replaced); one that is not a regular file (a device, a FIFO, a directory,
a socket) is refused and left as it is.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fastadapt.errors import CheckpointError, ConfigError, FastAdaptError, StorageError

__all__ = ["CONFIG_MAX_BYTES", "JSON_MAX_BYTES", "LEFTOVER", "atomic_write", "check_distinct",
           "is_integer", "is_number", "memory_limit", "read_file", "read_json",
           "remove_leftovers"]

CONFIG_MAX_BYTES = 8 * 2**20
"""The largest config file read (a config is a few kB)."""
JSON_MAX_BYTES = 256 * 2**20
"""The largest JSON file read (``evaluation.json``, a checkpoint's record)."""

LEFTOVER = re.compile(r"^\.(.+)\.[A-Za-z0-9_]{8}\.tmp$")
"""The name of :func:`atomic_write`'s temporary file: ``.<target>.<8 random chars>.tmp``."""

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symlink loop"))


def _kind(mode: int) -> str:
    """What a non-regular file is, in words (``a FIFO``)."""
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _reason(err: OSError) -> str:
    """An ``OSError`` in a few words (``Permission denied``)."""
    return err.strerror or (str(err).strip().splitlines() or [type(err).__name__])[0]


# --------------------------------------------------------------------------- reading


def memory_limit() -> int | None:
    """Half the memory available now (``MemAvailable``; else half the physical memory;
    ``None`` where neither is known): the largest file worth reading whole when reading it
    makes a copy (tensors, a long ``metrics.jsonl``)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024 // 2
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (AttributeError, OSError, ValueError):
        return None


def _size(size: int) -> str:
    for unit, scale in (("GB", 2**30), ("MB", 2**20), ("kB", 2**10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"


def read_file(path: Path, what: str, max_bytes: int | None, *,
              error: type[FastAdaptError] = CheckpointError, hint: str = "",
              missing: str | None = None) -> bytes:
    """The bytes of a regular file, read without blocking and without reading past a limit.

    Args:
        path: the file (a symlink to a regular file is read).
        what: the words before the path in an error (``"cannot load tensors"``).
        max_bytes: the largest size read (``None``: no limit); see :func:`memory_limit`.
        error: the class of the error raised.
        hint: what to do, after the problem (``"run fastadapt evaluate RUN again"``).
        missing: the whole message when the file does not exist (default: ``what``, the
            path and ``file not found``).

    Raises:
        FastAdaptError: (of class ``error``) one line naming the file and the problem: it
            does not exist, is not a regular file (a directory, a FIFO, a device, a socket),
            is larger than ``max_bytes``, or cannot be read.
    """
    def fail(problem: str) -> FastAdaptError:
        return error(f"{what} {path}: {problem}" + (f"; {hint}" if hint else ""))

    def refuse(mode: int, size: int) -> None:
        if not stat.S_ISREG(mode):
            raise fail(f"it is {_kind(mode)}, not a regular file")
        if max_bytes is not None and size > max_bytes:
            raise fail(f"too large ({_size(size)}; the limit is {_size(max_bytes)})")

    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) \
        | getattr(os, "O_CLOEXEC", 0)
    try:
        info = os.stat(path)
        refuse(info.st_mode, info.st_size)  # a FIFO or a device is never opened
        fd = os.open(path, flags)  # non-blocking: should a FIFO have replaced the file
    except FileNotFoundError:
        raise (error(missing) if missing else fail("file not found")) from None
    except OSError as err:
        raise fail(_reason(err)) from None
    try:
        info = os.fstat(fd)
        refuse(info.st_mode, info.st_size)  # what was opened, should the path have changed
        chunks, total = [], 0
        step = 2**20 if max_bytes is None else min(2**20, max_bytes + 1)
        while chunk := os.read(fd, step):  # the size can lie (/proc) or grow
            chunks.append(chunk)
            total += len(chunk)
            refuse(info.st_mode, total)
        return b"".join(chunks)
    except OSError as err:
        raise fail(_reason(err)) from None
    finally:
        os.close(fd)


def is_number(value: Any) -> bool:
    """Whether a value read from JSON is a number (``true`` is not, though Python's ``bool``
    is an ``int``)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_integer(value: Any, least: int | None = None) -> bool:
    """Whether a value read from JSON is an integer (not ``true``), at least ``least`` if
    given."""
    return isinstance(value, int) and not isinstance(value, bool) and (
        least is None or value >= least)


def read_json(path: Path, what: str, max_bytes: int | None = JSON_MAX_BYTES, *,
              error: type[FastAdaptError] = CheckpointError, hint: str = "",
              missing: str | None = None) -> Any:
    """The JSON value of a file read by :func:`read_file` (arguments as there).

    Raises:
        FastAdaptError: as :func:`read_file`, or the file is empty or not JSON (the line and
            column named).
    """
    data = read_file(path, what, max_bytes, error=error, hint=hint, missing=missing)
    problem = None
    if not data.strip():
        problem = "the file is empty"
    else:
        try:
            return json.loads(data)
        except json.JSONDecodeError as err:
            problem = f"not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})"
        except UnicodeDecodeError as err:
            problem = f"not UTF-8 text (byte {data[err.start]:#04x} at offset {err.start})"
        except RecursionError:
            problem = "not valid JSON (nested too deeply)"
    raise error(f"{what} {path}: {problem}" + (f"; {hint}" if hint else ""))


def check_distinct(paths: Iterable[Path], what: str = "run", member: str | None = None) -> None:
    """Refuse a file or directory given twice, under one name or two (a symlink, a trailing
    slash, ``./``): same device and inode, or the same real path where it does not exist.
    With ``member`` (``"evaluation.json"``), directories whose member is one file (a hard-link
    copy, ``cp -al``) are refused too.

    Raises:
        ConfigError: ``run X is given twice (as A and B); give each run once``.
    """
    seen: dict[Any, Path] = {}
    for path in paths:
        try:
            info = os.stat(path)
            identity: Any = (info.st_dev, info.st_ino)
        except OSError:
            identity = os.path.realpath(path)
        if identity in seen:
            names = "" if str(seen[identity]) == str(path) else f" (as {seen[identity]} and {path})"
            raise ConfigError(f"{what} {os.path.realpath(path)} is given twice{names}; give "
                              f"each {what} once")
        seen[identity] = path
        for key in _member_identities(path, member):
            if key in seen:
                raise ConfigError(f"{what}s {seen[key]} and {path} hold the same {member} (a "
                                  f"hard-link copy of one {what}); give each {what} once")
            seen[key] = path


def _member_identities(path: Path, member: str | None) -> list[Any]:
    """The device and inode of ``path/member`` (none where it cannot be read: its reader
    says why). Equal bytes are not refused: two runs whose policies act alike meet the same
    evaluation streams and can write the same file."""
    if member is None:
        return []
    try:
        info = os.stat(Path(path) / member)
    except OSError:
        return []
    return [("inode", info.st_dev, info.st_ino)]


# --------------------------------------------------------------------------- writing


def _umask() -> int:
    """The process's file-creation mask (read without changing it where Linux shows it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: read it by setting it, then put it back
    os.umask(mask)
    return mask


def _write_target(path: Path, target: str, hint: str) -> Path:
    """The file to replace: ``path``, or the file its symlink points to.

    Raises:
        StorageError: that file exists and is not a regular file (it is left as it is).
    """
    try:
        is_link = stat.S_ISLNK(os.lstat(path).st_mode)
        resolved = Path(os.path.realpath(path)) if is_link else path
        mode = os.lstat(resolved).st_mode
    except FileNotFoundError:  # a new file (or a symlink to one)
        return Path(os.path.realpath(path))
    except OSError as err:
        raise StorageError.of(err, target) from err
    if not stat.S_ISREG(mode):
        where = "" if resolved == path else f" (the symlink's target {resolved})"
        raise StorageError(f"cannot write {target}: it is {_kind(mode)}{where}, not a regular "
                           f"file; {hint}")
    return resolved


def atomic_write(path: Path, data: bytes, what: str = "", *,
                 hint: str = "remove it or choose another path") -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one.

    Writes a temporary file next to ``path`` (:data:`LEFTOVER` names it), fsyncs it, renames it
    over ``path`` and fsyncs the directory. The file gets the mode a plain ``open`` would give
    it (``0o666`` less the umask). A symlink is written through: the file it points to is
    replaced, the link stays. On any failure the temporary file is removed and ``path`` is
    untouched.

    Args:
        path: the file to write.
        data: its new content.
        what: what the file holds, for the error (``"checkpoint"``).
        hint: what to do when ``path`` is not a regular file (``"choose another --output"``).

    Raises:
        StorageError: ``path`` (or its symlink's target) exists and is not a regular file (a
            device, a FIFO, a directory, a socket), or the file cannot be written (a full
            disk, a read-only directory): one line naming the file.
    """
    target = f"the {what} file {path}" if what else f"the file {path}"
    path = _write_target(Path(path), target, hint)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise StorageError.of(err, target) from err
    try:
        with os.fdopen(fd, "wb") as tmp:
            with contextlib.suppress(AttributeError, OSError):  # fchmod: POSIX only
                os.fchmod(tmp.fileno(), 0o666 & ~_umask())
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        if isinstance(err, OSError):
            raise StorageError.of(err, target) from err
        raise
    _fsync_directory(path.parent)


def remove_leftovers(directory: Path) -> list[Path]:
    """Delete the temporary files :func:`atomic_write` left in ``directory`` when its process
    was killed mid-write (only those: names matching :data:`LEFTOVER`); returns them."""
    if not directory.is_dir():
        return []
    removed = []
    for entry in directory.iterdir():
        if entry.is_file() and LEFTOVER.match(entry.name):
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
                removed.append(entry)
    return removed


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
