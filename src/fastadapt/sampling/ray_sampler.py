"""Ray sampler: the tasks of each ``sample`` call split across Ray actors.

Install with ``pip install 'fastadapt[ray]'``. Without ``ray_address`` the sampler starts a
local Ray instance (``ray.init(num_cpus=workers)``, dashboard off, its socket files in a short
temporary directory, the node address pinned to the loopback interface) and shuts it down on
``close()``; with ``ray_address`` (``run.ray_address``, e.g. ``"auto"`` or ``"10.0.0.5:6379"``)
it joins that cluster and only kills its own actors. A Ray instance already initialised in the
process is reused and left running.

Each actor holds the family and the policy, runs one torch thread and answers a
:class:`~fastadapt.sampling.worker_pool.WorkItem` per call with numpy arrays, exactly as the
process sampler's workers do, so the batches equal the in-process sampler's. An actor that dies
(``RayActorError``) is replaced and its item re-run, at most ``max_restarts`` times per call,
then :class:`~fastadapt.errors.WorkerDiedError`; an exception inside an actor becomes
:class:`~fastadapt.errors.WorkerError` with the original message.

Failures of Ray itself:

- an address where no cluster answers is refused after a TCP connect of at most
  :data:`CONNECT_SECONDS` (Ray would wait, logging, for minutes);
- the local instance's raylet dying is seen at the next poll (within a second): the sampler
  raises :class:`~fastadapt.errors.SamplerError` and ``close()`` then kills the instance's
  processes itself (asking a Ray whose raylet is gone to shut down can end this process);
- the local instance's temporary directory, which Ray makes world-writable, is closed to
  other users (``0700``) once Ray runs, removed by ``close()``, and, left behind by a process
  that was killed, removed by the next local instance (its name holds the owner's pid).
- ``ray.init`` takes over SIGTERM in the driver (a ``sys.exit`` behind a native handler that
  prints a stack dump): the handler that was there before is put back, so the ``fastadapt``
  command ends on SIGTERM as on Ctrl-C, closing the actors and the instance.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import torch

from fastadapt.envs.base import TaskFamily
from fastadapt.errors import SamplerError, WorkerDiedError, WorkerError
from fastadapt.sampling.base import SamplingPolicy
from fastadapt.sampling.process_tree import alive, descendants, kill_all
from fastadapt.sampling.worker_pool import (
    ArrayBatch,
    WorkerPoolSampler,
    WorkItem,
    first_line,
    run_item,
)

_POLL_SECONDS = 1.0
CONNECT_SECONDS = 10.0
"""Longest wait for a Ray cluster's address to accept a connection."""
START_SECONDS = 120.0
"""Longest wait for Ray to start an actor (a loaded machine can take tens of seconds)."""
_LOOPBACK = "127.0.0.1"


_TEMP_PREFIX = "fa-ray-"


def remove_stale_temp_dirs(root: Path = Path("/tmp")) -> None:
    """Remove the temporary directories of local instances whose process is gone (named
    ``fa-ray-<pid>-*``; only this user's)."""
    for entry in root.glob(f"{_TEMP_PREFIX}*-*"):
        owner = entry.name[len(_TEMP_PREFIX):].split("-", 1)[0]
        with contextlib.suppress(OSError):
            if owner.isdigit() and entry.stat().st_uid == os.getuid() \
                    and not alive(int(owner)):
                shutil.rmtree(entry, ignore_errors=True)


def check_reachable(ray: Any, address: str, timeout: float = CONNECT_SECONDS) -> None:
    """Refuse an address where no Ray cluster answers (a TCP connect within ``timeout``).

    Raises:
        SamplerError: no cluster is found there, or nothing accepts the connection.
    """
    resolved = address
    if address == "auto":
        try:
            resolved = ray._private.services.canonicalize_bootstrap_address(address)
        except Exception as err:  # no running instance to join
            raise SamplerError(f"cannot connect to Ray at 'auto': {first_line(err)}") from None
    host, _, port = str(resolved).removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise SamplerError(f"run.ray_address {address!r} is not an address: use auto, "
                           "host:port or ray://host:port")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        reason = err.strerror or str(err) or type(err).__name__
        raise SamplerError(f"cannot connect to Ray at {address!r}: nothing answers at "
                           f"{resolved} within {timeout:.0f} s ({reason})") from None


_LOCAL_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
"""Ray reads it once, at import: ``0`` makes a local instance resolve its node address to the
loopback interface, so GCS, raylet and workers listen on 127.0.0.1 only (Ray's default on
Linux is the machine's address)."""


def import_ray(local: bool = False) -> Any:
    """The ``ray`` module.

    Args:
        local: a local instance will be started: unless set already, :data:`_LOCAL_ONLY_ENV`
            is set to ``0`` before Ray is first imported, so it binds to 127.0.0.1.

    Raises:
        SamplerError: Ray is not installed (the message says how to install it).
    """
    if local:
        os.environ.setdefault(_LOCAL_ONLY_ENV, "0")
    try:
        import ray
    except ImportError as err:
        raise SamplerError(
            "the 'ray' sampler needs Ray: pip install 'fastadapt[ray]' "
            f"(or choose --sampler process) [{err}]"
        ) from None
    return ray


def init_ray(ray: Any, address: str | None, num_cpus: int) -> str | None:
    """``ray.init``: join the cluster at ``address`` (checked reachable first), or start a
    local instance of ``num_cpus`` CPUs on the loopback interface, dashboard off, its files in a
    short ``0700`` temporary directory; Ray's start-up lines stay out of the output (its errors
    show). Returns that directory (``None`` when joining a cluster); the caller removes it
    after ``ray.shutdown()``.

    Raises:
        SamplerError: no cluster answers at ``address``, or Ray cannot start.
    """
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                              "logging_level": logging.ERROR}
    temp_dir = None
    if address is None:
        remove_stale_temp_dirs()
        # A short path: Ray's AF_UNIX sockets live under it (about 100 bytes at most).
        temp_dir = tempfile.mkdtemp(prefix=f"{_TEMP_PREFIX}{os.getpid()}-", dir="/tmp")
        kwargs.update(num_cpus=num_cpus, _temp_dir=temp_dir, _node_ip_address=_LOOPBACK)
    else:
        check_reachable(ray, address)
    sigterm = signal.getsignal(signal.SIGTERM)
    try:
        ray.init(address=address, **kwargs)
    except Exception as err:
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)
        where = f"connect to Ray at {address!r}" if address else "start a local Ray instance"
        raise SamplerError(f"cannot {where}: {first_line(err)}") from err
    finally:
        _restore_sigterm(sigterm)
    if temp_dir is not None:
        os.chmod(temp_dir, 0o700)  # Ray made it world-writable
    return temp_dir


def _restore_sigterm(before: Any) -> None:
    """Undo what ``ray.init`` does to SIGTERM in the driver: it installs a handler that calls
    ``sys.exit``, and its core worker then wraps whatever handles SIGTERM in a native one
    that prints a stack dump first. A Python handler that was there before (the ``fastadapt``
    command's: end as on Ctrl-C) is put back, else Ray's own, without the native wrapper."""
    if threading.current_thread() is not threading.main_thread():
        return  # neither Ray nor we may set handlers there
    handler = before if callable(before) else signal.getsignal(signal.SIGTERM)
    if handler is not None:  # None: not set from Python, nothing to put back
        signal.signal(signal.SIGTERM, handler)


class RayWorker:
    """The actor: family, policy and horizon, one torch thread; answers work items."""

    def __init__(self, family: TaskFamily[Any], policy: SamplingPolicy, horizon: int) -> None:
        torch.set_num_threads(1)
        self.family, self.policy, self.horizon = family, policy, horizon

    def pid(self) -> int:
        """The actor's process id (tests kill it)."""
        return os.getpid()

    def sample(self, item: WorkItem) -> ArrayBatch:
        """Episodes of the item's tasks as numpy arrays."""
        return run_item(self.family, self.policy, self.horizon, item)


class RaySampler(WorkerPoolSampler):
    """Samples with ``workers`` Ray actors; same batches as :class:`VectorSampler`.

    Args:
        family, policy, horizon, seed: as for :class:`~fastadapt.sampling.vector.VectorSampler`.
        workers: number of actors (``>= 1``), one CPU each.
        address: a Ray cluster to join; ``None`` starts a local instance.
        max_restarts: actor replacements allowed per ``sample`` call before it raises.

    Raises:
        ConfigError: ``workers < 1``.
        SamplerError: Ray is missing or cannot start / connect.
    """

    kind = "Ray"

    def __init__(
        self,
        family: TaskFamily[Any],
        policy: SamplingPolicy,
        horizon: int,
        seed: int,
        workers: int = 2,
        address: str | None = None,
        max_restarts: int = 2,
    ) -> None:
        super().__init__(seed, workers, max_restarts)
        self._ray = import_ray(local=address is None)
        self._temp_dir: str | None = None
        self._owns_ray = self._node_dead = False
        self._ray_processes: dict[int, str] = {}
        """The local instance's processes (raylet, GCS, workers) by pid, with their names."""
        self._actors: list[Any] = []
        self._init_ray(address)
        try:
            self._actor_class = self._ray.remote(num_cpus=1, max_restarts=0)(RayWorker)
            self._args = (self._ray.put(family), self._ray.put(policy), horizon)
            self._actors = [self._new_actor() for _ in range(workers)]
            self._ray.get([a.pid.remote() for a in self._actors], timeout=START_SECONDS)
        except BaseException as err:
            self.close()
            if isinstance(err, Exception) and not isinstance(err, SamplerError):
                raise SamplerError(f"cannot start Ray actors: {first_line(err)}") from err
            raise

    def _init_ray(self, address: str | None) -> None:
        if self._ray.is_initialized():
            return
        before = set(descendants())
        self._temp_dir = init_ray(self._ray, address, self.num_workers)
        self._owns_ray = True
        if self._temp_dir is not None:
            self._ray_processes = {pid: name for pid, name in descendants().items()
                                   if pid not in before}

    def _check_node(self) -> None:
        """Raise if the local instance's raylet died (seen through ``/proc``).

        Raises:
            SamplerError: naming the raylet.
        """
        for pid, name in self._ray_processes.items():
            if name == "raylet" and not alive(pid):
                self._node_dead = True
                raise SamplerError(f"the local Ray instance's raylet (pid {pid}) died: its "
                                   "actors are gone with it")

    def _new_actor(self) -> Any:
        return self._actor_class.remote(*self._args)

    def worker_pids(self) -> list[int]:
        """Process ids of the actors (tests kill them)."""
        pids: list[int] = self._ray.get([a.pid.remote() for a in self._actors])
        return pids

    @property
    def closed(self) -> bool:
        return not self._actors

    def _run(self, items: list[WorkItem], call: int) -> list[ArrayBatch]:
        """Item ``k`` on actor ``k``; replace dead actors and re-run their items."""
        exceptions = self._ray.exceptions
        pending = {self._actors[k].sample.remote(item): k for k, item in enumerate(items)}
        results: dict[int, ArrayBatch] = {}
        restarts_left = self.max_restarts
        while pending:
            self._check_node()
            ready, _ = self._ray.wait(list(pending), num_returns=1, timeout=_POLL_SECONDS)
            for ref in ready:
                k = pending.pop(ref)
                doing = f"while sampling {items[k].describe()}"
                try:
                    results[k] = self._ray.get(ref)
                except exceptions.RayActorError as err:
                    if restarts_left <= 0:
                        raise WorkerDiedError(
                            f"sampler worker {k} (Ray actor) died {doing}: {first_line(err)}"
                        ) from None
                    restarts_left -= 1
                    pending[self._replace(k).sample.remote(items[k])] = k
                except exceptions.RayTaskError as err:
                    cause = getattr(err, "cause", None) or err
                    raise WorkerError(
                        f"sampler worker {k} (Ray actor) failed {doing}: {first_line(cause)}"
                    ) from None
        return [results[k] for k in range(len(items))]

    def _replace(self, index: int) -> Any:
        with contextlib.suppress(Exception):
            self._ray.kill(self._actors[index])
        self._actors[index] = self._new_actor()
        self.restarts += 1
        return self._actors[index]

    def close(self) -> None:
        """Kill the actors; shut Ray down if this sampler started it (kill its processes if
        its raylet died). Idempotent."""
        actors, self._actors = self._actors, []
        if self._node_dead:
            kill_all(list(self._ray_processes))
        for actor in actors if not self._node_dead else ():
            with contextlib.suppress(Exception):
                self._ray.kill(actor)
        if self._owns_ray:
            self._owns_ray = False
            self._ray.shutdown()
            deadline = time.monotonic() + 10.0
            while self._ray.is_initialized() and time.monotonic() < deadline:
                time.sleep(0.1)
        self._remove_temp_dir()

    def _remove_temp_dir(self) -> None:
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None
