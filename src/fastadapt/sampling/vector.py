"""In-process sampler: every task × episode stepped as one array op (the default sampler).

Samplers share one interface: ``sample(params, tasks, episodes_per_task) -> Trajectories``
with explicit per-task parameters; they are context managers and own their random streams
(a ``np.random.Generator`` for the envs, a ``torch.Generator`` for the actions), so the same
seed gives the same episodes.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import numpy as np
import torch

from fastadapt.envs.base import TaskFamily
from fastadapt.meta.adapt import sample_actions
from fastadapt.policies.mlp import Policy
from fastadapt.types import Params, Trajectories


class VectorSampler:
    """Samples ``[T, E]`` episodes of ``horizon`` steps with the family's batched simulator.

    Args:
        family: the task family.
        policy: the policy module (called functionally with the parameters given to sample).
        horizon: steps per episode.
        seed: seeds the env generator and the action generator.
    """

    def __init__(self, family: TaskFamily[Any], policy: Policy, horizon: int, seed: int) -> None:
        self.family = family
        self.policy = policy
        self.horizon = horizon
        self.env_rng = np.random.default_rng(seed)
        self.generator = torch.Generator().manual_seed(seed)

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
        env = self.family.make_batched(tasks, episodes_per_task, self.env_rng)
        obs = torch.from_numpy(env.reset())
        num_tasks, horizon = len(tasks), self.horizon
        shape = (num_tasks, episodes_per_task, horizon)
        observations = torch.zeros(*shape, obs.shape[-1])
        rewards = torch.zeros(shape)
        masks = torch.zeros(shape)
        alive = torch.ones(num_tasks, episodes_per_task)
        actions_t: list[torch.Tensor] = []
        for t in range(horizon):
            actions = sample_actions(self.policy, params, obs, self.generator)
            next_obs, reward, terminated = env.step(actions.numpy())
            observations[:, :, t] = obs
            rewards[:, :, t] = torch.from_numpy(reward.astype(np.float32)) * alive
            masks[:, :, t] = alive
            actions_t.append(actions)
            alive = alive * torch.from_numpy(~terminated).float()
            obs = torch.from_numpy(next_obs)
        return Trajectories(observations, torch.stack(actions_t, dim=2), rewards, masks)

    def close(self) -> None:
        """Nothing to release in-process; present for the common sampler interface."""

    def __enter__(self) -> VectorSampler:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
