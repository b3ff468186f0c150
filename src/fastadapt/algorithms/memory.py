"""Whether a run fits in memory, estimated before anything is allocated.

A config can ask for more than any machine holds (``policy.hidden_sizes: [100000, 100000]``
is a policy of 10^10 parameters; ``tasks_per_iteration: 1000000000`` a billion tasks and their
episodes; ``fastadapt evaluate --tasks 1000000000`` a billion held-out tasks). Allocating it
ends in a traceback, in the kernel's OOM killer or in hours of swapping, and only after the run
directory is made. The estimates here take microseconds and refuse such a run with one line
first. They are lower bounds (float32 parameters, their gradient and one optimizer or search
state; the arrays of one batch of episodes; a task and its two random generators), so a
config they pass may still be too big, but one they refuse cannot fit: the machine's physical
memory is the limit (``os.sysconf``; not checked where the platform does not say).

What an algorithm builds comes from its config section:
:meth:`~fastadapt.config.AlgorithmConfig.network_widths` (the MLP policy's
``policy.hidden_sizes`` unless the section says otherwise) and
:meth:`~fastadapt.config.AlgorithmConfig.episodes_held_per_task`.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import gymnasium as gym

from fastadapt.algorithms.base import MetaTestProtocol
from fastadapt.config import TrainConfig
from fastadapt.envs.base import TaskFamily
from fastadapt.errors import ConfigError
from fastadapt.policies.mlp import mlp_parameter_count
from fastadapt.quoting import shorten

__all__ = ["check_meta_test_memory", "check_training_memory", "physical_memory"]

BYTES_PER_FLOAT = 4
"""float32: parameters, observations, actions, rewards."""
PARAMETER_COPIES = 3
"""The parameters, their gradient and one optimizer or search state (Adam holds two: a lower
bound)."""
STEP_FLOATS = 4
"""Floats per step besides the observation and the action: reward, mask, termination and a
log-probability or value."""
TASK_BYTES = 2048
"""A task's value and its two random generators (measured: about 2 KB)."""


class Need(NamedTuple):
    """Memory one part of a run needs, and the words that name it in an error."""

    what: str
    """What asks for it, e.g. ``policy.hidden_sizes [64, 64] make a network of 4.4e+03
    parameters``."""
    bytes: int
    detail: str
    """Words after the size, e.g. `` with its gradients and optimizer state``."""
    fix: str
    """What to do, e.g. ``use smaller layers``."""


def physical_memory() -> int | None:
    """The machine's physical memory in bytes; ``None`` where the platform does not say."""
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None
    return pages * page_size if pages > 0 and page_size > 0 else None


def check_training_memory(config: TrainConfig, family: TaskFamily[Any]) -> None:
    """Refuse a training run whose networks and one iteration's episodes cannot fit in memory.

    Args:
        config: the resolved run config (its algorithm section set).
        family: the task family (its observation and action spaces, its horizon).

    Raises:
        ConfigError: one line naming the key that asks for too much, the estimate and the
            machine's memory.
    """
    section = config.algorithm_config
    if section is None:  # the algorithm refuses it itself
        return
    obs_dim, action_dim = _flat_dim(family.observation_space), _flat_dim(family.action_space)
    needs = []
    for key, widths in section.network_widths(config.policy).items():
        count = mlp_parameter_count([obs_dim, *widths, action_dim])
        needs.append(Need(f"{key} {shorten(list(widths))} make a network of {count:.1e} "
                          "parameters", count * BYTES_PER_FLOAT * PARAMETER_COPIES,
                          " with its gradients and optimizer state", "use smaller layers"))
    tasks_key, tasks = section.tasks_held()
    needs.append(_batch_need(
        f"training holds {tasks} tasks at once ({tasks_key})",
        tasks, section.episodes_held_per_task(),
        config.env.horizon or family.horizon, obs_dim + action_dim,
        f"lower {tasks_key}, the episodes per task or env.horizon",
        family.simulator_bytes_per_task))
    _check(needs)


def check_meta_test_memory(family: TaskFamily[Any], horizon: int, num_tasks: int,
                           protocol: MetaTestProtocol) -> None:
    """Refuse a meta-test whose held-out tasks and episodes cannot fit in memory.

    Args:
        family: the task family the algorithm steps.
        horizon: steps per episode.
        num_tasks: held-out tasks.
        protocol: the adaptation steps and episodes per task.

    Raises:
        ConfigError: one line naming the task count, the estimate and the machine's memory.
    """
    last = protocol.eval_episodes_per_task or protocol.episodes_per_task
    episodes = protocol.adaptation_steps * protocol.episodes_per_task + last
    dims = _flat_dim(family.observation_space) + _flat_dim(family.action_space)
    _check([_batch_need(
        f"the meta-test holds {num_tasks} held-out tasks (evaluate --tasks or "
        "evaluate.num_tasks)", num_tasks, episodes, horizon, dims,
        "evaluate on fewer tasks or episodes", family.simulator_bytes_per_task)])


def _batch_need(tasks_held: str, tasks: int, episodes: int, horizon: int, dims: int, fix: str,
                simulator_bytes: int = 0) -> Need:
    """The tasks, their generators and simulators (``simulator_bytes`` each, the family's
    :attr:`~fastadapt.envs.base.TaskFamily.simulator_bytes_per_task`) and their episodes'
    arrays (observations, actions, rewards, masks, ...: ``[tasks, episodes, horizon, dims +
    STEP_FLOATS]`` floats)."""
    per_task = (TASK_BYTES + simulator_bytes
                + episodes * horizon * (dims + STEP_FLOATS) * BYTES_PER_FLOAT)
    plural = "" if episodes == 1 else "s"
    return Need(f"{tasks_held} x {episodes} episode{plural} x {horizon} steps",
                tasks * per_task, "", fix)


def _flat_dim(space: gym.Space[Any]) -> int:
    """Floats a value of ``space`` takes (a ``Discrete`` space: one per action, the logits)."""
    try:
        return int(gym.spaces.flatdim(space))
    except (NotImplementedError, TypeError, ValueError):
        return 1


def _check(needs: list[Need]) -> None:
    limit = physical_memory()
    total = sum(need.bytes for need in needs)
    if limit is None or total <= limit:
        return
    largest = max(needs, key=lambda need: need.bytes)
    machine = f"more than this machine's {_size(limit)} of memory"
    if largest.bytes > limit:
        raise ConfigError(f"{largest.what}: about {_size(largest.bytes)}{largest.detail}, "
                          f"{machine}: {largest.fix}")
    parts = ", ".join(f"{need.what}: {_size(need.bytes)}" for need in needs)
    raise ConfigError(f"this run needs about {_size(total)} ({parts}), {machine}: "
                      f"{largest.fix}")


def _size(num_bytes: float) -> str:
    """``23 GiB``, ``1.1 TiB``: a size in binary units (an exponent past EiB)."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if num_bytes < 1024 or unit == "EiB":
            break
        num_bytes /= 1024
    if num_bytes >= 1024:
        return f"{num_bytes:.1e} {unit}"
    return f"{num_bytes:.0f} {unit}" if num_bytes >= 10 else f"{num_bytes:.1f} {unit}"
