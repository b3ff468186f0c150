"""Per-task replay buffers: ``K`` ring buffers of transitions in one tensor, sampled for many
tasks at once.

Each transition is one row of ``W = 2 O + A + 2`` float32 columns ``[s, a, r, s', terminated]``
(:class:`~fastadapt.types.Transitions`). Rows live in one ``[K, C, W]`` tensor on the learner's
device, so drawing ``n`` transitions of each of ``M`` tasks is one gather
(:meth:`TaskReplay.sample`). Storage starts small and doubles as tasks fill, up to
``capacity`` rows per task; then each task's oldest rows are overwritten (PEARL's per-task
``MultiTaskReplayBuffer`` of simple replay buffers, Rakelly et al. 2019; the ring buffer of
Mnih et al. 2015). Sampling is uniform with replacement over each task's rows, as the
reference's ``random_batch``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from fastadapt.types import Transitions

INITIAL_ROWS = 1024
"""Rows per task allocated at first (then doubled as needed, up to the capacity)."""


class TransitionBatch(NamedTuple):
    """Transitions of ``M`` tasks, ``n`` each, as a learner reads them.

    Attributes:
        observations: ``[M, n, O]``.
        actions: ``[M, n, A]``.
        rewards: ``[M, n]``.
        next_observations: ``[M, n, O]``.
        terminated: ``[M, n]``, 1.0 where the transition reached a terminal state.
    """

    observations: Tensor
    actions: Tensor
    rewards: Tensor
    next_observations: Tensor
    terminated: Tensor


class TaskReplay:
    """``num_tasks`` ring buffers of up to ``capacity`` transitions each.

    Args:
        num_tasks: ``K``.
        obs_dim, action_dim: ``O`` and ``A`` (continuous actions).
        capacity: rows per task (``>= 1``).
        device: where the rows live.
    """

    def __init__(self, num_tasks: int, obs_dim: int, action_dim: int, capacity: int,
                 device: torch.device) -> None:
        if min(num_tasks, obs_dim, action_dim, capacity) < 1:
            raise ValueError("TaskReplay needs num_tasks, obs_dim, action_dim, capacity >= 1")
        self.obs_dim, self.action_dim, self.capacity = obs_dim, action_dim, capacity
        self.width = 2 * obs_dim + action_dim + 2
        self.device = device
        self.rows = torch.zeros(num_tasks, 0, self.width, device=device)
        """``[K, C, W]``: the transitions; row ``i`` of task ``k`` is valid for ``i < sizes[k]``."""
        self.sizes = torch.zeros(num_tasks, dtype=torch.int64)
        """Valid rows per task ``[K]`` (on the CPU)."""
        self.heads = torch.zeros(num_tasks, dtype=torch.int64)
        """Where each task's next row goes ``[K]`` (on the CPU)."""

    @property
    def num_tasks(self) -> int:
        """``K``."""
        return int(self.sizes.shape[0])

    @property
    def nbytes(self) -> int:
        """Bytes of the allocated storage (at most ``K * capacity * W * 4``)."""
        return self.rows.numel() * self.rows.element_size()

    def _grow(self, rows_needed: int) -> None:
        allocated = self.rows.shape[1]
        if rows_needed <= allocated:
            return
        size = min(self.capacity, max(rows_needed, 2 * allocated, INITIAL_ROWS))
        grown = torch.zeros(self.num_tasks, size, self.width, device=self.device)
        grown[:, :allocated] = self.rows
        self.rows = grown

    def add(self, task: int, transitions: Transitions) -> None:
        """Append ``N`` transitions to task ``task``'s buffer (only the last ``capacity`` if
        ``N`` is larger), overwriting its oldest rows once it is full.

        Raises:
            ValueError: the transitions' sizes are not ``O`` and ``A``.
        """
        obs = transitions.observations
        if obs.shape[-1] != self.obs_dim or transitions.actions.shape[-1] != self.action_dim:
            raise ValueError(f"transitions of sizes O={obs.shape[-1]}, "
                             f"A={transitions.actions.shape[-1]}; this buffer holds "
                             f"O={self.obs_dim}, A={self.action_dim}")
        rows = torch.cat([obs, transitions.actions, transitions.rewards[:, None],
                          transitions.next_observations, transitions.terminated[:, None]],
                         dim=1).to(self.device, torch.float32)[-self.capacity:]
        count = rows.shape[0]
        if count == 0:
            return
        head, size = int(self.heads[task]), int(self.sizes[task])
        self._grow(min(self.capacity, size + count))
        positions = (head + torch.arange(count)) % self.capacity
        self.rows[task, positions.to(self.device)] = rows
        self.heads[task] = (head + count) % self.capacity
        self.sizes[task] = min(self.capacity, size + count)

    def clear(self, task: int) -> None:
        """Empty task ``task``'s buffer (PEARL's encoder buffer before a task's new data)."""
        self.sizes[task] = 0
        self.heads[task] = 0

    def sample(self, tasks: Tensor, count: int, generator: torch.Generator) -> TransitionBatch:
        """``count`` transitions of each of ``tasks`` (``[M]`` int64 on the CPU), drawn
        uniformly with replacement from each task's rows.

        Args:
            generator: draws the rows (on :attr:`device`).

        Raises:
            ValueError: a task's buffer is empty.
        """
        sizes = self.sizes[tasks]
        if bool((sizes == 0).any()):
            empty = sorted({int(t) for t, s in zip(tasks, sizes, strict=True) if s == 0})
            raise ValueError(f"the buffers of tasks {empty} are empty")
        uniform = torch.rand(len(tasks), count, generator=generator, device=self.device,
                             dtype=torch.float64)
        index = (uniform * sizes.to(self.device, torch.float64)[:, None]).long()
        task_index = tasks.to(self.device)[:, None]
        return self.split(self.rows[task_index, index])

    def contents(self, task: int) -> TransitionBatch:
        """Every valid row of task ``task`` ``[1, sizes[task], ...]``, in storage order."""
        return self.split(self.rows[task : task + 1, : int(self.sizes[task])])

    def split(self, rows: Tensor) -> TransitionBatch:
        """Rows ``[..., W]`` as their fields."""
        o, a = self.obs_dim, self.action_dim
        return TransitionBatch(rows[..., :o], rows[..., o : o + a], rows[..., o + a],
                               rows[..., o + a + 1 : 2 * o + a + 1], rows[..., -1])

    def state_dict(self, prefix: str) -> dict[str, Tensor]:
        """The filled rows (up to the largest task's size), sizes, heads and the allocated
        row count, as CPU tensors named ``{prefix}rows`` etc. (safetensors, no pickle)."""
        filled = int(self.sizes.max()) if self.num_tasks else 0
        return {f"{prefix}rows": self.rows[:, :filled].cpu().contiguous(),
                f"{prefix}sizes": self.sizes.clone(), f"{prefix}heads": self.heads.clone(),
                f"{prefix}allocated": torch.tensor(self.rows.shape[1])}

    def load_state_dict(self, tensors: dict[str, Tensor], prefix: str) -> None:
        """Restore :meth:`state_dict`.

        Raises:
            KeyError: a tensor is missing.
            ValueError: their shapes do not fit this buffer.
        """
        rows, sizes = tensors[f"{prefix}rows"], tensors[f"{prefix}sizes"].long()
        heads = tensors[f"{prefix}heads"].long()
        allocated = int(tensors[f"{prefix}allocated"])
        if (rows.dim() != 3 or rows.shape[0] != self.num_tasks or rows.shape[2] != self.width
                or not rows.shape[1] <= allocated <= self.capacity
                or sizes.shape != self.sizes.shape
                or heads.shape != self.heads.shape or bool((sizes > rows.shape[1]).any())
                or bool((sizes < 0).any()) or bool((heads < 0).any())
                or bool((heads >= self.capacity).any())):
            raise ValueError(f"replay buffer {prefix!r} of shape {list(rows.shape)} does not "
                             f"fit {self.num_tasks} tasks x {self.capacity} rows x "
                             f"{self.width} columns")
        self.rows = torch.zeros(self.num_tasks, allocated, self.width, device=self.device)
        self.rows[:, : rows.shape[1]] = rows.to(self.device, torch.float32)
        self.sizes, self.heads = sizes.clone(), heads.clone()
