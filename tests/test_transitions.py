"""Transitions for off-policy learners: next observations, and ``terminated`` kept apart from
``truncated`` (which the episodes' masks merge): by hand, and from a real rollout."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from fastadapt.envs.navigation import BatchedNavigation, Navigation2D, NavigationTask
from fastadapt.policies.mlp import GaussianMLPPolicy
from fastadapt.sampling.vector import VectorSampler
from fastadapt.types import Trajectories


def test_transitions_by_hand() -> None:
    """One task, two episodes of 3 steps; the first terminates at its second step."""
    obs = torch.tensor([[[[0.0], [1.0], [2.0]], [[10.0], [11.0], [12.0]]]])  # [1, 2, 3, 1]
    masks = torch.tensor([[[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]]])
    terminated = torch.tensor([[[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]])
    rewards = torch.tensor([[[1.0, 2.0, 0.0], [3.0, 4.0, 5.0]]])
    actions = torch.tensor([[[7, 8, 9], [4, 5, 6]]])
    final = torch.tensor([[[3.0], [13.0]]])
    trajectories = Trajectories(obs, actions, rewards, masks, terminated=terminated,
                                final_observations=final)
    (task,) = trajectories.transitions()
    assert task.observations.flatten().tolist() == [0.0, 1.0, 10.0, 11.0, 12.0]
    assert task.next_observations.flatten().tolist() == [1.0, 2.0, 11.0, 12.0, 13.0]
    assert task.actions.tolist() == [7, 8, 4, 5, 6]
    assert task.rewards.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert task.terminated.tolist() == [0.0, 1.0, 0.0, 0.0, 0.0]
    assert task.truncated.tolist() == [0.0, 0.0, 0.0, 0.0, 1.0]


class _StopEarly(Navigation2D):
    """Navigation whose task-0 episodes terminate at their 2nd step."""

    def make_batched(self, tasks: list[NavigationTask], episodes_per_task: int, rng: Any
                     ) -> BatchedNavigation:
        env = super().make_batched(tasks, episodes_per_task, rng)
        step, steps = env.step, [0]

        def stop_early(actions: np.ndarray) -> Any:
            obs, rewards, terminated = step(actions)
            steps[0] += 1
            terminated = terminated.copy()
            terminated[0] |= steps[0] == 2
            return obs, rewards, terminated

        env.step = stop_early  # type: ignore[method-assign]
        return env


def test_a_rollout_records_terminations_and_the_last_observation() -> None:
    family, horizon = _StopEarly(), 4
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(2, 2, (8,))
    tasks = [NavigationTask(0.3, 0.3), NavigationTask(-0.3, 0.2)]
    params = {n: p.detach().expand(2, *p.shape) for n, p in policy.named_parameters()}
    trajectories = VectorSampler(family, policy, horizon, seed=3).sample(params, tasks, 2)
    assert trajectories.terminated is not None and trajectories.final_observations is not None
    assert trajectories.terminated[0, :, 1].tolist() == [1.0, 1.0]
    assert trajectories.terminated.sum() == 2.0
    first, second = trajectories.transitions()
    assert len(first.rewards) == 2 * 2 and len(second.rewards) == 2 * horizon
    assert first.terminated.tolist() == [0.0, 1.0, 0.0, 1.0]
    assert first.truncated.sum() == 0.0 and second.truncated.tolist() == [0.0, 0.0, 0.0, 1.0] * 2
    # a next observation is the next step's observation, or the one after the horizon
    torch.testing.assert_close(second.next_observations[:3], second.observations[1:4])
    torch.testing.assert_close(second.next_observations[3], trajectories.final_observations[1, 0])
    # positions move by the clipped actions
    moved = second.next_observations - second.observations
    torch.testing.assert_close(moved, second.actions.clamp(-0.1, 0.1))
