"""The sparse-reward point robot of PEARL (Rakelly et al. 2019, §6.3; oyster
``rlkit/envs/point_robot.py``, ``SparsePointEnv``).

A point starts at the origin and moves in the plane. Task: a goal on the upper half of the unit
circle, ``g = (cos theta, sin theta)``, ``theta ~ U[0, pi]`` (the reference spaces 100 goals
evenly on it).

- observation: the position ``p`` (2,),
- action: a displacement, clipped to ``[-0.1, 0.1]^2`` by the env,
- reward: ``1 - ||p' - g||`` within ``goal_radius`` (0.2) of the goal, else 0 (the reference's
  ``sparse_reward``); the dense ``-||p' - g||`` is reported beside it
  (:attr:`~fastadapt.envs.base.BatchedEnv.dense_rewards`), which the reference's critic learns
  from (PEARL's ``pearl.dense_critic_rewards``),
- no termination; horizon 20 steps.

The goal is at least 0.8 from the start, 8 steps at full speed: a policy that does not search
sees no reward at all.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

import gymnasium as gym
import numpy as np

from fastadapt.envs.base import BatchedEnv, RandomStreams, TaskFamily
from fastadapt.envs.navigation import NavigationTask
from fastadapt.errors import ConfigError, TaskError

MAX_STEP = 0.1
GOAL_DISTANCE = 1.0


class BatchedPointRobot(BatchedEnv):
    """``[T, E]`` points; sparse rewards, dense ones beside them."""

    def __init__(self, tasks: list[NavigationTask], episodes_per_task: int,
                 goal_radius: float) -> None:
        self.num_tasks, self.episodes_per_task = len(tasks), episodes_per_task
        self.goal_radius = goal_radius
        goals = np.array([[t.goal_x, t.goal_y] for t in tasks], dtype=np.float32)
        self._goals = goals[:, None, :]  # [T, 1, 2]
        self._positions = np.zeros((self.num_tasks, episodes_per_task, 2), dtype=np.float32)
        self.dense_rewards = np.zeros((self.num_tasks, episodes_per_task), dtype=np.float32)

    def reset(self) -> np.ndarray:
        self._positions[:] = 0.0
        return self._positions.copy()

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self._positions += np.clip(actions, -MAX_STEP, MAX_STEP)
        offset = self._positions - self._goals
        distance = np.hypot(offset[..., 0], offset[..., 1])
        self.dense_rewards = -distance
        rewards = np.where(distance <= self.goal_radius, 1.0 - distance, 0.0).astype(np.float32)
        return self._positions.copy(), rewards, np.zeros(distance.shape, dtype=bool)


class SparsePointRobot(TaskFamily[NavigationTask]):
    """Point-mass navigation to a goal on the unit half circle with a sparse reward (PEARL).

    Args:
        goal_radius: distance to the goal within which the reward is paid (0.2, the
            reference's).
    """

    name = "SparsePointRobot"
    horizon = 20
    reference = "Rakelly et al. 2019, PEARL, sparse 2D navigation (sparse-point-robot)"
    position_dims = (0, 1)
    reports_dense_rewards = True

    def __init__(self, goal_radius: float = 0.2) -> None:
        if not 0 < goal_radius < GOAL_DISTANCE:
            raise ConfigError(f"SparsePointRobot goal_radius must be in (0, {GOAL_DISTANCE}), "
                              f"got {goal_radius}")
        self.goal_radius = goal_radius
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = gym.spaces.Box(-MAX_STEP, MAX_STEP, (2,), np.float32)

    @property
    def task_space(self) -> str:
        return "goal (cos t, sin t), t ~ U[0, pi]"

    def _draw_tasks(self, rng: np.random.Generator, num_tasks: int) -> list[NavigationTask]:
        angles = rng.uniform(0.0, math.pi, size=num_tasks)
        return [NavigationTask(float(np.cos(a)), float(np.sin(a))) for a in angles]

    def validate_task(self, task: NavigationTask) -> None:
        if not isinstance(task, NavigationTask):
            raise TaskError(f"SparsePointRobot expects a NavigationTask, got "
                            f"{type(task).__name__}")
        if abs(math.hypot(task.goal_x, task.goal_y) - GOAL_DISTANCE) > 1e-6 or task.goal_y < 0:
            raise TaskError(f"SparsePointRobot goal ({task.goal_x}, {task.goal_y}) is not on "
                            "the upper unit half circle")

    def make_batched(self, tasks: list[NavigationTask], episodes_per_task: int,
                     rng: RandomStreams) -> BatchedPointRobot:
        for task in tasks:
            self.validate_task(task)
        return BatchedPointRobot(tasks, episodes_per_task, self.goal_radius)

    def task_to_dict(self, task: NavigationTask) -> dict[str, Any]:
        return asdict(task)
