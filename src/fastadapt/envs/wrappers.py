"""The oracle's task family: any family with the task's parameters appended to observations.

Finn et al. 2017, §5.3 compare MAML with "an oracle policy that receives the parameters of the
task as input". :class:`OracleFamily` wraps a family so its observations become
``[s, task features]``: the numbers of ``family.task_to_dict(task)`` in order (2D navigation:
``goal_x, goal_y``; bandits: the arm means; tabular MDPs: ``P`` then ``R`` flattened). Tasks,
splits, actions and rewards are the wrapped family's, so results are directly comparable.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from fastadapt.envs.base import BatchedEnv, RandomStreams, TaskFamily


def task_features(family: TaskFamily[Any], task: Any) -> np.ndarray:
    """The numbers of ``family.task_to_dict(task)``, flattened in key order, ``[F]`` float32."""
    values: list[float] = []

    def collect(item: Any) -> None:
        if isinstance(item, dict):
            for value in item.values():
                collect(value)
        elif isinstance(item, list | tuple):
            for value in item:
                collect(value)
        else:
            values.append(float(item))

    collect(family.task_to_dict(task))
    return np.asarray(values, dtype=np.float32)


def task_feature_size(family: TaskFamily[Any]) -> int:
    """``F``, the length of :func:`task_features` (measured on the first held-out task)."""
    return len(task_features(family, family.test_tasks(1)[0]))


class OracleBatchedEnv(BatchedEnv):
    """A batched env whose observations ``[T, E, O]`` get the task features ``[T, F]``
    appended: ``[T, E, O + F]``."""

    def __init__(self, inner: BatchedEnv, features: np.ndarray) -> None:
        self.inner = inner
        self.num_tasks, self.episodes_per_task = inner.num_tasks, inner.episodes_per_task
        shape = (self.num_tasks, self.episodes_per_task, features.shape[-1])
        self._features = np.broadcast_to(features[:, None, :], shape)

    def _with_features(self, obs: np.ndarray) -> np.ndarray:
        return np.concatenate([obs, self._features], axis=-1).astype(np.float32)

    def reset(self) -> np.ndarray:
        return self._with_features(self.inner.reset())

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        obs, rewards, terminated = self.inner.step(actions)
        return self._with_features(obs), rewards, terminated


class OracleFamily(TaskFamily[Any]):
    """``family`` with observations ``[s, task features]`` (same name, tasks and splits)."""

    def __init__(self, family: TaskFamily[Any]) -> None:
        self.inner = family
        self.name, self.horizon = family.name, family.horizon
        self.position_dims = family.position_dims
        self.reference = f"oracle of {family.reference} (Finn et al. 2017, §5.3)"
        self.action_space = family.action_space
        size = task_feature_size(family)
        low = np.concatenate([family.observation_space.low, np.full(size, -np.inf)])
        high = np.concatenate([family.observation_space.high, np.full(size, np.inf)])
        self.observation_space = gym.spaces.Box(low.astype(np.float32), high.astype(np.float32))

    @property
    def task_space(self) -> str:
        return f"{self.inner.task_space} (task parameters observed)"

    def _draw_tasks(self, rng: np.random.Generator, num_tasks: int) -> list[Any]:
        return self.inner._draw_tasks(rng, num_tasks)

    def validate_task(self, task: Any) -> None:
        self.inner.validate_task(task)

    def make_batched(self, tasks: list[Any], episodes_per_task: int, rng: RandomStreams
                     ) -> OracleBatchedEnv:
        features = np.stack([task_features(self.inner, task) for task in tasks])
        return OracleBatchedEnv(self.inner.make_batched(tasks, episodes_per_task, rng), features)

    def task_to_dict(self, task: Any) -> dict[str, Any]:
        return self.inner.task_to_dict(task)
