"""Core value types shared by samplers, losses and algorithms.

Shape letters used in every docstring of the package:

- ``T``: tasks (the meta-batch), ``E``: episodes per task, ``H``: steps per episode (horizon),
- ``O``: observation size, ``A``: action size (continuous) — discrete actions have no last axis,
- ``D``: size of the policy's distribution parameters (``2A`` Gaussian, ``K`` categorical).
"""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor

Params = dict[str, Tensor]
"""Policy parameters by name, as ``nn.Module.named_parameters`` gives them. Shared parameters
have the module's shapes; per-task parameters carry a leading ``[T]`` axis."""


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
    """

    observations: Tensor
    actions: Tensor
    rewards: Tensor
    masks: Tensor
    successes: Tensor | None = None
    unstable: Tensor | None = None
    """``[T, E]`` float, 1.0 for episodes ended by a physics blow-up (MuJoCo families,
    :attr:`~fastadapt.envs.base.BatchedEnv.unstable`); ``None`` for families without physics."""

    @property
    def num_env_steps(self) -> int:
        """Environment steps actually taken (masked steps excluded)."""
        return int(self.masks.sum().item())

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
