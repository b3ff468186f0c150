"""Task families that misbehave on purpose, for sampler and bad-input tests.

Importable by worker processes and Ray actors (the tests put this directory on their path), so
they are defined here rather than inside a test module.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from fastadapt.envs.base import RandomStreams
from fastadapt.envs.navigation import BatchedNavigation, Navigation2D, NavigationTask


@dataclass(frozen=True)
class FaultyTask(NavigationTask):
    """A navigation goal plus how its simulator misbehaves."""

    step_seconds: float = 0.0
    """Sleep per step (a slow simulator: time to kill a worker mid-rollout)."""
    fail_at_step: int = -1
    """Raise ``RuntimeError`` at this step (``-1``: never)."""
    nan_rewards: bool = False
    """Return NaN rewards (a diverging simulator)."""


class FaultyNavigation(Navigation2D):
    """2D navigation whose tasks may be slow, raise, or return NaN rewards.

    The keyword arguments (``env.kwargs`` in a config) apply to plain ``NavigationTask``s;
    a :class:`FaultyTask` carries its own faults.
    """

    name = "FaultyNavigation"

    def __init__(self, step_seconds: float = 0.0, fail_at_step: int = -1,
                 nan_rewards: bool = False) -> None:
        super().__init__()
        self.defaults = FaultyTask(0.0, 0.0, step_seconds, fail_at_step, nan_rewards)

    def make_batched(self, tasks: list[Any], episodes_per_task: int, rng: RandomStreams
                     ) -> BatchedNavigation:
        env = super().make_batched(tasks, episodes_per_task, rng)
        step, steps = env.step, [0]
        faults = [t if isinstance(t, FaultyTask) else self.defaults for t in tasks]
        delay = max(f.step_seconds for f in faults)
        fail_at = {f.fail_at_step for f in faults if f.fail_at_step >= 0}
        nan = any(f.nan_rewards for f in faults)

        def faulty_step(actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            time.sleep(delay)
            if steps[0] in fail_at:
                raise RuntimeError(f"simulator exploded at step {steps[0]}")
            steps[0] += 1
            obs, rewards, terminated = step(actions)
            return obs, rewards * np.nan if nan else rewards, terminated

        env.step = faulty_step  # type: ignore[method-assign]
        return env


def faulty_tasks(num_tasks: int, **faults: Any) -> list[FaultyTask]:
    """``num_tasks`` goals drawn with seed 0, each with the given faults."""
    goals = np.random.default_rng(0).uniform(-0.5, 0.5, size=(num_tasks, 2))
    return [FaultyTask(float(x), float(y), **faults) for x, y in goals]
