"""GoalLine: a point on a line walks to a goal it does not see (the smallest task family).

- task: a goal ``g ~ U[-1, 1]``;
- observation: the position ``x`` (1,), float32, starting at 0;
- action: a step, clipped to ``[-0.2, 0.2]`` by the env;
- reward: ``-|x' - g|`` after the step; no termination; horizon 20.

A family is a :class:`fastadapt.TaskFamily`: it draws tasks, checks them, describes them, and
steps ``[T tasks, E episodes]`` at once in a :class:`fastadapt.BatchedEnv` of numpy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

import fastadapt
from fastadapt.errors import TaskError

MAX_STEP = 0.2


@dataclass(frozen=True)
class GoalLineTask:
    """The goal's position."""

    goal: float


class BatchedGoalLine(fastadapt.BatchedEnv):
    """``[T, E]`` points stepped as one array op (no randomness: the task decides all)."""

    def __init__(self, tasks: list[GoalLineTask], episodes_per_task: int) -> None:
        self.num_tasks, self.episodes_per_task = len(tasks), episodes_per_task
        self._goals = np.array([[t.goal] for t in tasks], dtype=np.float32)[:, :, None]
        self._x = np.zeros((self.num_tasks, episodes_per_task, 1), dtype=np.float32)

    def reset(self) -> np.ndarray:
        self._x[:] = 0.0
        return self._x.copy()

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self._x += np.clip(actions, -MAX_STEP, MAX_STEP).astype(np.float32)
        rewards = -np.abs(self._x - self._goals)[..., 0]
        return self._x.copy(), rewards, np.zeros(rewards.shape, dtype=bool)


class GoalLine(fastadapt.TaskFamily[GoalLineTask]):
    """A point walking to a hidden goal on a line."""

    name = "GoalLine"
    horizon = 20
    reference = "fastadapt's plugin example (a 1-D version of Finn et al. 2017's navigation)"

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
        self.action_space = gym.spaces.Box(-MAX_STEP, MAX_STEP, (1,), np.float32)

    @property
    def task_space(self) -> str:
        return "goal ~ U[-1, 1]"

    def _draw_tasks(self, rng: np.random.Generator, num_tasks: int) -> list[GoalLineTask]:
        return [GoalLineTask(float(g)) for g in rng.uniform(-1.0, 1.0, num_tasks)]

    def validate_task(self, task: GoalLineTask) -> None:
        if not isinstance(task, GoalLineTask) or not -1.0 <= task.goal <= 1.0:
            raise TaskError(f"GoalLine expects a GoalLineTask with goal in [-1, 1], got {task}")

    def make_batched(self, tasks: list[GoalLineTask], episodes_per_task: int,
                     rng: Any) -> BatchedGoalLine:
        for task in tasks:
            self.validate_task(task)
        return BatchedGoalLine(tasks, episodes_per_task)

    def task_to_dict(self, task: GoalLineTask) -> dict[str, Any]:
        return {"goal": task.goal}


# Registers the family when the module is imported (--plugin, plugins:); an installed package
# is found through its entry point as well, and registering the same class twice is a no-op.
fastadapt.register_family("GoalLine", GoalLine)
