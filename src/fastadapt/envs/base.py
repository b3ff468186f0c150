"""Contracts of a task family: tasks, splits, a batched simulator and a gymnasium env.

A *task family* is a distribution over tasks (Finn et al. 2017, §2.1). Each family provides

- an immutable, typed task value (a frozen dataclass),
- ``sample_tasks(rng, n)``: training tasks drawn with an explicit ``np.random.Generator``,
- ``test_tasks(n)``: a fixed held-out split, the same for every run and every algorithm,
- ``make_batched(tasks, episodes_per_task, rng)``: a :class:`BatchedEnv` stepping all
  ``[T, E]`` episodes in one array operation (what the samplers use). ``rng`` is one
  ``np.random.Generator`` shared by all tasks, or one generator per task: then a task's
  episodes do not depend on which other tasks share the batch, which is what lets samplers
  split tasks over any number of workers and still return the same batch,
- ``make_env(task)``: a gymnasium 1.x env with ``set_task`` (for users, checks and tests); it
  runs the same batched code with ``T = E = 1``, so both give identical trajectories.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import gymnasium as gym
import numpy as np

TaskT = TypeVar("TaskT")

_TEST_SPLIT_ENTROPY = 0x5EED_7E57
"""Entropy of the held-out split's seed sequence; its spawn key differs from any user seed's."""


RandomStreams = np.random.Generator | Sequence[np.random.Generator]
"""What ``make_batched`` takes: one generator shared by all tasks, or one generator per task."""


class TaskRandom:
    """The env randomness of ``T`` tasks, drawn as ``[T, ...]`` arrays.

    With one shared generator a draw is one call (``rng.random((T, *shape))``); with one
    generator per task, row ``i`` comes from task ``i``'s generator. Rows are filled in task
    order either way, so a shared generator gives the same numbers as before per-task streams.

    Args:
        rng: one generator, or a sequence of ``num_tasks`` generators.
        num_tasks: ``T``.
    """

    def __init__(self, rng: RandomStreams, num_tasks: int) -> None:
        self.num_tasks = num_tasks
        self._shared: np.random.Generator | None = None
        self._per_task: list[np.random.Generator] = []
        if isinstance(rng, np.random.Generator):
            self._shared = rng
        else:
            self._per_task = list(rng)
            if len(self._per_task) != num_tasks:
                raise ValueError(
                    f"got {len(self._per_task)} random generators for {num_tasks} tasks"
                )

    def random(self, shape: tuple[int, ...]) -> np.ndarray:
        """Uniforms in ``[0, 1)``, ``[T, *shape]`` float64."""
        if self._shared is not None:
            return self._shared.random((self.num_tasks, *shape))
        return np.stack([g.random(shape) for g in self._per_task])

    def standard_normal(self, shape: tuple[int, ...]) -> np.ndarray:
        """Standard normals, ``[T, *shape]`` float64."""
        if self._shared is not None:
            return self._shared.standard_normal((self.num_tasks, *shape))
        return np.stack([g.standard_normal(shape) for g in self._per_task])


class BatchedEnv(ABC):
    """``T`` tasks × ``E`` episodes stepped together. Arrays are numpy, leading axes ``[T, E]``."""

    num_tasks: int
    episodes_per_task: int
    unstable: np.ndarray | None = None
    """``[T, E]`` bool: episodes ended by a physics blow-up (simulators that can blow up)."""
    success: np.ndarray | None = None
    """``[T, E]`` bool: the task was solved at the last step (families that report success,
    e.g. Meta-World); samplers record it per step."""
    expected_rewards: np.ndarray | None = None
    """``[T, E]`` float64: ``E[r | state, action]`` of the last step under each episode's task,
    for families whose reward noise is independent of everything after it (Bernoulli bandits:
    ``mu[a]``; tabular MDPs: ``R[s, a]``). RL² with ``rl2.expected_rewards`` trains on it."""
    dense_rewards: np.ndarray | None = None
    """``[T, E]``: a dense (shaped) reward of the last step beside the family's sparse one
    (the sparse point robot: minus the distance to the goal), for families that report it;
    samplers record it per step (PEARL's critic can learn from it, as the reference's)."""

    @abstractmethod
    def reset(self) -> np.ndarray:
        """Start all episodes. Returns observations ``[T, E, O]`` float32."""

    @abstractmethod
    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Advance all episodes by one step.

        Args:
            actions: ``[T, E, A]`` float32 or ``[T, E]`` int64.

        Returns:
            ``(observations [T, E, O], rewards [T, E], terminated [T, E] bool)``. Episodes that
            terminated keep being stepped; the sampler masks them out.
        """


class TaskFamily(ABC, Generic[TaskT]):
    """A distribution over tasks with fixed train/test splits. Subclasses set the attributes."""

    name: str
    """Registry name, e.g. ``"Navigation2D"``; the gymnasium id is ``fastadapt/<name>-v0``."""
    horizon: int
    """Default steps per episode."""
    observation_space: gym.spaces.Box
    action_space: gym.spaces.Space[Any]
    reference: str
    """The paper whose task definition the family follows."""
    reports_expected_rewards: bool = False
    """Its batched env sets :attr:`BatchedEnv.expected_rewards` at every step."""
    reports_dense_rewards: bool = False
    """Its batched env sets :attr:`BatchedEnv.dense_rewards` at every step."""
    simulator_bytes_per_task: int = 0
    """Memory a batched env holds per task for its simulators, for the memory estimates made
    before a run allocates (:mod:`fastadapt.algorithms.memory`); 0: negligible or unmeasured
    (Meta-World: about 30 MB, a compiled model and its envs)."""
    position_dims: tuple[int, int] | None = None
    """The observation entries that are an ``(x, y)`` position, for families whose paths are
    worth drawing (Navigation2D: ``(0, 1)``): the meta-test records example paths before and
    after adaptation, and its task dicts give the goal as ``goal_x``, ``goal_y``."""

    @property
    @abstractmethod
    def task_space(self) -> str:
        """One line describing the task distribution, e.g. ``goal ~ U[-0.5, 0.5]^2``."""

    @abstractmethod
    def _draw_tasks(self, rng: np.random.Generator, num_tasks: int) -> list[TaskT]:
        """Draw ``num_tasks`` tasks i.i.d. from the family's distribution."""

    @abstractmethod
    def validate_task(self, task: TaskT) -> None:
        """Raise :class:`fastadapt.errors.TaskError` if ``task`` is outside the task space."""

    @abstractmethod
    def make_batched(
        self, tasks: list[TaskT], episodes_per_task: int, rng: RandomStreams
    ) -> BatchedEnv:
        """A batched simulator of ``len(tasks)`` tasks × ``episodes_per_task`` episodes.

        Args:
            rng: the env randomness: one generator shared by all tasks, or one per task
                (wrap it in :class:`TaskRandom`).
        """

    @abstractmethod
    def task_to_dict(self, task: TaskT) -> dict[str, Any]:
        """A JSON-serialisable view of a task (for logs and evaluation files)."""

    def sample_tasks(self, rng: np.random.Generator, num_tasks: int) -> list[TaskT]:
        """Training tasks, drawn with the caller's generator."""
        return self._draw_tasks(rng, num_tasks)

    def test_tasks(self, num_tasks: int) -> list[TaskT]:
        """The first ``num_tasks`` tasks of the fixed held-out split (same in every run)."""
        seq = np.random.SeedSequence(entropy=_TEST_SPLIT_ENTROPY, spawn_key=(1,))
        return self._draw_tasks(np.random.default_rng(seq), num_tasks)

    def make_env(self, task: TaskT | None = None, horizon: int | None = None) -> TaskEnv[TaskT]:
        """A gymnasium env of this family; ``task`` defaults to the first held-out task."""
        return TaskEnv(self, task, horizon)


FamilyFactory = Callable[..., TaskFamily[Any]]
"""What builds a family from its keyword arguments (``env.kwargs``): usually its class."""


class TaskEnv(gym.Env[np.ndarray, Any], Generic[TaskT]):
    """Gymnasium view of one task of a family, with ``set_task``.

    Steps the family's :class:`BatchedEnv` with one task and one episode, so the single env and
    the batched sampler share one implementation. Episodes are truncated at ``horizon`` steps.
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012

    def __init__(
        self, family: TaskFamily[TaskT], task: TaskT | None = None, horizon: int | None = None
    ) -> None:
        self.family = family
        self.observation_space = family.observation_space
        self.action_space = family.action_space
        self.horizon = family.horizon if horizon is None else horizon
        self._task: TaskT = family.test_tasks(1)[0] if task is None else task
        family.validate_task(self._task)
        self._batched: BatchedEnv | None = None
        self._steps = 0

    @property
    def task(self) -> TaskT:
        """The current task."""
        return self._task

    def set_task(self, task: TaskT) -> None:
        """Switch to ``task``; takes effect at the next ``reset``."""
        self.family.validate_task(task)
        self._task = task
        self._batched = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if options and "task" in options:
            self.set_task(options["task"])
        self._batched = self.family.make_batched([self._task], 1, self.np_random)
        self._steps = 0
        return self._batched.reset()[0, 0], {"task": self.family.task_to_dict(self._task)}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._batched is None:
            raise RuntimeError("call reset() before step()")
        actions = np.asarray(action)[None, None]
        obs, rewards, terminated = self._batched.step(actions)
        self._steps += 1
        truncated = self._steps >= self.horizon
        info: dict[str, Any] = {}
        if self._batched.unstable is not None:
            info["physics_unstable"] = bool(self._batched.unstable[0, 0])
        if self._batched.success is not None:
            info["success"] = bool(self._batched.success[0, 0])
        return obs[0, 0], float(rewards[0, 0]), bool(terminated[0, 0]), truncated, info
