"""The MAML inner loop, written once with ``torch.func`` and batched over tasks with ``vmap``.

This is the one MAML inner loop (``torch.func.grad`` mapped over tasks with ``vmap``; the fast
CPU backend computes the same gradients for MLP policies without ``vmap``, see
:func:`~fastadapt.backends.products.policy_gradients`). Parameters are explicit ``Params`` dicts;
per-task parameters carry a leading ``[T]`` axis. The inner update is one policy-gradient step
per task (Finn et al. 2017, eq. 1):

    phi_i = theta - alpha * grad_theta L_i(theta),   L_i = -E[log pi_theta(a|s) A(s, a)]

``adapt`` is differentiable: called on parameters that require grad, the returned ``phi``
carries the second-order graph through ``grad L_i`` (exact MAML); ``first_order=True`` drops
it (FOMAML). ``inner_lr`` may be a float or per-parameter tensors (Meta-SGD, Li et al. 2017).
"""

from __future__ import annotations

__all__ = ["OutputLinearization", "adapt", "adapt_steps", "expand_to_tasks", "inner_gradients",
           "inner_loss", "per_task_output", "policy_output"]

import torch
from torch import Tensor
from torch.func import grad, jvp, vjp, vmap

from fastadapt.algorithms.maml.estimators import Estimator, inner_surrogate
from fastadapt.backends.products import policy_gradients, supports_fast_products
from fastadapt.policies.functional import per_task_output, policy_output
from fastadapt.policies.mlp import Policy
from fastadapt.types import Batch, Params


def expand_to_tasks(params: Params, num_tasks: int) -> Params:
    """Shared parameters viewed as per-task parameters ``[T, ...]`` (no copy)."""
    return {name: p.expand(num_tasks, *p.shape) for name, p in params.items()}


def inner_loss(policy: Policy, params: Params, batch: Batch, estimator: Estimator = "maml",
               old_log_probs: Tensor | None = None) -> Tensor:
    """Policy-gradient loss of one task, ``-sum(m * log pi(a|s) * A) / sum(m)`` in its
    first derivative; ``estimator`` picks the form of its second derivative (see
    :mod:`fastadapt.algorithms.maml.estimators`).

    Args:
        params: shared-shape parameters of one task's policy.
        batch: one task's episodes, ``[E, H, ...]``.
        old_log_probs: ``[E, H]`` log-probabilities under the policy that sampled ``batch``
            if it is not ``params`` (importance-weighted; ``None``: on-policy).

    Returns:
        A scalar.
    """
    out = policy_output(policy, params, batch.observations)
    log_probs = policy.log_prob(out, batch.actions)
    return inner_surrogate(log_probs, batch.advantages, batch.masks, estimator, old_log_probs)


def inner_gradients(policy: Policy, params: Params, batch: Batch, estimator: Estimator = "maml",
                    old_log_probs: Tensor | None = None) -> Params:
    """Per-task gradients ``grad L_i(params_i)`` for all tasks at once.

    Args:
        params: per-task parameters ``[T, ...]``.
        batch: ``[T, E, H, ...]``.
        estimator: the inner surrogate (:mod:`fastadapt.algorithms.maml.estimators`).
        old_log_probs: ``[T, E, H]`` log-probabilities of the sampling policies, for episodes
            reused off-policy (``None``: sampled by ``params``).

    Returns:
        Per-task gradients ``[T, ...]``. If ``params`` require grad, the result keeps the
        graph of the gradient, so it can be differentiated again (Hessian-vector products).
    """
    def loss(p: Params, b: Batch, old: Tensor | None) -> Tensor:
        return inner_loss(policy, p, b, estimator, old)

    grads: Params
    differentiable = torch.is_grad_enabled() and any(p.requires_grad for p in params.values())
    if old_log_probs is None and not differentiable and supports_fast_products(policy):
        return policy_gradients(policy, params, batch)  # same values, cached batched matmuls
    if old_log_probs is None:
        grads = vmap(grad(lambda p, b: loss(p, b, None)))(params, batch)
    else:
        grads = vmap(grad(loss))(params, batch, old_log_probs)
    return grads


def adapt(
    policy: Policy,
    params: Params,
    batch: Batch,
    inner_lr: float | Params,
    first_order: bool = False,
    estimator: Estimator = "maml",
    old_log_probs: Tensor | None = None,
) -> Params:
    """One inner policy-gradient step per task: ``phi_i = params_i - alpha * grad L_i``.

    Args:
        policy: the policy module (its own parameters are ignored).
        params: per-task parameters ``[T, ...]`` (use :func:`expand_to_tasks` for theta).
        batch: the tasks' training episodes ``[T, E, H, ...]``.
        inner_lr: step size alpha, or per-parameter step sizes shaped like the parameters
            (Meta-SGD).
        first_order: drop the second-order term (FOMAML): the gradient is treated as constant.
        estimator: the inner surrogate whose Hessian the second-order term uses.
        old_log_probs: ``[T, E, H]``, when ``batch`` was sampled by other parameters than
            ``params`` (see :func:`inner_gradients`).

    Returns:
        Adapted per-task parameters ``[T, ...]``.
    """
    at = {n: p.detach() for n, p in params.items()} if first_order else params
    grads = inner_gradients(policy, at, batch, estimator, old_log_probs)
    adapted: Params = {}
    for name, p in params.items():
        g = grads[name].detach() if first_order else grads[name]
        lr = inner_lr[name] if isinstance(inner_lr, dict) else inner_lr
        adapted[name] = p - lr * g
    return adapted


def adapt_steps(
    policy: Policy,
    params: Params,
    batches: list[Batch],
    inner_lr: float | Params,
    first_order: bool = False,
    estimator: Estimator = "maml",
) -> Params:
    """Several inner steps, step ``k`` using ``batches[k]`` (sampled with the step-``k`` policy).

    Args:
        params: per-task parameters ``[T, ...]``.

    Returns:
        Per-task parameters after ``len(batches)`` steps.
    """
    for batch in batches:
        params = adapt(policy, params, batch, inner_lr, first_order, estimator)
    return params


class OutputLinearization:
    """Jacobian products of the per-task policy outputs ``out = f(phi) [T, ..., D]``.

    ``jvp(u) = (d out / d phi) u`` (forward mode) and ``vjp(y) = (d out / d phi)^T y`` (reverse
    mode through a graph kept from construction), used for Gauss-Newton products.
    """

    def __init__(self, policy: Policy, params: Params, obs: Tensor) -> None:
        self._params = params

        def outputs(p: Params) -> Tensor:
            return per_task_output(policy, p, obs)

        self._fn = outputs
        linearized = vjp(outputs, params)
        self.out: Tensor = linearized[0]
        self._vjp = linearized[1]

    def jvp(self, tangents: Params) -> Tensor:
        """``[T, ..., D]`` directional derivative of the outputs along per-task ``tangents``."""
        result: Tensor = jvp(self._fn, (self._params,), (tangents,))[1]
        return result

    def vjp(self, cotangent: Tensor) -> Params:
        """Per-task parameter cotangents ``[T, ...]`` of an output cotangent ``[T, ..., D]``."""
        grads: Params = self._vjp(cotangent)[0]
        return grads
