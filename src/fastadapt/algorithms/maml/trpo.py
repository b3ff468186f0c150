"""MAML-TRPO's outer step (Finn et al. 2017, Algorithm 3, line 10, with TRPO).

TRPO on ``theta`` for the post-adaptation surrogate, differentiating through the inner steps:
gradient ``sum_i J_i^T grad_phi L_i``, natural direction by CG on the exact meta-Fisher
``sum_i J_i^T F_i J_i`` (see :mod:`fastadapt.algorithms.maml.curvature`), KL-constrained
backtracking line search that re-runs the inner loop at each trial.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from fastadapt.algorithms.common.trpo import (
    TRPOConfig,
    backtracking_line_search,
    flatten,
    natural_step,
    unflatten,
)
from fastadapt.algorithms.maml.adapt import adapt_steps, expand_to_tasks
from fastadapt.algorithms.maml.config import MAMLConfig
from fastadapt.algorithms.maml.curvature import InnerLoopJacobian, KLHessian, subsample_episodes
from fastadapt.algorithms.maml.losses import mean_kl, surrogate_loss
from fastadapt.algorithms.maml.meta_batch import MetaBatch, same_rate
from fastadapt.backends.products import MLPProducts, mlp_forward, supports_fast_products
from fastadapt.policies.functional import per_task_output
from fastadapt.policies.mlp import Policy
from fastadapt.types import Batch, Params


class OuterGradient(NamedTuple):
    """The post-adaptation surrogate at ``phi_old`` and what the TRPO step reuses of it.

    Attributes:
        products: the cached forward pass on the validation batch (MLP policies), else ``None``.
        loss: the surrogate (a scalar, detached).
        grads: ``d loss / d phi`` per task ``[T, ...]``.
        out: distribution parameters of ``phi_old`` ``[T, E, H, D]`` (detached).
        log_probs: ``log pi_phi_old(a|s)`` of the validation actions ``[T, E, H]``.
    """

    products: MLPProducts | None
    loss: Tensor
    grads: Params
    out: Tensor
    log_probs: Tensor


class MAMLTRPO:
    """The MAML-TRPO meta-update ``theta -> theta'`` on one :class:`MetaBatch`."""

    def __init__(self, policy: Policy, maml: MAMLConfig, trpo: TRPOConfig) -> None:
        self.policy = policy
        self.maml = maml
        self.trpo = trpo
        self.estimator = maml.resolved_estimator  # not emaml: MAMLTRPOConfig refuses it

    def inner_lr(self) -> float:
        """The inner step size the samplers and evaluation adapt with."""
        return self.maml.inner_lr

    def state_dict(self) -> dict[str, Tensor]:
        """TRPO keeps no state between meta-iterations."""
        return {}

    def load_state_dict(self, tensors: dict[str, Tensor]) -> None:
        """Nothing to restore (see :meth:`state_dict`)."""

    def inner_loop(self, theta: Params, num_tasks: int) -> InnerLoopJacobian:
        """A fresh inner loop at ``theta`` for :func:`collect_meta_batch`: the sampler's inner
        steps then build the Hessian caches that :meth:`step` needs, once."""
        return InnerLoopJacobian(self.policy, theta, [], self.maml.inner_lr,
                                 self.maml.first_order, num_tasks=num_tasks,
                                 estimator=self.estimator)

    def _inner_loop_of(self, theta: Params, meta_batch: MetaBatch) -> InnerLoopJacobian:
        """The meta-batch's own inner loop if it is this step's (same ``theta``, steps and
        settings), else one rebuilt from its training batches."""
        kept = meta_batch.inner_loop
        if (kept is not None and kept.theta is theta and kept.steps == len(meta_batch.train)
                and all(a is b for a, b in zip(kept.batches, meta_batch.train, strict=True))
                and same_rate(kept.inner_lr, self.maml.inner_lr)
                and kept.first_order == self.maml.first_order
                and kept.estimator == self.estimator and kept.hessian_fraction == 1.0):
            return kept
        return InnerLoopJacobian(
            self.policy, theta, meta_batch.train, self.maml.inner_lr, self.maml.first_order,
            num_tasks=meta_batch.valid.masks.shape[0], estimator=self.estimator,
        )

    def _meta_fisher(self, theta: Params, meta_batch: MetaBatch, jacobian: InnerLoopJacobian,
                     products: MLPProducts | None = None) -> Callable[[Tensor], Tensor]:
        """Damped meta-Fisher-vector product ``v -> (sum_i J_i^T F_i J_i + d I) v``.

        With ``trpo.fvp_subsample < 1`` (the section's) the inner Hessians in ``J_i`` and the
        Fisher ``F_i`` (still at the adapted ``phi_i``) are estimated on that fraction of the
        episodes.
        ``products``: the forward pass on the whole validation batch, reused when exact.
        """
        fraction = self.trpo.fvp_subsample
        jacobian = jacobian.subsampled(fraction)
        valid = subsample_episodes(meta_batch.valid, fraction)
        fisher = KLHessian(self.policy, jacobian.adapted, valid,
                           products if fraction >= 1.0 else None)

        def fvp(vector: Tensor) -> Tensor:
            per_task = fisher(jacobian.jvp(unflatten(vector, theta)))
            return flatten(jacobian.vjp(per_task)) + self.trpo.cg_damping * vector

        return fvp

    def _outer_gradient(self, adapted: Params, valid: Batch) -> OuterGradient:
        """Surrogate loss at ``phi_old = adapted`` and its gradient in ``phi`` per task.

        MLP policies take one cached forward pass (:class:`MLPProducts`, which the exact
        Fisher reuses) and one backward pass; others autograd through ``vmap``.
        """
        policy = self.policy
        products = None
        with torch.enable_grad():
            if supports_fast_products(policy):
                products = MLPProducts(policy, adapted, valid.observations, second_order=False)
                out = products.out.view(*valid.masks.shape, -1).requires_grad_(True)
                params: Params = {}  # the surrogate reads `out`
            else:
                params = {n: p.detach().requires_grad_(True) for n, p in adapted.items()}
                out = per_task_output(policy, params, valid.observations)
            old_out = out.detach()  # the sampling policy pi_phi_old: one forward for both
            old_log_probs = policy.log_prob(old_out, valid.actions)
            loss, _ = surrogate_loss(policy, params, valid, old_log_probs, out)
            if products is not None:
                (d_out,) = torch.autograd.grad(loss, out)
                grads = products.vjp(d_out.reshape(products.out.shape))
            else:
                grads = dict(zip(params, torch.autograd.grad(loss, list(params.values())),
                                 strict=True))
        return OuterGradient(products, loss.detach(), grads, old_out, old_log_probs)

    def step(self, theta: Params, meta_batch: MetaBatch) -> tuple[Params, dict[str, float]]:
        """One TRPO meta-update.

        Args:
            theta: meta-parameters (shared shapes; not modified).
            meta_batch: episodes from :func:`collect_meta_batch` with ``theta``.

        Returns:
            ``(new theta, metrics)``. If the gradient is not finite or the line search finds
            no acceptable step, ``theta`` is returned unchanged and ``metrics["step_accepted"]
            == 0`` (``metrics["nonfinite"] == 1`` for a non-finite gradient).
        """
        policy, valid = self.policy, meta_batch.valid
        jacobian = self._inner_loop_of(theta, meta_batch)
        products, loss, outer_grads, old_out, old_log_probs = self._outer_gradient(
            jacobian.adapted, valid
        )
        gradient = flatten(jacobian.vjp(outer_grads))
        metrics = {"loss_before": float(loss.detach()), "grad_norm": float(gradient.norm())}
        if not torch.isfinite(gradient).all() or not torch.isfinite(loss):
            return theta, {**metrics, "step_accepted": 0.0, "nonfinite": 1.0, "kl": 0.0}

        fvp = self._meta_fisher(theta, meta_batch, jacobian, products)
        full_step, predicted_kl = natural_step(gradient, fvp, self.trpo)

        @torch.no_grad()
        def evaluate(candidate: Tensor) -> tuple[float, float]:
            params = expand_to_tasks(unflatten(candidate, theta), valid.masks.shape[0])
            adapted = adapt_steps(policy, params, meta_batch.train, self.maml.inner_lr, True)
            out = (mlp_forward(policy, adapted, valid.observations)  # batched matmuls, no vmap
                   if supports_fast_products(policy) else None)
            new_loss, new_out = surrogate_loss(policy, adapted, valid, old_log_probs, out)
            return float(new_loss), float(mean_kl(policy, old_out, new_out, valid.masks))

        new_flat, backtracks, new_loss, kl = backtracking_line_search(
            evaluate, flatten(theta).detach(), full_step, float(loss.detach()), self.trpo
        )
        metrics.update(
            loss_after=new_loss,
            kl=kl,
            predicted_kl=predicted_kl,
            step_accepted=float(backtracks is not None),
            backtracks=float(-1 if backtracks is None else backtracks),
            nonfinite=0.0,
        )
        new_theta = {n: p.detach().clone() for n, p in unflatten(new_flat, theta).items()}
        return new_theta, metrics
