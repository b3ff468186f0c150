"""Shared timing loop of the sampling benchmarks (imported as a sibling module)."""

from __future__ import annotations

import time
from typing import Any, Protocol

from fastadapt.types import Params, Trajectories


class _Sampler(Protocol):
    def sample(self, params: Params, tasks: list[Any], episodes_per_task: int
               ) -> Trajectories: ...


def sampling_rates(sampler: _Sampler, params: Params, tasks: list[Any], episodes: int,
                   repeats: int) -> list[float]:
    """Env steps per second of ``repeats`` timed ``sample`` calls (after the caller's
    warm-up), each printed as it completes."""
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        trajectories = sampler.sample(params, tasks, episodes)
        rates.append(trajectories.num_env_steps / (time.perf_counter() - start))
        print(f"sampled {trajectories.num_env_steps} env steps at {rates[-1]:,.0f}/s",
              flush=True)
    return rates
