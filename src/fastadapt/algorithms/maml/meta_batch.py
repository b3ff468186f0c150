"""One meta-iteration's episodes: the inner-step batches and the validation batch.

For ``k = 0..K-1`` sample ``E`` episodes per task with ``phi^(k)`` (``phi^(0) = theta``) and take
an inner step ``phi^(k+1) = adapt(phi^(k))``; then sample the validation episodes with
``phi^(K)`` (Finn et al. 2017, Algorithm 3, lines 3-8). The same routine samples the meta-test's
adaptation curve with ``K`` evaluation steps.

Parameters live on the learner's device; the sampler steps the policy with CPU copies and the
episodes come back to the device before the returns are processed.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor

from fastadapt.algorithms.base import on_cpu
from fastadapt.algorithms.common.returns import process_trajectories
from fastadapt.algorithms.maml.adapt import adapt, expand_to_tasks
from fastadapt.algorithms.maml.config import MAMLConfig
from fastadapt.algorithms.maml.curvature import InnerLoopJacobian
from fastadapt.policies.mlp import Policy
from fastadapt.sampling.base import EpisodeSampler
from fastadapt.types import Batch, Params, Trajectories


class MetaBatch(NamedTuple):
    """Episodes of one meta-iteration.

    Attributes:
        train: the ``K`` inner-step batches ``[T, E, H, ...]``, step ``k`` sampled by ``phi^(k)``.
        valid: validation batch sampled by ``phi^(K)``.
        task_returns: mean episode return of each task in each of the ``K + 1`` batches
            (before -> after adaptation), ``K + 1`` tensors ``[T]``.
        env_steps: environment steps taken.
    """

    train: list[Batch]
    valid: Batch
    task_returns: list[Tensor]
    env_steps: int
    inner_loop: InnerLoopJacobian | None = None
    """The inner loop that adapted the sampling policies, when the caller passed one in
    (its Hessian caches then serve the outer step)."""

    @property
    def returns(self) -> list[float]:
        """Mean episode return over tasks after ``0..K`` inner steps."""
        return [float(r.mean()) for r in self.task_returns]


@torch.no_grad()
def collect_meta_batch(
    sampler: EpisodeSampler,
    policy: Policy,
    theta: Params,
    tasks: list[Any],
    config: MAMLConfig,
    adaptation_steps: int | None = None,
    inner_lr: float | Params | None = None,
    valid_episodes_per_task: int | None = None,
    inner_loop: InnerLoopJacobian | None = None,
) -> MetaBatch:
    """Sample the inner-step batches and the validation batch of ``tasks`` (no graph kept).

    Args:
        adaptation_steps: overrides ``config.adaptation_steps`` (evaluation uses more).
        inner_lr: overrides ``config.inner_lr`` (Meta-SGD's learned per-parameter rates).
        valid_episodes_per_task: episodes per task of the validation batch (sampled with the
            finally adapted policy); ``None`` takes ``config.episodes_per_task`` like the
            inner-step batches. Meta-World's protocol evaluates 3 episodes after adapting on 10.
        inner_loop: a fresh :class:`InnerLoopJacobian` at ``theta`` (from
            :meth:`MAMLTRPO.inner_loop`) that takes the inner steps instead of :func:`adapt`,
            so the outer step reuses the products it cached; returned in the meta-batch.

    Raises:
        ValueError: ``inner_loop`` has taken steps already or starts from other parameters.
    """
    steps = config.adaptation_steps if adaptation_steps is None else adaptation_steps
    lr = config.inner_lr if inner_lr is None else inner_lr
    valid_episodes = (config.episodes_per_task if valid_episodes_per_task is None
                      else valid_episodes_per_task)
    if inner_loop is not None and (inner_loop.steps or inner_loop.theta is not theta):
        raise ValueError("collect_meta_batch needs a fresh inner_loop built at theta")
    if inner_loop is not None and not same_rate(inner_loop.inner_lr, lr):
        raise ValueError(f"inner_loop adapts with inner_lr {inner_loop.inner_lr!r}, "
                         f"not the {lr!r} asked for")
    device = next(iter(theta.values())).device
    params = expand_to_tasks(theta, len(tasks))
    batches: list[Batch] = []
    task_returns: list[Tensor] = []
    env_steps = 0
    for k in range(steps + 1):
        episodes = valid_episodes if k == steps else config.episodes_per_task
        trajectories = sampler.sample(on_cpu(params), tasks, episodes).to(device)
        env_steps += trajectories.num_env_steps
        task_returns.append(trajectories.episode_returns().mean(dim=1))
        if k < steps and inner_loop is None:
            batch, params = inner_update(policy, params, trajectories, config, lr)
        else:
            batch = process_trajectories(trajectories, config.gamma, config.gae_lambda)
            if k < steps:
                assert inner_loop is not None
                params = inner_loop.extend(batch)
        batches.append(batch)
    return MetaBatch(batches[:-1], batches[-1], task_returns, env_steps, inner_loop)


def inner_update(policy: Policy, params: Params, trajectories: Trajectories,
                 config: MAMLConfig, inner_lr: float | Params) -> tuple[Batch, Params]:
    """One inner step on episodes ``[T, E, H, ...]``: advantages by ``config``'s
    ``gamma`` / ``gae_lambda`` (linear baseline fitted on the same episodes, normalised per
    task), then ``phi = params - inner_lr * grad L(params)`` without a graph (Finn et al. 2017,
    eq. 1). The one adaptation step of sampling, meta-test and
    :class:`~fastadapt.algorithms.maml.agent.GradientAgent`.

    Args:
        params: per-task parameters ``[T, ...]``.

    Returns:
        The processed batch and the adapted per-task parameters.
    """
    batch = process_trajectories(trajectories, config.gamma, config.gae_lambda)
    return batch, adapt(policy, params, batch, inner_lr, first_order=True)


def same_rate(a: float | Params, b: float | Params) -> bool:
    """Equal float step sizes, or the very same per-parameter rates (Meta-SGD)."""
    if isinstance(a, dict) or isinstance(b, dict):
        return a is b
    return a == b
