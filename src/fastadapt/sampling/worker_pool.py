"""The pool of the worker-based samplers (:class:`WorkerPoolSampler`, the base of the process and
Ray samplers) and its work items: tasks split across workers, numpy in and out.

A ``sample`` (or ``sample_trials``) call of a sampler with ``W`` workers splits its ``T`` tasks
into at most ``W`` contiguous chunks; each worker gets one :class:`WorkItem` (its tasks, their
parameters as numpy arrays, what to roll out, and the key of their random streams: the seed,
the call counter and the global index of its first task), runs
:func:`~fastadapt.sampling.rollout.rollout` (or :func:`~fastadapt.sampling.trials.trial_rollout`)
on it and answers with the result's fields as
numpy arrays (:data:`ArrayBatch`): one message each way per call, nothing per step. Parameters
that are the same for every task (``theta`` before adaptation: a stride-0 view; a recurrent
policy's shared parameters) travel once, not ``T`` times. Since every task draws from its own
streams, concatenating the chunks gives the batch the in-process sampler would have returned.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, NamedTuple

import numpy as np
import torch

from fastadapt.envs.base import TaskFamily
from fastadapt.errors import ConfigError, SamplerError
from fastadapt.sampling.base import SeededSampler
from fastadapt.sampling.rollout import StreamKey, rollout
from fastadapt.sampling.trials import trial_rollout
from fastadapt.types import Params, Trajectories, Trials

ArrayBatch = tuple[np.ndarray | None, ...]
"""The fields of a :class:`~fastadapt.types.Trajectories` or :class:`~fastadapt.types.Trials`
as numpy arrays, in field order (``None`` where the result has none, e.g. the successes of a
family that reports none)."""

PackedParams = dict[str, tuple[bool, np.ndarray]]
"""Parameters by name as ``(shared, array)``: ``shared`` arrays hold one copy without the
``[T]`` axis (expanded again on arrival for per-task parameters), the others
``[T_chunk, ...]``."""


class EpisodeRequest(NamedTuple):
    """``E`` independent episodes of each task with per-task parameters ``[T, ...]``."""

    episodes_per_task: int


class TrialRequest(NamedTuple):
    """``B`` trials of ``n`` episodes of each task with a recurrent policy's shared
    parameters."""

    trials_per_task: int
    episodes_per_trial: int


Request = EpisodeRequest | TrialRequest


class WorkItem(NamedTuple):
    """One worker's share of a sampling call.

    Attributes:
        params: the chunk's parameters, packed.
        tasks: the chunk's tasks.
        request: what to roll out.
        key: the sampler's seed, the call's counter and the global index of ``tasks[0]`` in
            the call's task list (what keys the tasks' random streams).
    """

    params: PackedParams
    tasks: list[Any]
    request: Request
    key: StreamKey

    def describe(self) -> str:
        """``tasks 3-5 of call 7``, for error messages."""
        first, call = self.key.first_task, self.key.call
        return f"tasks {first}-{first + len(self.tasks) - 1} of sample call {call}"


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


def pack_shared(params: Params) -> PackedParams:
    """Shared parameters (no ``[T]`` axis) as numpy arrays, for every worker alike."""
    return {name: (True, value.detach().contiguous().numpy()) for name, value in params.items()}


def unpack_params(packed: PackedParams, num_tasks: int | None) -> Params:
    """Tensors from :func:`pack_params` (per-task ``[T_chunk, ...]``: shared ones expanded to
    ``num_tasks``) or from :func:`pack_shared` (``num_tasks`` ``None``: as they were)."""
    params: Params = {}
    for name, (shared, array) in packed.items():
        value = torch.from_numpy(array)
        if shared and num_tasks is not None:
            value = value.expand(num_tasks, *value.shape)
        params[name] = value
    return params


def run_item(family: TaskFamily[Any], policy: Any, horizon: int, item: WorkItem) -> ArrayBatch:
    """Roll out a work item (in a worker): the result's fields as arrays, task axis first."""
    request = item.request
    result: Trajectories | Trials
    if isinstance(request, TrialRequest):
        result = trial_rollout(
            family, policy, horizon, unpack_params(item.params, None), item.tasks,
            request.trials_per_task, request.episodes_per_trial, item.key,
        )
    else:
        result = rollout(
            family, policy, horizon, unpack_params(item.params, len(item.tasks)), item.tasks,
            request.episodes_per_task, item.key,
        )
    return tuple(None if field is None else field.numpy() for field in result)


def merge(chunks: list[ArrayBatch], request: Request) -> Trajectories | Trials:
    """Concatenate the chunks' fields along the task axis, in chunk order."""
    kind = Trials if isinstance(request, TrialRequest) else Trajectories
    fields: list[Any] = [None if arrays[0] is None else torch.from_numpy(np.concatenate(arrays))
                         for arrays in zip(*chunks, strict=True)]
    return kind(*fields)


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
    def _run(self, items: list[WorkItem], call: int) -> list[ArrayBatch]:
        """Item ``k`` on worker ``k``; the chunks' results in item order."""

    def _split_call(self, params: Params, tasks: list[Any], request: Request
                    ) -> Trajectories | Trials:
        """One call's work items, run, merged (see :meth:`sample`)."""
        if self.closed:
            raise SamplerError(f"the {self.kind} sampler is closed")
        trials = isinstance(request, TrialRequest)
        call = self.next_call(params, tasks, per_task=not trials)
        items = [
            WorkItem(pack_shared(params) if trials else pack_params(params, chunk),
                     tasks[chunk.start : chunk.stop], request,
                     StreamKey(self.seed, call, chunk.start))
            for chunk in split_tasks(len(tasks), self.num_workers)
        ]
        return merge(self._run(items, call), request)

    def sample(self, params: Params, tasks: list[Any], episodes_per_task: int) -> Trajectories:
        """Episodes ``[T, E, H, ...]`` of ``tasks``, identical to ``VectorSampler.sample``.

        Raises:
            WorkerError: a worker raised (e.g. its env failed).
            WorkerDiedError: workers died more than ``max_restarts`` times in this call.
            SamplerError: the sampler is closed (or a subclass's own limit passed).
        """
        result = self._split_call(params, tasks, EpisodeRequest(episodes_per_task))
        assert isinstance(result, Trajectories)
        return result

    def sample_trials(self, params: Params, tasks: list[Any], trials_per_task: int,
                      episodes_per_trial: int) -> Trials:
        """Trials ``[T, B, L, ...]`` of ``tasks``, identical to ``VectorSampler.sample_trials``
        (raises as :meth:`sample`)."""
        result = self._split_call(params, tasks,
                                  TrialRequest(trials_per_task, episodes_per_trial))
        assert isinstance(result, Trials)
        return result
