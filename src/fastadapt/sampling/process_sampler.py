"""Multiprocess sampler: the tasks of each ``sample`` call split across worker processes.

Each worker is a process of the ``forkserver`` start method (``spawn`` where there is none; a
forked copy of a threaded parent is never used) running :func:`_worker_main`: one torch thread,
SIGINT ignored (Ctrl-C is the parent's to handle), the family and policy unpickled once at
start. Per call the parent sends each busy worker one
:class:`~fastadapt.sampling.worker_pool.WorkItem` (parameters as numpy arrays) and receives its
episodes as numpy arrays: no per-step messages.

Failures. The parent waits on the workers' pipes *and* process sentinels, so a worker that
dies (SIGKILL, OOM killer, segfault) is seen at once; it is restarted and its work item re-run
(the result is the same: its tasks' random streams do not depend on the process), at most
``max_restarts`` times per call, then :class:`~fastadapt.errors.WorkerDiedError`. An exception
inside a worker becomes :class:`~fastadapt.errors.WorkerError` naming the worker, its tasks and
the original message; a process that cannot be made (``fork`` failing under a process or
memory limit) is a :class:`~fastadapt.errors.SamplerError` naming the worker, the workers
started before it stopped. Replies carry the call number, so a late reply to an abandoned call is
dropped. ``close()`` (also from ``with`` on an exception or Ctrl-C, and at garbage collection)
asks workers to exit, then terminates and finally kills the ones still alive: no process is
left behind.
"""

from __future__ import annotations

import contextlib
import errno
import multiprocessing
import os
import pickle
import signal
import time
import weakref
from multiprocessing.connection import Connection, wait
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from typing import Any

import torch

from fastadapt.envs.base import TaskFamily
from fastadapt.errors import SamplerError, WorkerDiedError, WorkerError
from fastadapt.sampling.base import SamplingPolicy
from fastadapt.sampling.worker_pool import (
    ArrayBatch,
    WorkerPoolSampler,
    WorkItem,
    first_line,
    run_item,
)

_READY_CALL = -1
"""Call number of a worker's start-up message."""
_POLL_SECONDS = 1.0
_EXIT_SECONDS = 2.0


def _worker_main(conn: Connection, payload: bytes) -> None:
    """A worker's loop: answer ``(call, WorkItem)`` messages until ``None`` or a closed pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)
    try:
        try:
            family, policy, horizon = pickle.loads(payload)  # our own bytes, from the parent
        except Exception as err:  # reported to the parent
            conn.send((_READY_CALL, "error", first_line(err)))
            return
        conn.send((_READY_CALL, "ready", os.getpid()))
    except OSError:  # the parent ended (Ctrl-C, SIGTERM) while this worker started: quietly
        return
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        if message is None:
            return
        call, item = message
        reply: tuple[int, str, Any]
        try:
            reply = (call, "ok", run_item(family, policy, horizon, item))
        except Exception as err:  # reported to the parent
            reply = (call, "error", first_line(err))
        try:
            conn.send(reply)
        except (BrokenPipeError, OSError):
            return


_START_HINTS = {errno.EAGAIN: "a process limit? ", errno.ENOMEM: "a memory limit? "}


def _start_failure(err: BaseException, index: int, workers: int) -> SamplerError:
    """The one line for a worker process that could not be made (``fork`` failing under a
    process or memory limit: ``EAGAIN``, ``ENOMEM``; the fork server ending instead)."""
    if isinstance(err, OSError):
        reason = err.strerror or str(err) or type(err).__name__
        hint = _START_HINTS.get(err.errno or 0, "")
    else:  # EOFError: the fork server died, as it does when its own fork fails
        reason, hint = "the fork server could not make its process", _START_HINTS[errno.EAGAIN]
    return SamplerError(f"cannot start sampler worker {index} of {workers}: {reason} "
                        f"({hint}lower run.workers)")


class _Worker:
    """A worker process and the parent's end of its pipe.

    Raises:
        SamplerError: the process cannot be made (:func:`_start_failure`).
    """

    def __init__(self, ctx: BaseContext, payload: bytes, index: int, workers: int) -> None:
        self.index = index
        self.conn, child = ctx.Pipe(duplex=True)
        self.process: BaseProcess = ctx.Process(  # type: ignore[attr-defined]
            target=_worker_main, args=(child, payload), name=f"fastadapt-sampler-{index}",
            daemon=True,
        )
        try:
            self.process.start()
        except (OSError, EOFError) as err:
            self.conn.close()
            raise _start_failure(err, index, workers) from err
        finally:
            child.close()
        self.busy = False
        """A work item was sent and its reply not yet received."""

    def send(self, call: int, item: WorkItem) -> None:
        self.conn.send((call, item))
        self.busy = True

    @property
    def pid(self) -> int:
        return int(self.process.pid or 0)

    def describe(self) -> str:
        return f"sampler worker {self.index} (pid {self.pid})"

    def death(self) -> str:
        """How the process ended, e.g. ``killed by SIGKILL``."""
        self.process.join(timeout=_POLL_SECONDS)
        code = self.process.exitcode
        if code is not None and code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exited with code {code}"

    def stop(self) -> None:
        """Ask an idle process to exit, then terminate, then kill it; close the pipe."""
        if self.process.is_alive() and not self.busy:
            with contextlib.suppress(BrokenPipeError, OSError):
                self.conn.send(None)
            self.process.join(timeout=_EXIT_SECONDS)
        for method in ("terminate", "kill"):
            if self.process.is_alive():
                getattr(self.process, method)()
                self.process.join(timeout=_EXIT_SECONDS)
        self.conn.close()


def _stop_all(workers: list[_Worker]) -> None:
    for worker in workers:
        worker.stop()
    workers.clear()


def default_start_method() -> str:
    """``forkserver`` where available (Linux, macOS), else ``spawn``."""
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


class ProcessSampler(WorkerPoolSampler):
    """Samples with ``workers`` processes; same batches as :class:`VectorSampler`.

    Args:
        family, policy, horizon, seed: as for :class:`~fastadapt.sampling.vector.VectorSampler`.
        workers: number of worker processes (``>= 1``).
        max_restarts: restarts of dead workers allowed per ``sample`` call before it raises.
        timeout_s: longest wait for a whole ``sample`` call (``None``: no limit; dead workers
            are detected regardless).
        start_method: ``forkserver`` or ``spawn`` (default: :func:`default_start_method`).

    Raises:
        ConfigError: ``workers < 1``.
        SamplerError: a worker process cannot be made (a process limit); the workers started
            before it are stopped.
        WorkerError: a worker could not start (e.g. the family cannot be unpickled there).
    """

    kind = "process"

    def __init__(
        self,
        family: TaskFamily[Any],
        policy: SamplingPolicy,
        horizon: int,
        seed: int,
        workers: int = 2,
        max_restarts: int = 2,
        timeout_s: float | None = None,
        start_method: str | None = None,
    ) -> None:
        super().__init__(seed, workers, max_restarts)
        self.timeout_s = timeout_s
        method = start_method or default_start_method()
        self._ctx = multiprocessing.get_context(method)
        if method == "forkserver":
            self._ctx.set_forkserver_preload(["fastadapt.sampling.process_sampler"])
        self._payload = pickle.dumps((family, policy, horizon))
        self._workers: list[_Worker] = []
        self._finalizer = weakref.finalize(self, _stop_all, self._workers)
        try:
            for index in range(workers):
                self._workers.append(self._start(index))
        except BaseException:
            self.close()
            raise

    def _start(self, index: int) -> _Worker:
        """Start worker ``index`` and wait for its ready message."""
        worker = _Worker(self._ctx, self._payload, index, self.num_workers)
        try:
            self._receive(worker, _READY_CALL, "starting")
        except BaseException:
            worker.stop()
            raise
        return worker

    def _receive(self, worker: _Worker, call: int, doing: str) -> Any:
        """The next reply of ``worker`` to ``call`` (older replies are dropped)."""
        while True:
            wait([worker.conn, worker.process.sentinel])
            try:
                reply_call, status, value = worker.conn.recv()
            except (EOFError, OSError):
                raise WorkerDiedError(f"{worker.describe()} died while {doing}: "
                                      f"{worker.death()}") from None
            if reply_call != call:
                continue
            worker.busy = False
            if status == "error":
                raise WorkerError(f"{worker.describe()} failed while {doing}: {value}")
            return value

    def worker_pids(self) -> list[int]:
        """Process ids of the live workers (tests kill them)."""
        return [w.pid for w in self._workers]

    @property
    def closed(self) -> bool:
        return not self._workers

    def _send(self, k: int, call: int, item: WorkItem, restarts_left: int) -> int:
        """Send ``item`` to worker ``k``, restarting it if it died (its pipe broke) since the
        last call; returns the restarts left.

        Raises:
            WorkerDiedError: it died and no restart is left.
        """
        while True:
            worker = self._workers[k]
            try:
                worker.send(call, item)
                return restarts_left
            except (BrokenPipeError, ConnectionResetError, EOFError, OSError):
                if restarts_left <= 0:
                    raise WorkerDiedError(
                        f"{worker.describe()} died before {item.describe()}: "
                        f"{worker.death()}") from None
                restarts_left -= 1
                self._restart(k)

    def _run(self, items: list[WorkItem], call: int) -> list[ArrayBatch]:
        """Item ``k`` on worker ``k``; restart dead workers and re-run their items; a
        :class:`SamplerError` once ``timeout_s`` has passed."""
        restarts_left = self.max_restarts
        for k, item in enumerate(items):
            restarts_left = self._send(k, call, item, restarts_left)
        results: dict[int, ArrayBatch] = {}
        deadline = None if self.timeout_s is None else time.monotonic() + self.timeout_s
        while len(results) < len(items):
            pending = [k for k in range(len(items)) if k not in results]
            handles = [h for k in pending for h in (self._workers[k].conn,
                                                    self._workers[k].process.sentinel)]
            wait(handles, timeout=_POLL_SECONDS)
            for k in pending:
                worker = self._workers[k]
                if not (worker.conn.poll() or not worker.process.is_alive()):
                    continue
                try:
                    results[k] = self._receive(worker, call, f"sampling {items[k].describe()}")
                except WorkerDiedError:
                    if restarts_left <= 0:
                        raise
                    restarts_left -= 1
                    self._restart(k)
                    restarts_left = self._send(k, call, items[k], restarts_left)
            if deadline is not None and time.monotonic() > deadline:
                raise SamplerError(f"sample call {call} took longer than {self.timeout_s} s")
        return [results[k] for k in range(len(items))]

    def _restart(self, index: int) -> _Worker:
        self._workers[index].stop()
        self._workers[index] = self._start(index)
        self.restarts += 1
        return self._workers[index]

    def close(self) -> None:
        """Stop every worker (ask, then SIGTERM, then SIGKILL); idempotent."""
        _stop_all(self._workers)
