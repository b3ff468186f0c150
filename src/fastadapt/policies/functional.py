"""A policy module called with explicit parameters (``torch.func.functional_call``), shared or
per task: the forward pass every algorithm and the sampler use for policies without a fast path.

Per-task parameters carry a leading ``[T]`` axis and are mapped over tasks with ``vmap``.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.func import functional_call, vmap

from fastadapt.types import Params


def policy_output(policy: nn.Module, params: Params, obs: Tensor) -> Tensor:
    """Distribution parameters ``[..., D]`` of ``policy`` with shared ``params`` at ``obs``."""
    out: Tensor = functional_call(policy, params, (obs,))
    return out


def per_task_output(policy: nn.Module, params: Params, obs: Tensor) -> Tensor:
    """Distribution parameters with per-task ``params`` (leading ``[T]``) at ``obs [T, ..., O]``.

    Returns:
        ``[T, ..., D]``.
    """
    out: Tensor = vmap(policy_output, in_dims=(None, 0, 0))(policy, params, obs)
    return out
