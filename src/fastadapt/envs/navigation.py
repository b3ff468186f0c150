"""2D navigation (Finn et al. 2017, §5.3; pytorch-maml-rl ``navigation.py``).

A point starts at the origin and moves in the plane. Task: a goal ``g ~ U[-0.5, 0.5]^2``.

- observation: the position ``p`` (2,),
- action: a displacement, clipped to ``[-0.1, 0.1]^2`` by the env,
- reward: ``-||p' - g||_2`` after the move,
- termination: when ``|p' - g|_inf < 0.01`` (both coordinates within 0.01 of the goal),
- horizon: 100 steps.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from fastadapt.envs.base import BatchedEnv, RandomStreams, TaskFamily
from fastadapt.errors import TaskError

GOAL_LOW, GOAL_HIGH = -0.5, 0.5
MAX_STEP = 0.1
GOAL_TOLERANCE = 0.01


@dataclass(frozen=True)
class NavigationTask:
    """Goal position of a 2D navigation task."""

    goal_x: float
    goal_y: float


class BatchedNavigation(BatchedEnv):
    """``[T, E]`` points moving towards their task's goal, stepped as one array op."""

    def __init__(self, tasks: list[NavigationTask], episodes_per_task: int) -> None:
        self.num_tasks, self.episodes_per_task = len(tasks), episodes_per_task
        goals = np.array([[t.goal_x, t.goal_y] for t in tasks], dtype=np.float32)  # [T, 2]
        self._goals = goals[:, None, :]  # [T, 1, 2]
        self._positions = np.zeros((self.num_tasks, episodes_per_task, 2), dtype=np.float32)

    def reset(self) -> np.ndarray:
        self._positions[:] = 0.0
        return self._positions.copy()

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self._positions += np.clip(actions, -MAX_STEP, MAX_STEP)  # float32 in place
        offset = self._positions - self._goals
        # per coordinate, not reductions over a last axis of 2 (half the time per step)
        rewards = -np.hypot(offset[..., 0], offset[..., 1])
        near = np.abs(offset) < GOAL_TOLERANCE
        return self._positions.copy(), rewards, near[..., 0] & near[..., 1]


class Navigation2D(TaskFamily[NavigationTask]):
    """Point-mass navigation to a goal in ``[-0.5, 0.5]^2`` (Finn et al. 2017)."""

    name = "Navigation2D"
    horizon = 100
    reference = "Finn et al. 2017, Model-Agnostic Meta-Learning, §5.3"
    position_dims = (0, 1)

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = gym.spaces.Box(-MAX_STEP, MAX_STEP, (2,), np.float32)

    @property
    def task_space(self) -> str:
        return f"goal ~ U[{GOAL_LOW}, {GOAL_HIGH}]^2"

    def _draw_tasks(self, rng: np.random.Generator, num_tasks: int) -> list[NavigationTask]:
        goals = rng.uniform(GOAL_LOW, GOAL_HIGH, size=(num_tasks, 2))
        return [NavigationTask(float(x), float(y)) for x, y in goals]

    def validate_task(self, task: NavigationTask) -> None:
        if not isinstance(task, NavigationTask):
            raise TaskError(f"Navigation2D expects a NavigationTask, got {type(task).__name__}")
        for value in (task.goal_x, task.goal_y):
            if not GOAL_LOW <= value <= GOAL_HIGH:
                raise TaskError(
                    f"Navigation2D goal coordinate {value} is outside [{GOAL_LOW}, {GOAL_HIGH}]"
                )

    def make_batched(
        self, tasks: list[NavigationTask], episodes_per_task: int, rng: RandomStreams
    ) -> BatchedNavigation:
        for task in tasks:
            self.validate_task(task)
        return BatchedNavigation(tasks, episodes_per_task)

    def task_to_dict(self, task: NavigationTask) -> dict[str, Any]:
        return asdict(task)
