"""In-process sampler: every task × episode stepped as one array op (the default sampler).

Samplers share one interface (:mod:`fastadapt.sampling.base`): ``sample(params, tasks,
episodes_per_task) -> Trajectories`` with explicit per-task parameters; they are context
managers and own their random state (a seed and a call counter: every task gets its own
streams, see :mod:`fastadapt.sampling.rollout`), so the same seed gives the same episodes
whichever sampler, and however many workers, produced them.
"""

from __future__ import annotations

from typing import Any

from fastadapt.envs.base import TaskFamily
from fastadapt.policies.recurrent import RecurrentPolicy
from fastadapt.sampling.base import SamplingPolicy, SeededSampler
from fastadapt.sampling.rollout import StreamKey, rollout
from fastadapt.sampling.trials import trial_rollout
from fastadapt.types import Params, Trajectories, Trials


class VectorSampler(SeededSampler):
    """Samples ``[T, E]`` episodes of ``horizon`` steps with the family's batched simulator.

    Args:
        family: the task family.
        policy: the policy module (called functionally with the parameters given to sample).
        horizon: steps per episode.
        seed: seeds the per-task env and action streams (``>= 0``).
    """

    def __init__(self, family: TaskFamily[Any], policy: SamplingPolicy, horizon: int,
                 seed: int) -> None:
        super().__init__(seed)
        self.family = family
        self.policy = policy
        self.horizon = horizon

    def sample(self, params: Params, tasks: list[Any], episodes_per_task: int) -> Trajectories:
        """Roll out ``episodes_per_task`` episodes of each task.

        Args:
            params: per-task policy parameters ``[T, ...]``.
            tasks: ``T`` tasks of the family.
            episodes_per_task: ``E``.

        Returns:
            :class:`Trajectories` with shapes ``[T, E, H, ...]``; steps after an episode
            terminated are masked out (their rewards are zero).
        """
        if isinstance(self.policy, RecurrentPolicy):
            raise TypeError("sample needs an MLP policy; a recurrent one samples trials")
        call = self.next_call(params, tasks)
        return rollout(self.family, self.policy, self.horizon, params, tasks, episodes_per_task,
                       StreamKey(self.seed, call))

    def sample_trials(self, params: Params, tasks: list[Any], trials_per_task: int,
                      episodes_per_trial: int) -> Trials:
        """Roll out ``trials_per_task`` trials of ``episodes_per_trial`` episodes of each task
        with a recurrent policy's shared ``params``.

        Returns:
            :class:`Trials` ``[T, B, L, ...]``, see
            :func:`~fastadapt.sampling.trials.trial_rollout`.
        """
        if not isinstance(self.policy, RecurrentPolicy):
            raise TypeError("sample_trials needs a recurrent policy; an MLP one samples episodes")
        call = self.next_call(params, tasks, per_task=False)
        return trial_rollout(self.family, self.policy, self.horizon, params, tasks,
                             trials_per_task, episodes_per_trial, StreamKey(self.seed, call))
