"""Exact products with the meta-gradient's Jacobian and the meta-Fisher, from kept graphs.

For one inner step, ``phi_i(theta) = theta - alpha grad L_i(theta)`` has the Jacobian
``J_i = I - alpha H_i`` with ``H_i = grad^2 L_i(theta)`` symmetric, so both ``J_i v`` and
``J_i^T w`` are Hessian-vector products. With ``K`` steps, ``J_i`` is the product of the
per-step Jacobians (each at its own ``phi_i^(k-1)``).

TRPO needs the Hessian of ``KL(theta) = mean_i KL(pi_{phi_i_old} || pi_{phi_i(theta)})`` at
``theta_old``. There ``grad_phi KL = 0``, so the term with the second derivative of ``phi``
vanishes and the Hessian is exactly

    F_meta = sum_i J_i^T F_i J_i,     F_i = grad^2_phi KL_i at phi_i_old (the Fisher),

which is what pytorch-maml-rl computes by differentiating the KL twice through a fresh inner
loop for every product. Here the graphs of ``grad L_i`` (one per inner step) and of
``grad_phi KL`` are built once per meta-iteration and every CG product reuses them.
Per-task parameters are separate leaves ``[T, ...]`` so one backward pass yields every
task's ``H_i v`` at once.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import Tensor

from fastadapt.algorithms.maml.adapt import (
    OutputLinearization,
    adapt,
    expand_to_tasks,
    inner_gradients,
)
from fastadapt.algorithms.maml.estimators import Estimator
from fastadapt.backends.products import (
    HessianProducts,
    MLPProducts,
    inner_loss_output_gradient,
    supports_fast_products,
)
from fastadapt.policies.mlp import Policy
from fastadapt.types import Batch, Params


def _leaf(params: Params) -> Params:
    return {name: p.detach().clone().requires_grad_(True) for name, p in params.items()}


def _vjp(outputs: Params, inputs: Params, vectors: Params) -> Params:
    """``sum_j vectors_j^T d outputs_j / d inputs`` through a kept graph."""
    names = list(inputs)
    grads = torch.autograd.grad(
        [outputs[n] for n in names],
        [inputs[n] for n in names],
        [vectors[n] for n in names],
        retain_graph=True,
        allow_unused=True,
    )
    return {
        n: torch.zeros_like(inputs[n]) if g is None else g
        for n, g in zip(names, grads, strict=True)
    }


def inner_loss_hessian(policy: Policy, params: Params, batch: Batch, estimator: Estimator = "maml"
                       ) -> Callable[[Params], Params]:
    """``u -> H_i u_i``: the Hessian of each task's inner loss at its ``params [T, ...]``.

    MLP policies with the ``maml`` estimator use the cached R-operator products of
    :mod:`fastadapt.backends.products`; anything else a kept double-backward graph of
    :func:`inner_gradients` (``estimator`` picks the surrogate, see
    :mod:`fastadapt.algorithms.maml.estimators`).
    """
    if supports_fast_products(policy) and estimator in ("maml", "emaml"):
        mlp = MLPProducts(policy, params, batch.observations)
        out = mlp.out.detach().requires_grad_(True)
        loss_grad = inner_loss_output_gradient(policy, out, batch, create_graph=True)
        return HessianProducts(mlp, out, loss_grad)
    leaf = _leaf(params)
    with torch.enable_grad():
        grads = inner_gradients(policy, leaf, batch, estimator)
    return lambda u: _vjp(grads, leaf, u)


class InnerLoopJacobian:
    """Products with ``J = d phi / d theta`` through ``K`` inner steps, all tasks at once.

    Args:
        policy: the policy module.
        theta: shared meta-parameters.
        batches: the training batches of the ``K`` inner steps, ``[T, E, H, ...]`` each.
        inner_lr: alpha (float, or per-parameter tensors for Meta-SGD).
        first_order: ``J = I`` (FOMAML); no Hessian is built.
        hessian_fraction: build each step's Hessian on the first ``ceil(fraction * E)``
            episodes only (an unbiased estimate; the inner steps themselves use all episodes).
        num_tasks: ``T``; needed only without inner steps (``batches == []``: ``J = I``,
            multi-task training of one shared policy, or steps to come from :meth:`extend`).
        estimator: the inner surrogate whose Hessian ``J`` holds.

    Attributes:
        theta: the meta-parameters it starts from.
        adapted: the adapted per-task parameters ``phi [T, ...]`` (detached) after the
            steps taken so far.
    """

    def __init__(
        self,
        policy: Policy,
        theta: Params,
        batches: list[Batch],
        inner_lr: float | Params,
        first_order: bool = False,
        hessian_fraction: float = 1.0,
        num_tasks: int | None = None,
        estimator: Estimator = "maml",
    ) -> None:
        self.inner_lr, self.estimator = inner_lr, estimator
        self.first_order, self.hessian_fraction = first_order, hessian_fraction
        num_tasks = batches[0].masks.shape[0] if batches else num_tasks
        if num_tasks is None:
            raise ValueError("InnerLoopJacobian without inner steps needs num_tasks")
        self.theta = theta
        self._policy = policy
        self._batches: list[Batch] = []
        self._points: list[Params] = []  # phi^(k), where step k's Hessian is taken
        self._hessians: list[Callable[[Params], Params]] = []
        self.adapted: Params = {n: p.detach() for n, p in
                                expand_to_tasks(theta, num_tasks).items()}
        for batch in batches:
            self.extend(batch)

    def extend(self, batch: Batch) -> Params:
        """Take one more inner step, on ``batch`` (sampled by :attr:`adapted`).

        The sampler's inner step and the step whose Jacobian TRPO needs are then one
        computation (:func:`~fastadapt.algorithms.maml.meta_batch.collect_meta_batch` takes
        this object).

        Returns:
            The new :attr:`adapted` ``[T, ...]`` (detached).
        """
        current = self.adapted
        self._batches.append(batch)
        self._points.append(current)
        gradient = None
        if not self.first_order:
            with torch.enable_grad():  # also when sampling under no_grad
                hessian = self._hessian(current, batch, self.hessian_fraction)
            self._hessians.append(hessian)
            if isinstance(hessian, HessianProducts) and self.hessian_fraction >= 1.0:
                gradient = hessian.gradient  # the inner step's gradient, already computed
        with torch.no_grad():
            if gradient is None:
                current = adapt(self._policy, current, batch, self.inner_lr, first_order=True)
            else:
                current = {n: p - self._lr(n) * gradient[n] for n, p in current.items()}
        self.adapted = current
        return current

    @property
    def steps(self) -> int:
        """Inner steps taken so far."""
        return len(self._batches)

    @property
    def batches(self) -> tuple[Batch, ...]:
        """The training batches of the steps taken so far."""
        return tuple(self._batches)

    def _hessian(self, point: Params, batch: Batch, fraction: float
                 ) -> Callable[[Params], Params]:
        return inner_loss_hessian(self._policy, point, subsample_episodes(batch, fraction),
                                  self.estimator)

    def _build_hessians(self, fraction: float) -> list[Callable[[Params], Params]]:
        return [self._hessian(point, batch, fraction)
                for point, batch in zip(self._points, self._batches, strict=True)]

    def subsampled(self, fraction: float) -> InnerLoopJacobian:
        """The same inner loop with Hessians estimated on a fraction of the episodes."""
        if fraction >= 1.0 or not self._hessians:
            return self
        other = copy.copy(self)
        other._hessians = self._build_hessians(fraction)
        return other

    def _lr(self, name: str) -> float | Tensor:
        return self.inner_lr[name] if isinstance(self.inner_lr, dict) else self.inner_lr

    def jvp(self, vector: Params) -> Params:
        """``J_i v`` for every task: shared ``v`` -> per-task ``[T, ...]``."""
        num_tasks = next(iter(self.adapted.values())).shape[0]
        u = {n: v.expand(num_tasks, *v.shape) for n, v in vector.items()}
        for hessian in self._hessians:
            hu = hessian(u)
            u = {n: u[n] - self._lr(n) * hu[n] for n in u}
        return u

    def vjp(self, vectors: Params) -> Params:
        """``sum_i J_i^T w_i``: per-task ``w [T, ...]`` -> shared."""
        w = vectors
        for hessian in reversed(self._hessians):  # H symmetric: J^T w = w - H (lr * w)
            hw = hessian({n: self._lr(n) * w[n] for n in w})
            w = {n: w[n] - hw[n] for n in w}
        return {n: x.sum(0) for n, x in w.items()}


class KLHessian:
    """Products with ``F_i = grad^2_phi mean KL(pi_old || pi_phi)`` at ``phi = phi_old``.

    At ``phi_old`` the KL's gradient in the outputs vanishes, so its Hessian is exactly the
    Gauss-Newton product ``G^T M G`` with ``G = d out / d phi`` and ``M`` the KL's Hessian in
    the distribution parameters (the Fisher in output space, ``policy.fisher_output_product``).
    One forward-mode and one reverse-mode pass per product; no second derivatives.

    Args:
        policy: the policy module.
        adapted: per-task parameters ``phi_old [T, ...]``.
        batch: validation episodes ``[T, E, H, ...]`` whose states the KL averages over.
        products: the MLP's forward pass at ``adapted`` and ``batch.observations`` if the
            caller already has it (the outer gradient's), else built here.
    """

    def __init__(self, policy: Policy, adapted: Params, batch: Batch,
                 products: MLPProducts | None = None) -> None:
        self._policy = policy
        masks = batch.masks
        # mean over each task's unmasked steps, then over tasks (as mean_kl)
        weights = masks / masks.sum((1, 2), keepdim=True).clamp(min=1.0) / masks.shape[0]
        self._linear: MLPProducts | OutputLinearization
        if supports_fast_products(policy):
            self._linear = products or MLPProducts(policy, adapted, batch.observations,
                                                   second_order=False)
            self._weights = weights.reshape(masks.shape[0], -1, 1)
        else:
            self._linear = OutputLinearization(policy, adapted, batch.observations)
            self._weights = weights.unsqueeze(-1)

    def __call__(self, vectors: Params) -> Params:
        """``F_i u_i`` for per-task ``u [T, ...]``."""
        tangent = self._linear.jvp(vectors)
        if isinstance(tangent, tuple):  # MLPProducts also returns hidden-layer tangents
            tangent = tangent[0]
        metric = self._policy.fisher_output_product(self._linear.out, tangent)
        return self._linear.vjp(metric * self._weights)


def subsample_episodes(batch: Batch, fraction: float) -> Batch:
    """The first ``ceil(fraction * E)`` episodes of every task (episodes are i.i.d.)."""
    num_episodes = batch.masks.shape[1]
    keep = max(1, int(-(-fraction * num_episodes // 1)))
    if keep >= num_episodes:
        return batch
    return Batch(*(x[:, :keep] for x in batch))
