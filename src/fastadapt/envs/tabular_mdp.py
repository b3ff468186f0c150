"""Random tabular MDPs (Duan et al. 2016, RL², §4.2; pytorch-maml-rl ``tabular_mdp.py``).

Task: with ``S`` states and ``A`` actions, transition rows ``P[s, a, :] ~ Dirichlet(1, ..., 1)``
and mean rewards ``R[s, a] ~ N(1, 1)``, all drawn independently.

- observation: the one-hot encoding of the current state ``s`` (S,),
- action: ``a`` in ``{0, ..., A - 1}``,
- reward: ``r ~ N(R[s, a], 1)`` for the state the action is taken in, then ``s' ~ P[s, a, :]``
  (both drawn with the env's generator; the batched env also reports ``R[s, a]`` as
  :attr:`~fastadapt.envs.base.BatchedEnv.expected_rewards`),
- start state: always state ``0``. Our references do not give the paper's start distribution;
  a fixed start (as in pytorch-maml-rl) keeps the task fully described by ``(P, R)``,
- termination: never,
- horizon: ``episode_steps`` steps (10 in the paper).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from fastadapt.envs.base import BatchedEnv, RandomStreams, TaskFamily, TaskRandom
from fastadapt.errors import ConfigError, TaskError

REWARD_MEAN, REWARD_STD = 1.0, 1.0
"""Mean rewards ``R[s, a] ~ N(REWARD_MEAN, REWARD_STD^2)``."""
REWARD_NOISE_STD = 1.0
"""Observed rewards ``r ~ N(R[s, a], REWARD_NOISE_STD^2)``."""
START_STATE = 0
PROBABILITY_TOLERANCE = 1e-6

Matrix = tuple[tuple[float, ...], ...]


@dataclass(frozen=True)
class TabularMDPTask:
    """Dynamics and mean rewards of a tabular MDP, as nested tuples (hashable, comparable).

    Use :meth:`from_arrays` to build one from numpy arrays and :meth:`arrays` to get them back.
    """

    transitions: tuple[Matrix, ...]
    """``P[s][a][s']``: probability of moving to ``s'`` after action ``a`` in ``s``; [S, A, S]."""
    mean_rewards: Matrix
    """``R[s][a]``: the mean of the reward for action ``a`` in state ``s``; [S, A]."""

    @classmethod
    def from_arrays(cls, transitions: np.ndarray, mean_rewards: np.ndarray) -> TabularMDPTask:
        """Build a task from arrays ``transitions [S, A, S]`` and ``mean_rewards [S, A]``."""
        return cls(
            transitions=tuple(_to_matrix(per_state) for per_state in np.asarray(transitions)),
            mean_rewards=_to_matrix(np.asarray(mean_rewards)),
        )

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``(transitions [S, A, S], mean_rewards [S, A])`` as float64 arrays.

        Raises:
            TaskError: the nested tuples are ragged.
        """
        try:
            transitions = np.array(self.transitions, dtype=np.float64)
            mean_rewards = np.array(self.mean_rewards, dtype=np.float64)
        except ValueError as error:
            raise TaskError(f"TabularMDP task tables are ragged or not numeric: {error}") from None
        return transitions, mean_rewards


def _to_matrix(values: np.ndarray) -> Matrix:
    return tuple(tuple(float(v) for v in row) for row in values)


class BatchedTabularMDP(BatchedEnv):
    """``[T, E]`` walks on their task's MDP, stepped as one array op (no loop over episodes)."""

    def __init__(
        self, tasks: list[TabularMDPTask], episodes_per_task: int, rng: RandomStreams
    ) -> None:
        self.num_tasks, self.episodes_per_task = len(tasks), episodes_per_task
        tables = [task.arrays() for task in tasks]
        transitions = np.stack([p for p, _ in tables])  # [T, S, A, S]
        self._mean_rewards = np.stack([r for _, r in tables])  # [T, S, A]
        # Inverse-CDF sampling: s' = #{k : cdf[k] <= u} for u ~ U[0, 1). Dividing by the row's
        # total makes the last entry exactly 1, so s' < S and zero-probability states are skipped.
        cdf = np.cumsum(transitions, axis=-1)
        self._cdf = cdf / cdf[..., -1:]  # [T, S, A, S]
        self._random = TaskRandom(rng, self.num_tasks)
        self._one_hot = np.eye(transitions.shape[-1], dtype=np.float32)  # [S, S]
        self._task_index = np.arange(self.num_tasks)[:, None]  # [T, 1]
        self._states = np.full((self.num_tasks, episodes_per_task), START_STATE, dtype=np.int64)

    def reset(self) -> np.ndarray:
        self._states[:] = START_STATE
        return self._one_hot[self._states]

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Take ``actions [T, E]`` (int). Returns one-hot next states ``[T, E, S]``, rewards.

        The rewards ``[T, E]`` float32 are drawn first, then one uniform per episode picks the
        next state, so a generator seeded the same way gives the same trajectory.
        """
        actions = np.asarray(actions, dtype=np.int64)
        means = self._mean_rewards[self._task_index, self._states, actions]  # [T, E]
        episodes = (self.episodes_per_task,)
        noise = self._random.standard_normal(episodes)  # [T, E]
        rewards = (means + REWARD_NOISE_STD * noise).astype(np.float32)
        self.expected_rewards = means
        cdf = self._cdf[self._task_index, self._states, actions]  # [T, E, S]
        uniforms = self._random.random(episodes)[..., None]  # [T, E, 1]
        self._states = (cdf <= uniforms).sum(axis=-1)
        terminated = np.zeros(actions.shape, dtype=bool)
        return self._one_hot[self._states], rewards, terminated


class TabularMDP(TaskFamily[TabularMDPTask]):
    """Random MDPs with Dirichlet(1) transitions and N(1, 1) mean rewards (Duan et al. 2016).

    Args:
        num_states: number of states ``S`` (at least 1).
        num_actions: number of actions ``A`` (at least 2).
        episode_steps: steps per episode, the horizon.
    """

    name = "TabularMDP"
    reference = "Duan et al. 2016, RL²: Fast Reinforcement Learning via Slow RL, §4.2"
    reports_expected_rewards = True

    def __init__(self, num_states: int = 10, num_actions: int = 5, episode_steps: int = 10) -> None:
        if num_states < 1:
            raise ConfigError(f"TabularMDP num_states must be >= 1, got {num_states}")
        if num_actions < 2:
            raise ConfigError(f"TabularMDP num_actions must be >= 2, got {num_actions}")
        if episode_steps < 1:
            raise ConfigError(f"TabularMDP episode_steps must be >= 1, got {episode_steps}")
        self.num_states, self.num_actions = num_states, num_actions
        self.horizon = episode_steps
        self.observation_space = gym.spaces.Box(0.0, 1.0, (num_states,), np.float32)
        self.action_space = gym.spaces.Discrete(num_actions)

    @property
    def task_space(self) -> str:
        return (
            f"P[s, a] ~ Dirichlet(1^{self.num_states}), "
            f"R[s, a] ~ N({REWARD_MEAN}, {REWARD_STD}^2); "
            f"S={self.num_states}, A={self.num_actions}"
        )

    def _draw_tasks(self, rng: np.random.Generator, num_tasks: int) -> list[TabularMDPTask]:
        # One task at a time, so the first n tasks of a split do not depend on its length.
        s, a = self.num_states, self.num_actions
        return [
            TabularMDPTask.from_arrays(
                transitions=rng.dirichlet(np.ones(s), size=(s, a)),  # [S, A, S]
                mean_rewards=rng.normal(REWARD_MEAN, REWARD_STD, size=(s, a)),  # [S, A]
            )
            for _ in range(num_tasks)
        ]

    def validate_task(self, task: TabularMDPTask) -> None:
        if not isinstance(task, TabularMDPTask):
            raise TaskError(f"TabularMDP expects a TabularMDPTask, got {type(task).__name__}")
        transitions, mean_rewards = task.arrays()
        s, a = self.num_states, self.num_actions
        if transitions.shape != (s, a, s):
            raise TaskError(
                f"TabularMDP transitions have shape {transitions.shape}, expected {(s, a, s)}"
            )
        if mean_rewards.shape != (s, a):
            raise TaskError(
                f"TabularMDP mean_rewards have shape {mean_rewards.shape}, expected {(s, a)}"
            )
        if not np.isfinite(mean_rewards).all():
            raise TaskError("TabularMDP mean_rewards must be finite")
        if not (transitions >= 0.0).all():  # also rejects NaN
            raise TaskError("TabularMDP transition probabilities must be >= 0")
        row_sums = transitions.sum(axis=-1)
        bad = np.argwhere(np.abs(row_sums - 1.0) > PROBABILITY_TOLERANCE)
        if bad.size:
            state, action = bad[0]
            raise TaskError(
                f"TabularMDP transitions P[{state}, {action}, :] sum to "
                f"{row_sums[state, action]}, not 1"
            )

    def make_batched(
        self, tasks: list[TabularMDPTask], episodes_per_task: int, rng: RandomStreams
    ) -> BatchedTabularMDP:
        for task in tasks:
            self.validate_task(task)
        return BatchedTabularMDP(tasks, episodes_per_task, rng)

    def task_to_dict(self, task: TabularMDPTask) -> dict[str, Any]:
        return {
            "transitions": [[list(row) for row in per_state] for per_state in task.transitions],
            "mean_rewards": [list(row) for row in task.mean_rewards],
        }
