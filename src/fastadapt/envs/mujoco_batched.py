"""``[T, E]`` MuJoCo simulations stepped together: the batched core of the locomotion families.

Each episode owns an ``MjData`` of one shared ``MjModel``; a step sets every episode's
controls and calls ``mj_step(model, data, nstep=frame_skip)`` from a small thread pool (the
bindings release the GIL inside ``mj_step``), so the physics is exactly gymnasium's
``MujocoEnv.do_simulation`` (same calls, same warm-starts: identical trajectories) while
both cores work. Observations follow gymnasium's v5 models (qpos without the root's x[, y],
qvel, and for Ant the clipped external contact forces).

Physics blow-ups end the episode: MuJoCo resets a simulation whose state became NaN/inf/huge
(with a ``mjWARN_BADQPOS/QVEL/QACC`` warning), so its clock did not advance by a full step;
such an episode gets reward 0, is reported as terminated and is flagged in
:attr:`BatchedMujoco.unstable`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from fastadapt.envs.base import BatchedEnv, RandomStreams, TaskRandom
from fastadapt.errors import ConfigError


@cache
def _pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fastadapt-mujoco")


@cache
def load_model(xml_path: str) -> Any:
    """The ``MjModel`` of a gymnasium asset (cached per process).

    Raises:
        ConfigError: MuJoCo is not installed or the model does not load.
    """
    try:
        import mujoco
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ConfigError("the locomotion families need MuJoCo: pip install mujoco") from err
    try:
        return mujoco.MjModel.from_xml_path(xml_path)
    except (ValueError, OSError) as err:
        raise ConfigError(f"MuJoCo model {xml_path} failed to load: {err}") from err


def gymnasium_asset(name: str) -> str:
    """Path of an XML model shipped with gymnasium (``half_cheetah.xml``, ``ant.xml``)."""
    import gymnasium

    return str(Path(gymnasium.__file__).parent / "envs" / "mujoco" / "assets" / name)


_spare_datas: dict[int, list[Any]] = {}  # id(model) -> MjData free for reuse
_spare_lock = threading.Lock()


def _borrow_datas(mujoco: Any, model: Any, count: int) -> list[Any]:
    """``count`` ``MjData`` of ``model``: spares left by earlier batches, then new ones.

    Allocating them is a noticeable share of sampling a batch, so they are reused. Reuse is
    exact: :meth:`BatchedMujoco.reset` calls ``mj_resetData`` on every one (warm-starts
    included).
    """
    with _spare_lock:
        spare = _spare_datas.setdefault(id(model), [])
        taken = [spare.pop() for _ in range(min(count, len(spare)))]
    return taken + [mujoco.MjData(model) for _ in range(count - len(taken))]


def _return_datas(model: Any, datas: list[Any]) -> None:
    with _spare_lock:
        _spare_datas.setdefault(id(model), []).extend(datas)


StepReward = Callable[["BatchedMujoco", np.ndarray, np.ndarray, np.ndarray], np.ndarray]
"""``(env, xy_before [T, E, 2], xy_after [T, E, 2], actions [T, E, A]) -> rewards [T, E]``."""


class BatchedMujoco(BatchedEnv):
    """``T`` tasks × ``E`` episodes of one MuJoCo model.

    Args:
        xml_path: the model file.
        num_tasks, episodes_per_task: ``T``, ``E``.
        rng: env randomness (reset noise), shared or one generator per task.
        reward: the task reward from the root body's planar motion and the actions.
        frame_skip: physics steps per env step (gymnasium v5: 5).
        reset_noise_scale: qpos ~ init + U(-s, s), qvel ~ init + s N(0, 1) (gymnasium v5).
        obs_qpos_start: first qpos entry observed (1 for HalfCheetah, 2 for Ant).
        contact_forces: append ``clip(cfrc_ext[1:], -1, 1)`` to observations (Ant v5).
        healthy_z: terminate when the root height leaves this range (Ant), or ``None``.
        xy_from_qpos: planar position from ``qpos[0:2]`` (HalfCheetah v5 uses ``qpos[0]``;
            its second entry is then ignored by the rewards) instead of the root body's
            ``xpos`` (Ant v5).
        threads: physics threads (default: CPU count, at most 2 per 2 cores).
    """

    def __init__(
        self,
        xml_path: str,
        num_tasks: int,
        episodes_per_task: int,
        rng: RandomStreams,
        reward: StepReward,
        frame_skip: int = 5,
        reset_noise_scale: float = 0.1,
        obs_qpos_start: int = 1,
        contact_forces: bool = False,
        healthy_z: tuple[float, float] | None = None,
        xy_from_qpos: bool = False,
        threads: int | None = None,
    ) -> None:
        import mujoco

        self._mujoco = mujoco
        self.model: mujoco.MjModel = load_model(xml_path)
        self.num_tasks, self.episodes_per_task = num_tasks, episodes_per_task
        self.num_envs = num_tasks * episodes_per_task
        self.datas = _borrow_datas(mujoco, self.model, self.num_envs)
        self._random = TaskRandom(rng, num_tasks)
        self._reward = reward
        self.frame_skip = frame_skip
        self.dt = frame_skip * float(self.model.opt.timestep)
        self._noise = reset_noise_scale
        self._qpos_start = obs_qpos_start
        self._contact_forces = contact_forces
        self._healthy_z = healthy_z
        self._xy_from_qpos = xy_from_qpos
        workers = threads or min(2, os.cpu_count() or 1)
        self._chunks = np.array_split(np.arange(self.num_envs), workers)
        self._pool = _pool(workers)
        nq, nv = self.model.nq, self.model.nv
        self.qpos = np.zeros((self.num_envs, nq))
        self.qvel = np.zeros((self.num_envs, nv))
        self.xy = np.zeros((self.num_envs, 2))  # root body position (body 1)
        self.cfrc = np.zeros((self.num_envs, max(self.model.nbody - 1, 0) * 6))
        self._unstable = np.zeros((num_tasks, episodes_per_task), dtype=bool)
        self.unstable = self._unstable  # episodes ended by a physics blow-up since the reset
        self._bad_state = np.zeros(self.num_envs, dtype=bool)

    def close(self) -> None:
        """Give the simulations back for the next batch of this model (also on deletion)."""
        datas, self.datas = self.datas, []
        if datas:
            _return_datas(self.model, datas)

    def __del__(self) -> None:
        if getattr(self, "datas", None):  # not if __init__ failed before borrowing
            self.close()

    def _reset_indices(self, flat: np.ndarray, qpos_noise: np.ndarray, qvel_noise: np.ndarray
                       ) -> None:
        mj, model = self._mujoco, self.model
        for i, k in enumerate(flat):
            data = self.datas[k]
            mj.mj_resetData(model, data)
            data.qpos[:] = model.qpos0 + qpos_noise[i]
            data.qvel[:] = qvel_noise[i]
            mj.mj_forward(model, data)
            self._read(k)

    def _read(self, k: int) -> None:
        data = self.datas[k]
        self.qpos[k] = data.qpos
        self.qvel[k] = data.qvel
        self.xy[k] = data.qpos[:2] if self._xy_from_qpos else data.xpos[1, :2]
        if self._contact_forces:
            self.cfrc[k] = data.cfrc_ext[1:].ravel()

    def reset(self) -> np.ndarray:
        shape = (self.episodes_per_task,)
        s = self._noise
        qpos_noise = self._random.random((*shape, self.model.nq)) * 2 * s - s
        qvel_noise = s * self._random.standard_normal((*shape, self.model.nv))
        self._reset_indices(
            np.arange(self.num_envs),
            qpos_noise.reshape(self.num_envs, -1),
            qvel_noise.reshape(self.num_envs, -1),
        )
        self._unstable[:] = False
        return self._observations()

    def _observations(self) -> np.ndarray:
        parts = [self.qpos[:, self._qpos_start :], self.qvel]
        if self._contact_forces:
            parts.append(np.clip(self.cfrc, -1.0, 1.0))
        obs = np.concatenate(parts, axis=-1).astype(np.float32)
        return obs.reshape(self.num_tasks, self.episodes_per_task, -1)

    def _simulate(self, indices: np.ndarray, controls: np.ndarray) -> None:
        mj, model, skip = self._mujoco, self.model, self.frame_skip
        min_advance = 0.5 * self.dt  # a reset mid-step restarts the clock at 0
        for k in indices:
            data = self.datas[k]
            start = data.time
            data.ctrl[:] = controls[k]
            mj.mj_step(model, data, nstep=skip)
            if self._contact_forces:  # as gymnasium: cfrc_ext is not computed by mj_step
                mj.mj_rnePostConstraint(model, data)
            self._bad_state[k] = data.time < start + min_advance
            self._read(k)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        controls = np.asarray(actions, dtype=np.float64).reshape(self.num_envs, -1)
        xy_before = self.xy.copy()
        futures = [self._pool.submit(self._simulate, chunk, controls) for chunk in self._chunks]
        for future in futures:
            future.result()
        shape = (self.num_tasks, self.episodes_per_task)
        rewards = self._reward(
            self, xy_before.reshape(*shape, 2), self.xy.reshape(*shape, 2),
            controls.reshape(*shape, -1),
        )
        terminated = ~self.healthy()
        finite = np.isfinite(self.qpos).all(-1) & np.isfinite(self.qvel).all(-1)
        broken = self._bad_state | ~finite
        if broken.any():
            self._recover(np.flatnonzero(broken))
            broken = broken.reshape(shape)
            rewards = np.where(broken, 0.0, rewards)
            terminated |= broken
            self._unstable |= broken
        return self._observations(), rewards.astype(np.float32), terminated

    def healthy(self) -> np.ndarray:
        """``[T, E]``: the root height is inside ``healthy_z`` (always true without it)."""
        shape = (self.num_tasks, self.episodes_per_task)
        if self._healthy_z is None:
            return np.ones(shape, dtype=bool)
        z = self.qpos[:, 2].reshape(shape)
        return (self._healthy_z[0] <= z) & (z <= self._healthy_z[1])

    def _recover(self, flat: np.ndarray) -> None:
        """Reset blown-up simulations to the model's initial state (no noise)."""
        zeros_q = np.zeros((len(flat), self.model.nq))
        zeros_v = np.zeros((len(flat), self.model.nv))
        self._reset_indices(flat, zeros_q, zeros_v)

    def contact_cost(self, weight: float = 5e-4) -> np.ndarray:
        """``weight * sum(clip(cfrc_ext, -1, 1)^2)`` per episode ``[T, E]`` (Ant v5)."""
        cost: np.ndarray = weight * np.square(np.clip(self.cfrc, -1.0, 1.0)).sum(-1)
        return cost.reshape(self.num_tasks, self.episodes_per_task)
