"""Work items of the worker-based samplers: tasks split across workers, numpy in and out.

A ``sample`` call of a sampler with ``W`` workers splits its ``T`` tasks into at most ``W``
contiguous chunks; each worker gets one :class:`WorkItem` (its tasks, their parameters as numpy
arrays, the seed, the call counter and the global index of its first task), runs
:func:`~fastadapt.sampling.rollout.rollout` on it and answers with the episodes as numpy arrays
(:data:`ArrayTrajectories`): one message each way per call, nothing per step. Parameters that
are the same for every task (``theta`` before adaptation: a stride-0 view) travel once, not
``T`` times. Since every task draws from its own streams, concatenating the chunks gives the
batch the in-process sampler would have returned.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, NamedTuple

import numpy as np
import torch

from fastadapt.envs.base import TaskFamily
from fastadapt.errors import ConfigError, SamplerError
from fastadapt.policies.mlp import Policy
from fastadapt.sampling.base import SeededSampler
from fastadapt.sampling.rollout import rollout
from fastadapt.types import Params, Trajectories

ArrayTrajectories = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None,
                          np.ndarray | None]
"""``(observations, actions, rewards, masks, successes, unstable)`` of :class:`Trajectories`
as numpy arrays (the last two ``None`` for families that report no success / no physics)."""

PackedParams = dict[str, tuple[bool, np.ndarray]]
"""Parameters by name as ``(shared, array)``: ``shared`` arrays hold one copy without the
``[T]`` axis (expanded again on arrival), the others ``[T_chunk, ...]``."""


class WorkItem(NamedTuple):
    """One worker's share of a ``sample`` call.

    Attributes:
        params: the chunk's per-task parameters, packed.
        tasks: the chunk's tasks.
        episodes_per_task: ``E``.
        seed: the sampler's seed.
        call: the sampler's call counter for this ``sample``.
        first_task: global index of ``tasks[0]`` in the call's task list.
    """

    params: PackedParams
    tasks: list[Any]
    episodes_per_task: int
    seed: int
    call: int
    first_task: int

    def describe(self) -> str:
        """``tasks 3-5 of call 7``, for error messages."""
        last = self.first_task + len(self.tasks) - 1
        return f"tasks {self.first_task}-{last} of sample call {self.call}"


def split_tasks(num_tasks: int, workers: int) -> list[range]:
    """Contiguous, non-empty chunks of ``range(num_tasks)`` for at most ``workers`` workers;
    sizes differ by at most one."""
    chunks = np.array_split(np.arange(num_tasks), min(workers, num_tasks))
    return [range(int(c[0]), int(c[-1]) + 1) for c in chunks if len(c)]


def pack_params(params: Params, chunk: range) -> PackedParams:
    """The parameters of the tasks in ``chunk`` as numpy arrays (shared ones sent once)."""
    packed: PackedParams = {}
    for name, value in params.items():
        value = value.detach()
        if value.shape[0] > 1 and value.stride(0) == 0:  # expand_to_tasks: same for all tasks
            packed[name] = (True, value[0].contiguous().numpy())
        else:
            packed[name] = (False, value[chunk.start : chunk.stop].contiguous().numpy())
    return packed


def unpack_params(packed: PackedParams, num_tasks: int) -> Params:
    """Per-task tensors ``[T_chunk, ...]`` from :func:`pack_params` (shared ones expanded)."""
    params: Params = {}
    for name, (shared, array) in packed.items():
        value = torch.from_numpy(array)
        params[name] = value.expand(num_tasks, *value.shape) if shared else value
    return params


def run_item(family: TaskFamily[Any], policy: Policy, horizon: int, item: WorkItem
             ) -> ArrayTrajectories:
    """Roll out a work item (in a worker): its episodes ``[T_chunk, E, H, ...]`` as arrays."""
    params = unpack_params(item.params, len(item.tasks))
    result = rollout(
        family, policy, horizon, params, item.tasks, item.episodes_per_task,
        item.seed, item.call, item.first_task,
    )
    obs, actions, rewards, masks = (x.numpy() for x in result[:4])
    successes = None if result.successes is None else result.successes.numpy()
    unstable = None if result.unstable is None else result.unstable.numpy()
    return obs, actions, rewards, masks, successes, unstable


def merge(chunks: list[ArrayTrajectories]) -> Trajectories:
    """Concatenate the chunks' episodes along the task axis, in chunk order."""
    def cat(arrays: tuple[Any, ...]) -> torch.Tensor:
        return torch.from_numpy(np.concatenate(arrays))

    obs, actions, rewards, masks, successes, unstable = zip(*chunks, strict=True)
    return Trajectories(cat(obs), cat(actions), cat(rewards), cat(masks),
                        None if successes[0] is None else cat(successes),
                        None if unstable[0] is None else cat(unstable))


def first_line(error: BaseException) -> str:
    """``TypeName: first line of the message``: one line for an error report."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


class WorkerPoolSampler(SeededSampler):
    """A sampler that splits each call's tasks across ``workers`` workers (processes, actors).

    Subclasses run the items (:meth:`_run`) and say whether they are closed.

    Args:
        seed: seeds every task's streams.
        workers: number of workers (``>= 1``).
        max_restarts: replacements of dead workers allowed per ``sample`` call.
    """

    kind = "worker"
    """Name in error messages (``process``, ``Ray``)."""

    def __init__(self, seed: int, workers: int, max_restarts: int) -> None:
        super().__init__(seed)
        if workers < 1:
            raise ConfigError(f"sampler workers must be >= 1, got {workers}")
        self.num_workers, self.max_restarts = workers, max_restarts
        self.restarts = 0
        """Dead workers replaced so far."""

    @property
    @abstractmethod
    def closed(self) -> bool:
        """Whether :meth:`close` released the workers."""

    @abstractmethod
    def _run(self, items: list[WorkItem], call: int) -> list[ArrayTrajectories]:
        """Item ``k`` on worker ``k``; the chunks' episodes in item order."""

    def sample(self, params: Params, tasks: list[Any], episodes_per_task: int) -> Trajectories:
        """Episodes ``[T, E, H, ...]`` of ``tasks``, identical to ``VectorSampler.sample``.

        Raises:
            WorkerError: a worker raised (e.g. its env failed).
            WorkerDiedError: workers died more than ``max_restarts`` times in this call.
            SamplerError: the sampler is closed (or a subclass's own limit passed).
        """
        if self.closed:
            raise SamplerError(f"the {self.kind} sampler is closed")
        call = self.next_call(params, tasks)
        items = [
            WorkItem(pack_params(params, chunk), tasks[chunk.start : chunk.stop],
                     episodes_per_task, self.seed, call, chunk.start)
            for chunk in split_tasks(len(tasks), self.num_workers)
        ]
        return merge(self._run(items, call))
