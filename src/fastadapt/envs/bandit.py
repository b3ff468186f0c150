"""Bernoulli multi-armed bandit (Duan et al. 2016, RL², §4.1; pytorch-maml-rl ``bandit.py``).

Task: ``K`` arm means ``mu ~ U[0, 1]^K``. One episode is ``num_pulls`` pulls of the same bandit.

- observation: the constant ``0`` (1,) — a bandit has no state; RL² feeds the previous action
  and reward to its policy itself,
- action: an arm ``a`` in ``{0, ..., K - 1}``,
- reward: ``1`` with probability ``mu[a]``, else ``0`` (drawn with the env's generator; the
  batched env also reports ``mu[a]`` as :attr:`~fastadapt.envs.base.BatchedEnv.expected_rewards`),
- termination: never,
- horizon: ``num_pulls`` steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from fastadapt.envs.base import BatchedEnv, RandomStreams, TaskFamily, TaskRandom
from fastadapt.errors import ConfigError, TaskError

MEAN_LOW, MEAN_HIGH = 0.0, 1.0


@dataclass(frozen=True)
class BanditTask:
    """Success probability of each arm of a Bernoulli bandit."""

    means: tuple[float, ...]
    """``mu[a]`` for every arm ``a``; length ``K``, values in ``[0, 1]``."""


class BatchedBandit(BatchedEnv):
    """``[T, E]`` bandit episodes; each step pulls one arm in every episode as one array op."""

    def __init__(
        self, tasks: list[BanditTask], episodes_per_task: int, rng: RandomStreams
    ) -> None:
        self.num_tasks, self.episodes_per_task = len(tasks), episodes_per_task
        self._means = np.array([t.means for t in tasks], dtype=np.float64)  # [T, K]
        self._random = TaskRandom(rng, self.num_tasks)
        self._observations = np.zeros((self.num_tasks, episodes_per_task, 1), dtype=np.float32)

    def reset(self) -> np.ndarray:
        return self._observations.copy()

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pull arms ``actions [T, E]`` (int). Rewards ``[T, E]`` float32 in ``{0, 1}``."""
        task_index = np.arange(self.num_tasks)[:, None]  # [T, 1]
        means = self._means[task_index, np.asarray(actions, dtype=np.int64)]  # [T, E]
        uniforms = self._random.random((self.episodes_per_task,))  # [T, E]
        rewards = (uniforms < means).astype(np.float32)
        self.expected_rewards = means
        terminated = np.zeros(means.shape, dtype=bool)
        return self._observations.copy(), rewards, terminated


class BernoulliBandit(TaskFamily[BanditTask]):
    """``K``-armed Bernoulli bandits with arm means ``~ U[0, 1]`` (Duan et al. 2016).

    Args:
        num_arms: number of arms ``K`` (at least 2).
        num_pulls: pulls per episode, the horizon (the paper uses 10, 100 and 500).
    """

    name = "Bandit"
    reference = "Duan et al. 2016, RL²: Fast Reinforcement Learning via Slow RL, §4.1"
    reports_expected_rewards = True

    def __init__(self, num_arms: int = 5, num_pulls: int = 100) -> None:
        if num_arms < 2:
            raise ConfigError(f"Bandit num_arms must be >= 2, got {num_arms}")
        if num_pulls < 1:
            raise ConfigError(f"Bandit num_pulls must be >= 1, got {num_pulls}")
        self.num_arms = num_arms
        self.horizon = num_pulls
        self.observation_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
        self.action_space = gym.spaces.Discrete(num_arms)

    @property
    def task_space(self) -> str:
        return f"arm means ~ U[{MEAN_LOW}, {MEAN_HIGH}]^{self.num_arms}"

    def _draw_tasks(self, rng: np.random.Generator, num_tasks: int) -> list[BanditTask]:
        means = rng.uniform(MEAN_LOW, MEAN_HIGH, size=(num_tasks, self.num_arms))
        return [BanditTask(tuple(float(m) for m in row)) for row in means]

    def validate_task(self, task: BanditTask) -> None:
        if not isinstance(task, BanditTask):
            raise TaskError(f"Bandit expects a BanditTask, got {type(task).__name__}")
        if len(task.means) != self.num_arms:
            raise TaskError(
                f"Bandit task has {len(task.means)} arm means, expected num_arms={self.num_arms}"
            )
        for arm, mean in enumerate(task.means):
            if not MEAN_LOW <= mean <= MEAN_HIGH:  # also rejects NaN
                raise TaskError(
                    f"Bandit arm {arm} mean {mean} is outside [{MEAN_LOW}, {MEAN_HIGH}]"
                )

    def make_batched(
        self, tasks: list[BanditTask], episodes_per_task: int, rng: RandomStreams
    ) -> BatchedBandit:
        for task in tasks:
            self.validate_task(task)
        return BatchedBandit(tasks, episodes_per_task, rng)

    def task_to_dict(self, task: BanditTask) -> dict[str, Any]:
        return {"means": list(task.means)}
