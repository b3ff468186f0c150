"""Outer (post-adaptation) losses as pure functions of explicit per-task parameters."""

from __future__ import annotations

from torch import Tensor

from fastadapt.policies.functional import per_task_output
from fastadapt.policies.mlp import Policy
from fastadapt.types import Batch, Params


def masked_task_mean(values: Tensor, masks: Tensor) -> Tensor:
    """Mean over each task's unmasked steps, then over tasks: ``[T, E, H]`` -> scalar."""
    per_task = (values * masks).sum((1, 2)) / masks.sum((1, 2)).clamp(min=1.0)
    return per_task.mean()


def surrogate_loss(
    policy: Policy, params: Params, batch: Batch, old_log_probs: Tensor,
    out: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """TRPO surrogate ``-E[pi_phi(a|s) / pi_old(a|s) * A]`` (Schulman et al. 2015, eq. 14).

    Args:
        params: per-task (adapted) parameters ``[T, ...]``.
        batch: the tasks' validation episodes ``[T, E, H, ...]``.
        old_log_probs: ``log pi_old(a|s)`` of the policy that sampled ``batch``, ``[T, E, H]``.
        out: the distribution parameters of ``params`` at ``batch.observations`` if already
            computed (with their graph), ``[T, E, H, D]``.

    Returns:
        ``(loss, out)``: the scalar loss (mean over tasks) and the new distribution
        parameters ``[T, E, H, D]`` (for the KL).
    """
    if out is None:
        out = per_task_output(policy, params, batch.observations)
    log_probs = policy.log_prob(out, batch.actions)
    ratio = (log_probs - old_log_probs).exp()
    return -masked_task_mean(ratio * batch.advantages, batch.masks), out


def mean_kl(policy: Policy, old_out: Tensor, new_out: Tensor, masks: Tensor) -> Tensor:
    """Mean over tasks of the mean over steps of ``KL(pi_old || pi_new)``.

    Args:
        old_out, new_out: ``[T, E, H, D]``. masks: ``[T, E, H]``.
    """
    kl: Tensor = policy.kl(old_out, new_out)
    return masked_task_mean(kl, masks)
