"""The contract of a task family, checked when one is built (:func:`check_family`).

A family that breaks it fails here with one line naming the family and the method, instead of
training silently on wrong data or crashing deep inside a policy (float64 observations once
trained MAML in float64 and crashed RL²'s GRU with a dtype error). What is checked, on one
held-out task and one training task, two episodes each:

- the attributes: ``name``, ``horizon >= 1``, a ``Box`` observation space of float32 and a
  ``Discrete`` or ``Box`` action space;
- ``test_tasks`` / ``sample_tasks`` return lists of that many tasks, ``task_to_dict`` gives
  JSON-serialisable values, and ``test_tasks`` is prefix-stable (``test_tasks(n)`` is the
  first ``n`` of ``test_tasks(m)``, so ``--tasks 10`` evaluates the first 10 of ``--tasks 40``);
- ``make_batched(...).reset()`` and ``.step(actions)`` return float32 observations
  ``[T, E, *obs_shape]``, rewards ``[T, E]`` and boolean ``terminated`` ``[T, E]``.
"""

from __future__ import annotations

import json
from typing import Any

import gymnasium as gym
import numpy as np

from fastadapt.envs.base import BatchedEnv, TaskFamily
from fastadapt.errors import FamilyError


def _fail(family: str, method: str, problem: str) -> FamilyError:
    return FamilyError(f"task family {family!r}: {method} {problem}")


def _check_array(value: Any, family: str, method: str, what: str, shape: tuple[int, ...],
                 dtypes: tuple[type, ...]) -> None:
    if not isinstance(value, np.ndarray):
        raise _fail(family, method, f"returned {what} as {type(value).__name__}, not a numpy "
                                    "array")
    if value.shape != shape:
        raise _fail(family, method, f"returned {what} of shape {list(value.shape)}, expected "
                                    f"{list(shape)}")
    if not any(np.issubdtype(value.dtype, dtype) for dtype in dtypes):
        names = " or ".join(np.dtype(d).name if d is not np.floating else "float"
                            for d in dtypes)
        fix = " (cast with .astype(np.float32))" if dtypes == (np.float32,) else ""
        raise _fail(family, method, f"returned {what} of dtype {value.dtype}, expected "
                                    f"{names}{fix}")


def _check_attributes(family: TaskFamily[Any], name: str) -> None:
    horizon = getattr(family, "horizon", None)
    if not isinstance(horizon, int) or horizon < 1:
        raise _fail(name, "horizon", f"must be an int >= 1, got {horizon!r}")
    space = getattr(family, "observation_space", None)
    if not isinstance(space, gym.spaces.Box) or space.dtype != np.float32:
        raise _fail(name, "observation_space", f"must be a float32 gymnasium Box, got {space!r}")
    actions = getattr(family, "action_space", None)
    if not isinstance(actions, gym.spaces.Discrete | gym.spaces.Box):
        raise _fail(name, "action_space", f"must be a gymnasium Discrete or Box, got {actions!r}")


def _check_tasks(family: TaskFamily[Any], name: str) -> list[Any]:
    """One held-out and one training task, checked."""
    tasks = []
    for method, got in (("test_tasks(1)", family.test_tasks(1)),
                        ("sample_tasks(rng, 1)", family.sample_tasks(np.random.default_rng(0), 1))):
        if not isinstance(got, list) or len(got) != 1:
            raise _fail(name, method, f"must return a list of 1 task, got {got!r}")
        tasks.append(got[0])
    for task in tasks:
        try:
            json.dumps(family.task_to_dict(task))
        except (TypeError, ValueError) as err:
            raise _fail(name, "task_to_dict", f"must return JSON-serialisable values: "
                                              f"{err}") from err
    _check_prefix_stable(family, name)
    return tasks


def _check_prefix_stable(family: TaskFamily[Any], name: str) -> None:
    """``test_tasks(n)`` must be the first ``n`` of ``test_tasks(m)`` for ``m > n``: else
    ``evaluate --tasks 10`` and ``--tasks 40`` meet different tasks, and runs evaluated with
    different counts cannot be compared task by task."""
    short, long = family.test_tasks(2), family.test_tasks(3)[:2]
    as_json = [json.dumps([family.task_to_dict(t) for t in tasks], sort_keys=True)
               for tasks in (short, long)]
    if as_json[0] != as_json[1]:
        raise _fail(name, "test_tasks", "must be prefix-stable: test_tasks(2) differs from the "
                    "first 2 of test_tasks(3); draw each task's parameters together (task k "
                    "must not depend on how many tasks are asked for)")


def check_family(family: TaskFamily[Any], name: str) -> None:
    """Check ``family`` (registered as ``name``) against the contract (module docstring).

    Raises:
        FamilyError: naming the family, the method and what it returned.
    """
    _check_attributes(family, name)
    tasks = _check_tasks(family, name)
    episodes = 2
    rngs = [np.random.default_rng([0, i]) for i in range(len(tasks))]
    env: BatchedEnv = family.make_batched(tasks, episodes, rngs)
    leading = (len(tasks), episodes)
    obs_shape = (*leading, *family.observation_space.shape)
    _check_array(env.reset(), name, "make_batched(...).reset()", "observations", obs_shape,
                 (np.float32,))
    actions = np.stack([np.stack([family.action_space.sample() for _ in range(episodes)])
                        for _ in tasks])
    result = env.step(actions)
    if not isinstance(result, tuple) or len(result) != 3:
        raise _fail(name, "make_batched(...).step()", "must return (observations, rewards, "
                                                      "terminated)")
    obs, rewards, terminated = result
    method = "make_batched(...).step()"
    _check_array(obs, name, method, "observations", obs_shape, (np.float32,))
    _check_array(rewards, name, method, "rewards", leading, (np.floating,))
    _check_array(terminated, name, method, "terminated", leading, (np.bool_,))
