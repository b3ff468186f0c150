"""Core value types shared by samplers, losses and algorithms.

Shape letters used in every docstring of the package:

- ``T``: tasks (the meta-batch), ``E``: episodes per task, ``H``: steps per episode (horizon),
- ``O``: observation size, ``A``: action size (continuous) — discrete actions have no last axis,
- ``D``: size of the policy's distribution parameters (``2A`` Gaussian, ``K`` categorical).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor

Params = dict[str, Tensor]
"""Policy parameters by name, as ``nn.Module.named_parameters`` gives them. Shared parameters
have the module's shapes; per-task parameters carry a leading ``[T]`` axis."""


def _on(device: torch.device, fields: tuple[Tensor | None, ...]) -> list[Any]:
    """A NamedTuple's tensors moved to ``device`` (``None`` stays ``None``)."""
    return [None if x is None else x.to(device) for x in fields]


class Trajectories(NamedTuple):
    """Raw episodes as a sampler returns them.

    Attributes:
        observations: ``[T, E, H, O]`` float, the observation each action was taken in.
        actions: ``[T, E, H, A]`` float (continuous) or ``[T, E, H]`` int64 (discrete),
            as sampled from the policy (before any clipping by the env).
        rewards: ``[T, E, H]`` float.
        masks: ``[T, E, H]`` float, 1.0 for steps inside the episode, 0.0 after it ended.
        successes: ``[T, E, H]`` float, 1.0 where the task was solved at that step (0.0 after
            the episode ended), for families that report success (Meta-World); else ``None``.
        unstable: ``[T, E]`` float, 1.0 for episodes ended by a physics blow-up (MuJoCo
            families, :attr:`~fastadapt.envs.base.BatchedEnv.unstable`); else ``None``.
        terminated: ``[T, E, H]`` float, 1.0 at the step whose transition ended the episode in
            a terminal state (0.0 elsewhere; an episode that runs to the horizon is truncated,
            not terminated); ``None`` where the producer did not record it.
        final_observations: ``[T, E, O]``, the observation after the last step of the
            horizon (the next observation of a truncated episode's last transition); ``None``
            where not recorded.
        dense_rewards: ``[T, E, H]``, the dense reward beside a sparse one, for families
            that report it (:attr:`~fastadapt.envs.base.BatchedEnv.dense_rewards`); else
            ``None``.
    """

    observations: Tensor
    actions: Tensor
    rewards: Tensor
    masks: Tensor
    successes: Tensor | None = None
    unstable: Tensor | None = None
    terminated: Tensor | None = None
    final_observations: Tensor | None = None
    dense_rewards: Tensor | None = None

    @property
    def num_env_steps(self) -> int:
        """Environment steps actually taken (masked steps excluded)."""
        return int(self.masks.sum().item())

    def to(self, device: torch.device) -> Trajectories:
        """The same episodes on ``device`` (no copy where they are already)."""
        return Trajectories(*_on(device, self))

    def transitions(self) -> list[Transitions]:
        """Each task's steps as single transitions, masked steps dropped, for off-policy
        learners' replay buffers (one :class:`Transitions` per task, in step order).

        The next observation of step ``t`` is the observation of step ``t + 1``, or
        ``final_observations`` after the horizon's last step. ``terminated`` and ``truncated``
        stay apart: a terminal transition's value is its reward, a truncated one (cut at the
        horizon) bootstraps from its next observation.

        Raises:
            ValueError: ``terminated`` or ``final_observations`` were not recorded.
        """
        if self.terminated is None or self.final_observations is None:
            raise ValueError("these trajectories carry no terminations or final observations")
        next_obs = torch.cat([self.observations[:, :, 1:], self.final_observations[:, :, None]],
                             dim=2)
        truncated = torch.zeros_like(self.terminated)
        truncated[..., -1] = 1.0 - self.terminated[..., -1]
        result = []
        for task in range(self.masks.shape[0]):
            keep = self.masks[task] > 0
            result.append(Transitions(
                self.observations[task][keep], self.actions[task][keep],
                self.rewards[task][keep], next_obs[task][keep],
                self.terminated[task][keep], truncated[task][keep],
            ))
        return result

    def episode_returns(self) -> Tensor:
        """Undiscounted return of each episode, ``[T, E]``."""
        return (self.rewards * self.masks).sum(dim=-1)

    def episode_successes(self) -> Tensor:
        """Whether each episode succeeded (at any of its steps, Meta-World's definition),
        ``[T, E]`` float 0/1.

        Raises:
            ValueError: the family does not report success (``successes`` is ``None``).
        """
        if self.successes is None:
            raise ValueError("these trajectories carry no successes (the family reports none)")
        return (self.successes * self.masks).amax(dim=-1)


class Transitions(NamedTuple):
    """Single environment steps of one task, ``N`` of them, as off-policy learners store them
    (Haarnoja et al. 2018's replay buffer; PEARL's per-task buffers, Rakelly et al. 2019).

    Attributes:
        observations: ``[N, O]``.
        actions: ``[N, A]`` float or ``[N]`` int64.
        rewards: ``[N]``.
        next_observations: ``[N, O]``, the observation the step led to.
        terminated: ``[N]`` float, 1.0 where the step reached a terminal state (no bootstrap).
        truncated: ``[N]`` float, 1.0 where the episode was cut at the horizon after the step
            (bootstrap from ``next_observations``).
    """

    observations: Tensor
    actions: Tensor
    rewards: Tensor
    next_observations: Tensor
    terminated: Tensor
    truncated: Tensor


class Batch(NamedTuple):
    """Episodes ready for a loss: what the policy saw and did, and how good it was.

    Attributes:
        observations: ``[T, E, H, O]``.
        actions: ``[T, E, H, A]`` or ``[T, E, H]``.
        masks: ``[T, E, H]``, 1.0 inside episodes.
        advantages: ``[T, E, H]``, (normalized) advantage estimates, zero where masked.
    """

    observations: Tensor
    actions: Tensor
    masks: Tensor
    advantages: Tensor


class Trials(NamedTuple):
    """``T`` tasks x ``B`` trials of ``L = n * H`` steps, as the sampling policy saw them.

    Attributes:
        inputs: policy inputs ``[T, B, L, I]`` (observation, previous action, previous reward,
            new-episode flag, t / L with ``time_input``, the transition columns with
            ``transition_input``), see :meth:`RecurrentPolicy.encode`.
        actions: ``[T, B, L, A]`` float or ``[T, B, L]`` int64.
        rewards: ``[T, B, L]``, zero where masked.
        masks: ``[T, B, L]``, 0.0 after an episode terminated until the next episode starts.
        log_probs: ``log pi(a|h)`` of the sampling parameters ``[T, B, L]``.
        values: ``V(h)`` of the sampling parameters ``[T, B, L]``.
        hidden: recurrent state after each step ``[T, B, L, state_size]`` (see
            :attr:`~fastadapt.policies.recurrent.CategoricalRecurrentPolicy.state_size`).
        successes: ``[T, B, L]`` float, 1.0 where the task was solved at that step (0.0 where
            masked), for families that report success (Meta-World); else ``None``.
        unstable: ``[T, B, n]`` float, 1.0 where the episode was ended by a physics blow-up
            (:attr:`~fastadapt.envs.base.BatchedEnv.unstable`), for MuJoCo families; else
            ``None``.
        expected_rewards: ``[T, B, L]`` float, ``E[r | state, action]`` of each step under its
            task (0.0 where masked), for families that report it
            (:attr:`~fastadapt.envs.base.BatchedEnv.expected_rewards`: bandits, tabular
            MDPs); else ``None``.
        task_features: ``[T, B, F]``, each trial's task features
            (:func:`~fastadapt.envs.wrappers.task_features`), when the policy's value head reads
            them or its belief head predicts them (``policy.reads_task_features``); else
            ``None``.
    """

    inputs: Tensor
    actions: Tensor
    rewards: Tensor
    masks: Tensor
    log_probs: Tensor
    values: Tensor
    hidden: Tensor
    successes: Tensor | None = None
    unstable: Tensor | None = None
    expected_rewards: Tensor | None = None
    task_features: Tensor | None = None

    def to(self, device: torch.device) -> Trials:
        """The same trials on ``device`` (no copy where they are already)."""
        return Trials(*_on(device, self))

    def _by_episode(self, per_step: Tensor, episodes_per_trial: int) -> Tensor:
        """``[T, B, L]`` masked and viewed as ``[T, B, n, H]``."""
        num_tasks, num_trials, length = per_step.shape
        return (per_step * self.masks).view(
            num_tasks, num_trials, episodes_per_trial, length // episodes_per_trial
        )

    def episode_returns(self, episodes_per_trial: int) -> Tensor:
        """Undiscounted return of each episode of each trial, ``[T, B, n]``."""
        return self._by_episode(self.rewards, episodes_per_trial).sum(-1)

    def episode_successes(self, episodes_per_trial: int) -> Tensor:
        """Whether each episode of each trial succeeded (at any of its unmasked steps,
        Meta-World's definition), ``[T, B, n]`` float 0/1.

        Raises:
            ValueError: the family does not report success (``successes`` is ``None``).
        """
        if self.successes is None:
            raise ValueError("these trials carry no successes (the family reports none)")
        return self._by_episode(self.successes, episodes_per_trial).amax(-1)

    @property
    def num_env_steps(self) -> int:
        """Environment steps actually taken (masked steps excluded)."""
        return int(self.masks.sum().item())
