"""``[T, E]`` Meta-World episodes stepped together: the batched core of the Meta-World families.

Memory decides the layout. A Meta-World env owns an ``MjModel`` of tens of MB (textures,
meshes) that takes a noticeable time to compile, and its ``reset`` writes the task into that
model (goal sites, object bodies), so tasks cannot share one. Episodes of one task can: each
*task slot* is one Meta-World env (the model owner) plus ``E - 1`` clones that share its model
and hold their own ``MjData`` (kilobytes) and Python attributes. Every episode of a slot has the
same task and Meta-World's reset is deterministic given the task, so the model writes of the clones'
resets are identical. ``T`` tasks x ``E`` episodes therefore cost ``T`` models, not ``T E``.

Slots are kept in an :class:`EnvPool` and reused by later batches (the first batch of a
process pays the compile time). A pool serves one batch at a time: taking envs for a new
batch invalidates the previous batch (stepping it raises ``RuntimeError``).

A step is a Python loop over the ``T E`` envs. Most of a Meta-World step is Python
(observation and reward code, contact lists), so threads do not help; more cores come from the
process sampler (figures: the docs' Performance page).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from fastadapt.envs.base import BatchedEnv
from fastadapt.errors import ConfigError

MAX_EPISODE_STEPS = 500
"""Meta-World's ``max_path_length``: its envs refuse to step further without a reset."""


def _clone(env: Any) -> Any:
    """A copy of Meta-World env ``env`` sharing its ``MjModel``, with a fresh ``MjData``.

    The Python attributes are copied shallowly (``copy.copy`` would go through Meta-World's
    ``__getstate__``, which recompiles the model); ``reset`` rebinds the per-episode ones. The
    only attributes that are views into the env's ``MjData`` (checked for all 50 v3 envs) are
    the pad positions ``SawyerXYZEnv.__init__`` takes with ``get_body_com``: they are taken
    again from the clone's own data, as a fresh env would (they move with the simulation).
    """
    import mujoco

    clone = object.__new__(type(env))
    clone.__dict__.update(env.__dict__)
    clone.data = mujoco.MjData(env.model)
    clone.init_left_pad = clone.get_body_com("leftpad")
    clone.init_right_pad = clone.get_body_com("rightpad")
    return clone


class EnvPool:
    """Meta-World env instances by class name, reused across batches.

    What it holds: for each class, as many slots (compiled models) as the most tasks of that
    class one batch has asked for, each with as many envs (the model owner and its clones) as
    the most episodes per task asked for; it never shrinks. Every model is needed while its
    batch runs (a reset writes its task into the model), so a batch of ``T`` tasks x ``E``
    episodes holds ``T`` models and ``T E`` envs whatever the benchmark's number of classes:
    the meta-test of ML45 (200 held-out tasks of 5 classes, 10 episodes) builds 200 models and
    2,000 envs, the same as ML10's; an ML45 training batch of 45 tasks, 45 models.

    Args:
        make_env: builds a fresh Meta-World env of a class name (e.g. ``"reach-v3"``).
    """

    def __init__(self, make_env: Callable[[str], Any]) -> None:
        self._make_env = make_env
        self._slots: dict[str, list[list[Any]]] = {}
        self.lease = 0
        """Number of batches served; a batch may step only while it holds the latest lease."""

    def take(self, env_names: list[str], episodes_per_task: int) -> tuple[list[list[Any]], int]:
        """Envs for ``T`` tasks of classes ``env_names`` x ``E`` episodes.

        Returns:
            ``(envs, lease)``: ``envs[t][e]``, ``T`` lists of ``E`` distinct envs (the ``E``
            of a task share one model), and the lease of this batch.
        """
        used: dict[str, int] = {}
        envs = []
        for name in env_names:
            slots = self._slots.setdefault(name, [])
            index = used.get(name, 0)
            used[name] = index + 1
            if index == len(slots):
                slots.append([self._make_env(name)])
            slot = slots[index]
            while len(slot) < episodes_per_task:
                slot.append(_clone(slot[0]))
            envs.append(slot[:episodes_per_task])
        self.lease += 1
        return envs, self.lease


class BatchedMetaWorld(BatchedEnv):
    """``T`` Meta-World tasks x ``E`` episodes.

    Args:
        pool: where the envs come from (this batch holds its latest lease).
        tasks: ``T`` Meta-World ``Task`` values (``metaworld.types.Task``), set on the envs
            before every reset.
        env_names: the class name of each task.
        episodes_per_task: ``E``.
        observation_bounds: ``(low, high)`` float32 ``[O]``: observations are clipped to them
            (Meta-World clips its step observations to the same bounds).

    Actions ``[T, E, 4]`` are clipped to ``[-1, 1]`` before stepping (Meta-World's action
    space); rewards are Meta-World's (v2 rewards, 0 to 10 per step); :attr:`success` is its
    ``info["success"]`` of the last step. Meta-World never terminates an episode.
    """

    def __init__(self, pool: EnvPool, tasks: list[Any], env_names: list[str],
                 episodes_per_task: int, observation_bounds: tuple[np.ndarray, np.ndarray]
                 ) -> None:
        self.num_tasks, self.episodes_per_task = len(tasks), episodes_per_task
        self._pool = pool
        self._envs, self._lease = pool.take(env_names, episodes_per_task)
        self._tasks = tasks
        self._low, self._high = observation_bounds
        shape = (self.num_tasks, episodes_per_task)
        self.success = np.zeros(shape, dtype=bool)
        self._steps = 0

    def _check_lease(self) -> None:
        if self._pool.lease != self._lease:
            raise RuntimeError(
                "this Meta-World batch was superseded: a later make_batched of the same family "
                "took its envs (step one batch of a family at a time)"
            )

    def _flat(self) -> list[Any]:
        return [env for task_envs in self._envs for env in task_envs]

    def _observations(self, rows: list[np.ndarray]) -> np.ndarray:
        obs = np.clip(np.asarray(rows, dtype=np.float32), self._low, self._high)
        return obs.reshape(self.num_tasks, self.episodes_per_task, -1)

    def reset(self) -> np.ndarray:
        self._check_lease()
        rows = []
        for task, task_envs in zip(self._tasks, self._envs, strict=True):
            for env in task_envs:
                env.set_task(task)  # before reset: Meta-World refuses an env without a task
                rows.append(env.reset()[0])
        self.success = np.zeros((self.num_tasks, self.episodes_per_task), dtype=bool)
        self._steps = 0
        return self._observations(rows)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self._check_lease()
        if self._steps >= MAX_EPISODE_STEPS:
            raise ConfigError(
                f"Meta-World episodes last at most {MAX_EPISODE_STEPS} steps; "
                "set env.horizon <= 500"
            )
        flat_actions = np.clip(np.asarray(actions, dtype=np.float64), -1.0, 1.0)
        flat_actions = flat_actions.reshape(-1, flat_actions.shape[-1])
        rows, rewards, success = [], [], []
        for env, action in zip(self._flat(), flat_actions, strict=True):
            obs, reward, _, _, info = env.step(action)
            rows.append(obs)
            rewards.append(reward)
            success.append(info["success"])
        self._steps += 1
        shape = (self.num_tasks, self.episodes_per_task)
        self.success = np.asarray(success, dtype=np.float64).reshape(shape) > 0
        terminated = np.zeros(shape, dtype=bool)
        return self._observations(rows), np.asarray(rewards, np.float32).reshape(shape), terminated
