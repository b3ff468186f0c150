"""MuJoCo locomotion task families on gymnasium's v5 models (MuJoCo 3).

| family | task | reward per step | reference |
|---|---|---|---|
| HalfCheetahVel | v_goal ~ U[0, 2] | -abs(v_x - v_goal) - 0.05 abs(a)^2 | Finn et al. 2017 §5.3 |
| HalfCheetahDir | d in {-1, +1} | d v_x - 0.05 abs(a)^2 | Finn et al. 2017 §5.3 |
| AntVel | v_goal ~ U[0, 3] | -abs(v_x - v_goal) + 1 - 0.05 abs(a)^2 - c | Finn et al. 2017 |
| AntDir | d in {-1, +1} | d v_x + 1 - 0.05 abs(a)^2 - c | Finn et al. 2017; Rothfuss et al. 2019 |
| AntGoal | goal uniform in disc r=3 | -L1(xy - goal) + 1 - 0.05 abs(a)^2 - c | PEARL 2019 |

``v_x`` is the root's forward velocity over one env step (``frame_skip = 5`` physics steps of
0.01 s), ``a`` the action as given (MuJoCo clamps the control to the actuator range), ``c`` the
contact cost ``5e-4 * sum(clip(cfrc_ext, -1, 1)^2)`` and ``+1`` the survive bonus of Ant v5
(paid while the torso height is in [0.2, 1.0]);
Ant episodes terminate when the torso height leaves [0.2, 1.0]. Observations are gymnasium v5's
(HalfCheetah 17, Ant 105 with contact forces). Horizon 200 (the paper; pytorch-maml-rl uses 100).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Generic, TypeVar

import gymnasium as gym
import numpy as np

from fastadapt.envs.base import RandomStreams, TaskFamily
from fastadapt.envs.mujoco_batched import BatchedMujoco, gymnasium_asset, load_model
from fastadapt.errors import TaskError

CTRL_COST = 0.05
CONTACT_COST = 5e-4
SURVIVE_REWARD = 1.0


@dataclass(frozen=True)
class VelocityTask:
    """Run forward at ``goal_velocity`` (m/s)."""

    goal_velocity: float


@dataclass(frozen=True)
class DirectionTask:
    """Run forward (``+1``) or backward (``-1``)."""

    direction: float


@dataclass(frozen=True)
class GoalTask:
    """Walk to the planar position ``(goal_x, goal_y)``."""

    goal_x: float
    goal_y: float


LocomotionTask = TypeVar("LocomotionTask", VelocityTask, DirectionTask, GoalTask)


class _Locomotion(TaskFamily[LocomotionTask], Generic[LocomotionTask]):
    """Shared model plumbing; subclasses define the task distribution and the reward."""

    xml: str
    ant: bool
    horizon = 200

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads
        model: Any = load_model(gymnasium_asset(self.xml))
        obs_dim = (model.nq - (2 if self.ant else 1)) + model.nv
        if self.ant:
            obs_dim += (model.nbody - 1) * 6
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
        low, high = model.actuator_ctrlrange.T.astype(np.float32)
        self.action_space = gym.spaces.Box(low, high, dtype=np.float32)

    def _task_reward(self, tasks: list[LocomotionTask], velocity: np.ndarray,
                     xy: np.ndarray) -> np.ndarray:
        """Task term ``[T, E]`` from planar velocity and position ``[T, E, 2]``."""
        raise NotImplementedError

    def make_batched(
        self, tasks: list[LocomotionTask], episodes_per_task: int, rng: RandomStreams
    ) -> BatchedMujoco:
        for task in tasks:
            self.validate_task(task)

        def reward(env: BatchedMujoco, xy_before: np.ndarray, xy_after: np.ndarray,
                   actions: np.ndarray) -> np.ndarray:
            velocity = (xy_after - xy_before) / env.dt
            value = self._task_reward(tasks, velocity, xy_after)
            value = value - CTRL_COST * np.square(actions).sum(-1)
            if self.ant:
                value = value + SURVIVE_REWARD * env.healthy() - env.contact_cost(CONTACT_COST)
            result: np.ndarray = value
            return result

        return BatchedMujoco(
            gymnasium_asset(self.xml), len(tasks), episodes_per_task, rng, reward,
            obs_qpos_start=2 if self.ant else 1,
            contact_forces=self.ant,
            healthy_z=(0.2, 1.0) if self.ant else None,
            xy_from_qpos=not self.ant,
            threads=self.threads,
        )

    def task_to_dict(self, task: LocomotionTask) -> dict[str, Any]:
        return asdict(task)


class _Velocity(_Locomotion[VelocityTask]):
    max_velocity: float

    @property
    def task_space(self) -> str:
        return f"v_goal ~ U[0, {self.max_velocity}]"

    def _draw_tasks(self, rng: np.random.Generator, num_tasks: int) -> list[VelocityTask]:
        return [VelocityTask(float(v)) for v in rng.uniform(0.0, self.max_velocity, num_tasks)]

    def validate_task(self, task: VelocityTask) -> None:
        if not isinstance(task, VelocityTask):
            raise TaskError(f"{self.name} expects a VelocityTask, got {type(task).__name__}")
        if not 0.0 <= task.goal_velocity <= self.max_velocity:
            raise TaskError(
                f"{self.name} goal velocity {task.goal_velocity} is outside "
                f"[0, {self.max_velocity}]"
            )

    def _task_reward(self, tasks: list[VelocityTask], velocity: np.ndarray,
                     xy: np.ndarray) -> np.ndarray:
        goals = np.array([t.goal_velocity for t in tasks])[:, None]
        result: np.ndarray = -np.abs(velocity[..., 0] - goals)
        return result


class _Direction(_Locomotion[DirectionTask]):
    @property
    def task_space(self) -> str:
        return "direction in {-1, +1}"

    def _draw_tasks(self, rng: np.random.Generator, num_tasks: int) -> list[DirectionTask]:
        return [DirectionTask(float(d)) for d in rng.choice([-1.0, 1.0], num_tasks)]

    def validate_task(self, task: DirectionTask) -> None:
        if not isinstance(task, DirectionTask):
            raise TaskError(f"{self.name} expects a DirectionTask, got {type(task).__name__}")
        if task.direction not in (-1.0, 1.0):
            raise TaskError(f"{self.name} direction must be -1 or +1, got {task.direction}")

    def _task_reward(self, tasks: list[DirectionTask], velocity: np.ndarray,
                     xy: np.ndarray) -> np.ndarray:
        directions = np.array([t.direction for t in tasks])[:, None]
        result: np.ndarray = directions * velocity[..., 0]
        return result


class HalfCheetahVel(_Velocity):
    """HalfCheetah running at a goal velocity (Finn et al. 2017)."""

    name, xml, ant, max_velocity = "HalfCheetahVel", "half_cheetah.xml", False, 2.0
    reference = "Finn et al. 2017, Model-Agnostic Meta-Learning, §5.3"


class HalfCheetahDir(_Direction):
    """HalfCheetah running forward or backward (Finn et al. 2017)."""

    name, xml, ant = "HalfCheetahDir", "half_cheetah.xml", False
    reference = "Finn et al. 2017, Model-Agnostic Meta-Learning, §5.3"


class AntVel(_Velocity):
    """Ant walking at a goal velocity (Finn et al. 2017)."""

    name, xml, ant, max_velocity = "AntVel", "ant.xml", True, 3.0
    reference = "Finn et al. 2017, Model-Agnostic Meta-Learning, §5.3"


class AntDir(_Direction):
    """Ant walking forward or backward (Finn et al. 2017; Rothfuss et al. 2019)."""

    name, xml, ant = "AntDir", "ant.xml", True
    reference = "Finn et al. 2017 §5.3; Rothfuss et al. 2019, ProMP"


class AntGoal(_Locomotion[GoalTask]):
    """Ant walking to a goal in the disc of radius 3 (Rakelly et al. 2019, PEARL)."""

    name, xml, ant = "AntGoal", "ant.xml", True
    reference = "Rakelly et al. 2019, PEARL (ant-goal)"
    radius = 3.0

    @property
    def task_space(self) -> str:
        return f"goal uniform in the disc of radius {self.radius}"

    def _draw_tasks(self, rng: np.random.Generator, num_tasks: int) -> list[GoalTask]:
        # one (angle, radius) row per task, so the first n tasks do not depend on num_tasks
        draws = rng.uniform(0.0, 1.0, (num_tasks, 2))
        angles, radii = 2 * math.pi * draws[:, 0], self.radius * np.sqrt(draws[:, 1])
        return [GoalTask(float(r * math.cos(a)), float(r * math.sin(a)))
                for a, r in zip(angles, radii, strict=True)]

    def validate_task(self, task: GoalTask) -> None:
        if not isinstance(task, GoalTask):
            raise TaskError(f"AntGoal expects a GoalTask, got {type(task).__name__}")
        if math.hypot(task.goal_x, task.goal_y) > self.radius + 1e-9:
            raise TaskError(f"AntGoal goal ({task.goal_x}, {task.goal_y}) is outside radius 3")

    def _task_reward(self, tasks: list[GoalTask], velocity: np.ndarray,
                     xy: np.ndarray) -> np.ndarray:
        goals = np.array([[t.goal_x, t.goal_y] for t in tasks])[:, None, :]
        result: np.ndarray = -np.abs(xy - goals).sum(-1)
        return result
