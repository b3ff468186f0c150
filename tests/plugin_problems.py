"""Plugin modules for the tests: a family and an algorithm a user might write in their own
package (loaded with ``--plugin plugin_problems``), and families that break the contract."""

from __future__ import annotations

from typing import Any

import numpy as np
from fastadapt_example.algorithm import Reptile
from fastadapt_example.family import GoalLine, GoalLineTask

import fastadapt


class ShiftedLine(GoalLine):
    """GoalLine under another name: a family that only a ``--plugin`` module registers."""

    name = "ShiftedLine"


class FirstOrderReptile(Reptile):
    """Reptile under another name: an algorithm that only a ``--plugin`` module registers."""


class Float64Line(GoalLine):
    """Observations in float64: breaks the contract (they must be float32)."""

    name = "Float64Line"

    def make_batched(self, tasks: list[Any], episodes_per_task: int, rng: Any) -> Any:
        env = super().make_batched(tasks, episodes_per_task, rng)
        reset = env.reset
        env.reset = lambda: reset().astype(np.float64)  # type: ignore[method-assign]
        return env


class DriftLine(GoalLine):
    """Draws every goal, then every drift: test_tasks(10)[0] differs from test_tasks(40)[0]
    (breaks the contract: task streams must be prefix-stable)."""

    name = "DriftLine"

    def _draw_tasks(self, rng: np.random.Generator, num_tasks: int) -> list[Any]:
        goals = rng.uniform(-0.9, 0.9, num_tasks)
        drifts = rng.uniform(-0.1, 0.1, num_tasks)
        return [GoalLineTask(float(g + d)) for g, d in zip(goals, drifts, strict=True)]


class NoTasks(fastadapt.TaskFamily[Any]):
    """A family class that forgot most of its methods."""

    name = "NoTasks"
    horizon = 5

    @property
    def task_space(self) -> str:
        return "nothing"


fastadapt.register_family("ShiftedLine", ShiftedLine)
fastadapt.register_family("Float64Line", Float64Line)
fastadapt.register_family("NoTasks", NoTasks)
fastadapt.register_family("DriftLine", DriftLine)
fastadapt.register_algorithm("first-order-reptile", FirstOrderReptile)
