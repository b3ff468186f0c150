"""Success rates of the batches a sampler returns, recorded on the way through.

Families that report success (Meta-World) fill ``Trajectories.successes``; training and
evaluation read their per-task success rates through :class:`SuccessRecorder`, which wraps any
sampler and passes every ``sample`` call through unchanged.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from fastadapt.sampling.base import EpisodeSampler
from fastadapt.types import Params, Trajectories


class SuccessRecorder:
    """A sampler that remembers the per-task success rate of every batch it returned.

    Args:
        sampler: the sampler to wrap.
    """

    def __init__(self, sampler: EpisodeSampler) -> None:
        self.sampler = sampler
        self.task_rates: list[Tensor] = []
        """One ``[T]`` tensor per ``sample`` call (in call order) whose batch carried
        successes: the fraction of each task's episodes that succeeded."""
        self.unstable_episodes: int | None = None
        """Episodes ended by a physics blow-up over all calls (``None``: no physics)."""

    def sample(self, params: Params, tasks: list[Any], episodes_per_task: int) -> Trajectories:
        """``sampler.sample(...)``, recording the batch's success rates when it has them."""
        trajectories = self.sampler.sample(params, tasks, episodes_per_task)
        if trajectories.successes is not None:
            self.task_rates.append(trajectories.episode_successes().mean(dim=1))
        if trajectories.unstable is not None:
            count = int(trajectories.unstable.sum())
            self.unstable_episodes = (self.unstable_episodes or 0) + count
        return trajectories

    def before_after(self) -> dict[str, float]:
        """``success_rate_before`` / ``success_rate_after``: mean over tasks of the first and
        the last recorded batch (before and after adaptation), for families with success;
        ``unstable_episodes`` (physics blow-ups in all batches), for MuJoCo families."""
        rates = self.task_rates
        return outcome_metrics(
            (float(rates[0].mean()), float(rates[-1].mean())) if rates else None,
            self.unstable_episodes)


def outcome_metrics(rates: tuple[float, float] | None, unstable: float | None
                    ) -> dict[str, float]:
    """A training record's success and stability keys, shared by every algorithm:
    ``success_rate_before`` / ``success_rate_after`` from ``rates`` (``None``: the family
    reports no success) and ``unstable_episodes`` (``None``: the family has no physics)."""
    metrics: dict[str, float] = {}
    if rates is not None:
        metrics.update(success_rate_before=rates[0], success_rate_after=rates[1])
    if unstable is not None:
        metrics["unstable_episodes"] = float(unstable)
    return metrics
