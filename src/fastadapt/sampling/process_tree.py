"""Watching and stopping the processes a sampler started, through ``/proc`` (Linux; elsewhere
the functions see no process and the checks that use them are skipped)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

_PROC = Path("/proc")


def _stat(pid: int) -> tuple[str, str, int] | None:
    """``(name, state, parent pid)`` of a process, or ``None`` if it is gone."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    name = text[text.index("(") + 1 : text.rindex(")")]
    state, parent = text[text.rindex(")") + 2 :].split()[:2]
    return name, state, int(parent)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not count)."""
    stat = _stat(pid)
    return stat is not None and stat[1] != "Z"


def descendants(pid: int | None = None) -> dict[int, str]:
    """The processes below ``pid`` (default: this one) by pid, with their names."""
    root = os.getpid() if pid is None else pid
    parents: dict[int, tuple[str, int]] = {}
    if not _PROC.is_dir():
        return {}
    for entry in _PROC.iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None:
                parents[int(entry.name)] = (stat[0], stat[2])
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        current = frontier.pop()
        for child, (name, parent) in parents.items():
            if parent == current and child not in found:
                found[child] = name
                frontier.append(child)
    return found


def kill_all(pids: list[int], wait_s: float = 5.0) -> None:
    """SIGKILL each process of ``pids`` that still runs, reap those that are this process's
    children, and wait (at most ``wait_s``) until none runs."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + wait_s
    while True:
        for pid in pids:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)  # a child of ours: reaped, not left a zombie
        if not any(alive(pid) for pid in pids) or time.monotonic() > deadline:
            return
        time.sleep(0.05)
