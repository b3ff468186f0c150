"""Exact products of per-task MLP policies from one cached forward pass: Jacobian, gradient and
Hessian products by the R-operator of Pearlmutter (1994, "Fast exact multiplication by the
Hessian").

Everything here computes what the plain ``torch.func`` path computes (that path,
:mod:`fastadapt.algorithms.maml.adapt`, stays the reference; tests check this module against it
and against finite differences):

- :class:`MLPProducts`, :class:`HessianProducts`, :func:`policy_gradients`: Jacobian,
  gradient and Hessian products of per-task MLP policies from one cached forward pass. TRPO's
  conjugate gradient multiplies by the meta-Fisher ten times per meta-iteration, each time
  through the inner step's Hessian (:mod:`fastadapt.algorithms.maml.curvature`); generic
  autograd redoes the whole double-backward graph for every product, while here the
  activations and their first and second derivatives are computed once per batch and every
  product is an R-operator pass: about six batched matmuls per Hessian-vector product, four
  per Gauss-Newton one.
- :func:`mlp_forward`: the distribution parameters of per-task MLP parameters with batched
  matmuls.

Covers :class:`~fastadapt.policies.mlp.GaussianMLPPolicy` and
:class:`~fastadapt.policies.mlp.CategoricalMLPPolicy` (:func:`supports_fast_products`);
anything else takes the reference path. Measured speed-ups are in the docs (Performance).

Shapes: per-task parameters ``[T, ...]``; inputs ``[T, N, I]`` with ``N`` flattened samples.
"""

from __future__ import annotations

from typing import TypeGuard

import torch
from torch import Tensor, nn

from fastadapt.policies.mlp import CategoricalMLPPolicy, GaussianMLPPolicy, Policy, tanh
from fastadapt.types import Batch, Params


def supports_fast_products(policy: object) -> TypeGuard[Policy]:
    """Whether ``policy`` is an MLP policy this module handles."""
    return isinstance(policy, GaussianMLPPolicy | CategoricalMLPPolicy)


def mlp_layers(policy: Policy) -> tuple[list[tuple[str, str]], str]:
    """The ``(weight, bias)`` parameter names of each linear layer of ``policy``'s network, in
    order, and its hidden activation (``"tanh"`` or ``"relu"``)."""
    net = policy.mean if isinstance(policy, GaussianMLPPolicy) else policy.logits
    prefix = "mean." if isinstance(policy, GaussianMLPPolicy) else "logits."
    names = [
        (f"{prefix}{i}.weight", f"{prefix}{i}.bias")
        for i, module in enumerate(net)
        if isinstance(module, nn.Linear)
    ]
    activation = "relu" if any(isinstance(m, nn.ReLU) for m in net) else "tanh"
    return names, activation


def mlp_forward(policy: Policy, params: Params, obs: Tensor) -> Tensor:
    """Distribution parameters ``[T, ..., D]`` of per-task ``params`` at ``obs [T, ..., O]``.

    Same values as ``per_task_output`` with batched matmuls instead of ``vmap`` (whose
    per-call overhead dominates the small batches of a sampler's step).
    """
    layers, activation = mlp_layers(policy)
    a = obs.reshape(obs.shape[0], -1, obs.shape[-1])
    for i, (w, b) in enumerate(layers):
        a = torch.baddbmm(params[b].unsqueeze(1), a, params[w].transpose(1, 2))
        if i < len(layers) - 1:
            a = tanh(a) if activation == "tanh" else torch.relu(a)
    if isinstance(policy, GaussianMLPPolicy):
        log_std = params["log_std"].clamp(min=policy.min_log_std).unsqueeze(1).expand_as(a)
        a = torch.cat([a, log_std], dim=-1)
    return a.reshape(*obs.shape[:-1], a.shape[-1])


def weight_gradient(delta: Tensor, inputs: Tensor) -> Tensor:
    """``delta^T inputs`` per task: ``[T, N, out]``, ``[T, N, in]`` -> ``[T, out, in]``.

    Computed as ``(inputs^T delta)^T`` when ``in < out``: torch's CPU ``bmm`` is slow when the
    product's last dimension is tiny (the first layer of a policy with 2 observation
    dimensions).
    """
    if inputs.shape[-1] < delta.shape[-1]:
        return torch.bmm(inputs.transpose(1, 2), delta).transpose(1, 2)
    return torch.bmm(delta.transpose(1, 2), inputs)


class MLPProducts:
    """Linearisation of a per-task MLP policy at fixed inputs.

    Args:
        policy: the policy module (only its structure is used).
        params: per-task parameters ``[T, ...]`` (detached).
        obs: per-task observations ``[T, ..., O]``.
        second_order: keep ``sigma''(z)`` for :class:`HessianProducts`; ``False`` when only
            first-order products (gradients, Gauss-Newton) are taken.

    Attributes:
        out: distribution parameters ``[T, N, D]`` at ``obs``.
    """

    def __init__(self, policy: Policy, params: Params, obs: Tensor,
                 second_order: bool = True) -> None:
        self.params = {n: p.detach() for n, p in params.items()}
        self.layers, activation = mlp_layers(policy)
        num_tasks = obs.shape[0]
        x = obs.detach().reshape(num_tasks, -1, obs.shape[-1])
        self.inputs: list[Tensor] = [x]  # input of each linear layer
        self.d1: list[Tensor] = []  # sigma'(z) of each hidden layer
        self.d2: list[Tensor] = []  # sigma''(z)
        a = x
        one, zero = x.new_ones(()), x.new_zeros(())
        last = len(self.layers) - 1
        for i, (w, b) in enumerate(self.layers):
            bias, weight = self.params[b].unsqueeze(1), self.params[w].transpose(1, 2)
            if i == last:
                z = torch.baddbmm(bias, a, weight)
                break
            if activation == "tanh":
                # tanh(z) = 2 sigmoid(2z) - 1 with 2z from doubled weights (exact), in place,
                # and one fused pass each for sigma' and sigma'': 4 passes over the [T, N, width]
                # activations instead of 9, and the same values as `tanh`
                a = torch.baddbmm(2 * bias, a, 2 * weight).sigmoid_().mul_(2).sub_(1)
                d1 = torch.addcmul(one, a, a, value=-1)  # 1 - a^2
                if second_order:
                    self.d2.append(torch.addcmul(zero, a, d1, value=-2))  # -2 a (1 - a^2)
            else:
                z = torch.baddbmm(bias, a, weight)
                a = torch.relu(z)
                d1 = (z > 0).to(z.dtype)
                if second_order:
                    self.d2.append(torch.zeros_like(z))
            self.d1.append(d1)
            self.inputs.append(a)
        self.net_dim = z.shape[-1]
        self.log_std_active: Tensor | None = None
        if isinstance(policy, GaussianMLPPolicy):
            log_std = self.params["log_std"]  # [T, A]
            self.log_std_active = (log_std > policy.min_log_std).to(z.dtype).unsqueeze(1)
            log_std = log_std.clamp(min=policy.min_log_std).unsqueeze(1).expand_as(z)
            z = torch.cat([z, log_std], dim=-1)
        self.out: Tensor = z

    def jvp(self, vectors: Params) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """Forward R-pass: ``R out = (d out / d params) v`` ``[T, N, D]``, and each hidden
        layer's ``R z`` and ``R a = sigma'(z) R z`` (reused by :class:`HessianProducts`)."""
        r_z_hidden: list[Tensor] = []
        r_a_hidden: list[Tensor] = []
        r_z = self.out  # placeholder for typing; overwritten in the loop
        for i, (w, b) in enumerate(self.layers):
            r_z = torch.baddbmm(vectors[b].unsqueeze(1), self.inputs[i], vectors[w].transpose(1, 2))
            if i > 0:  # in place: r_z is this product's own tensor
                r_z = r_z.baddbmm_(r_a_hidden[i - 1], self.params[w].transpose(1, 2))
            if i < len(self.layers) - 1:
                r_z_hidden.append(r_z)
                r_a_hidden.append(self.d1[i] * r_z)
        if self.log_std_active is not None:
            r_log_std = (vectors["log_std"].unsqueeze(1) * self.log_std_active).expand_as(r_z)
            r_z = torch.cat([r_z, r_log_std], dim=-1)
        return r_z, r_z_hidden, r_a_hidden

    def vjp(self, cotangent: Tensor) -> Params:
        """Backward pass: ``(d out / d params)^T y`` for ``y [T, N, D]`` (per task)."""
        return self._backward(cotangent)[0]

    def _backward(self, cotangent: Tensor) -> tuple[Params, list[Tensor], list[Tensor]]:
        """Gradients, and the cotangents ``delta h`` and ``delta z`` of each hidden layer."""
        grads: Params = {}
        if self.log_std_active is not None:
            grads["log_std"] = (cotangent[..., self.net_dim :] * self.log_std_active).sum(1)
        delta_z = cotangent[..., : self.net_dim]
        delta_h: list[Tensor] = [torch.empty(0)] * len(self.d1)
        delta_z_hidden: list[Tensor] = [torch.empty(0)] * len(self.d1)
        for i in reversed(range(len(self.layers))):
            w, b = self.layers[i]
            grads[w] = weight_gradient(delta_z, self.inputs[i])
            grads[b] = delta_z.sum(1)
            if i > 0:
                delta_h[i - 1] = torch.bmm(delta_z, self.params[w])
                delta_z = self.d1[i - 1] * delta_h[i - 1]
                delta_z_hidden[i - 1] = delta_z
        return self.in_order(grads), delta_h, delta_z_hidden

    def in_order(self, tensors: Params) -> Params:
        """``tensors`` in the order of the parameters (flattening depends on it)."""
        return {n: tensors[n] for n in self.params}


def inner_loss_output_gradient(policy: Policy, out: Tensor, batch: Batch,
                               create_graph: bool = False) -> Tensor:
    """``d/d out`` of the summed per-task inner losses ``-sum(m log pi(a|s) A) / sum(m)``.

    Args:
        out: distribution parameters ``[T, N, D]`` (``N = E * H``); with ``create_graph`` a
            leaf requiring grad.
        batch: the episodes ``[T, E, H, ...]`` whose observations ``out`` was computed at.
        create_graph: keep the graph (for output-space Hessian products).

    Returns:
        ``[T, N, D]``.
    """
    def loss(out: Tensor) -> Tensor:
        log_probs = policy.log_prob(out.view(*batch.masks.shape, -1), batch.actions)
        weights = batch.advantages * batch.masks
        per_task = -(log_probs * weights).sum((1, 2)) / batch.masks.sum((1, 2)).clamp(min=1)
        return per_task.sum()

    if not create_graph:  # torch.func: also inside vmap (finite-difference tests) and no_grad
        gradient: Tensor = torch.func.grad(loss)(out)
        return gradient
    with torch.enable_grad():
        (gradient,) = torch.autograd.grad(loss(out), out, create_graph=True)
    return gradient


GRADIENT_CHUNK_FLOATS = 2**26
"""Hidden units x samples (256 Mi floats) one chunk of tasks of :func:`policy_gradients` may
cache: Meta-World's meta-test of 200 tasks x 10 episodes x 500 steps through a 2x512 policy
is 10^9 of them at once, several copies of which (activations and their derivatives) would
not fit in memory (measured: docs, Meta-World results)."""


def policy_gradients(policy: Policy, params: Params, batch: Batch) -> Params:
    """Per-task gradients of the on-policy inner loss, without a graph (one cached forward
    pass and one backward pass of batched matmuls; the values of
    :func:`fastadapt.algorithms.maml.adapt.inner_gradients` without its ``vmap``).

    Tasks are taken in chunks whose hidden activations stay under
    :data:`GRADIENT_CHUNK_FLOATS`. Each task's gradient is its own batched matmuls, so the
    chunking leaves the values as they are (bit for bit in the tests; a chunk of a single
    task, which only a task of more than that many activations gets, may differ in the last
    bit).

    Args:
        params: per-task parameters ``[T, ...]``.
        batch: ``[T, E, H, ...]``.

    Returns:
        ``[T, ...]`` (detached).
    """
    num_tasks, samples = batch.observations.shape[0], batch.observations[0, ..., 0].numel()
    widths = sum(params[bias].shape[-1] for _, bias in mlp_layers(policy)[0])
    chunk = max(1, GRADIENT_CHUNK_FLOATS // max(1, samples * widths))
    if chunk >= num_tasks:
        mlp = MLPProducts(policy, params, batch.observations, second_order=False)
        return mlp.vjp(inner_loss_output_gradient(policy, mlp.out, batch))
    parts = [policy_gradients(policy, {n: p[i:i + chunk] for n, p in params.items()},
                              Batch(*(field[i:i + chunk] for field in batch)))
             for i in range(0, num_tasks, chunk)]
    return {name: torch.cat([part[name] for part in parts]) for name in parts[0]}


class HessianProducts:
    """``H v`` of a loss ``L(params) = sum_n l_n(out_n(params))`` (per task, exact).

    ``H v = J^T (d^2 l / d out^2) J v + sum_n (d l / d out_n) . (d^2 out_n / d params^2) v``:
    the first term from the output-space Hessian, the second from the R-pass of the backward.

    Args:
        mlp: the cached forward pass.
        out_leaf: a leaf tensor holding ``mlp.out`` ``[T, N, D]``.
        loss_grad: ``d l / d out`` at ``out_leaf``, computed with ``create_graph=True`` so
            output-space Hessian products are one cheap (elementwise) double backward.

    Attributes:
        gradient: ``d L / d params`` per task ``[T, ...]``.
    """

    def __init__(self, mlp: MLPProducts, out_leaf: Tensor, loss_grad: Tensor) -> None:
        self.mlp = mlp
        self._out_leaf = out_leaf
        self._loss_grad = loss_grad
        self.gradient, delta_h, self._delta_z = mlp._backward(loss_grad.detach())
        # sigma''(z) * delta h is the same for every product: R(delta z) = this * R z + ...
        self._d2_delta_h = [d2 * dh for d2, dh in zip(mlp.d2, delta_h, strict=True)]
        self._delta_z_out = loss_grad.detach()[..., : mlp.net_dim]

    def _output_hvp(self, r_out: Tensor) -> Tensor:
        (result,) = torch.autograd.grad(self._loss_grad, self._out_leaf, r_out, retain_graph=True)
        return result

    def __call__(self, vectors: Params) -> Params:
        """``H_i v_i`` for per-task ``v [T, ...]``."""
        mlp = self.mlp
        r_out, r_z_hidden, r_a_hidden = mlp.jvp(vectors)
        r_delta_out = self._output_hvp(r_out)
        result: Params = {}
        if mlp.log_std_active is not None:
            r_ls = r_delta_out[..., mlp.net_dim :] * mlp.log_std_active
            result["log_std"] = r_ls.sum(1)
        delta_z = self._delta_z_out
        r_delta_z = r_delta_out[..., : mlp.net_dim]
        for i in reversed(range(len(mlp.layers))):
            w, b = mlp.layers[i]
            r_gw = weight_gradient(r_delta_z, mlp.inputs[i])
            if i > 0:
                r_gw = torch.baddbmm(r_gw, delta_z.transpose(1, 2), r_a_hidden[i - 1])
            result[w] = r_gw
            result[b] = r_delta_z.sum(1)
            if i > 0:
                r_delta_h = torch.bmm(r_delta_z, mlp.params[w]).baddbmm_(delta_z, vectors[w])
                r_delta_z = r_delta_h.mul_(mlp.d1[i - 1]).addcmul_(
                    self._d2_delta_h[i - 1], r_z_hidden[i - 1]
                )
                delta_z = self._delta_z[i - 1]
        return mlp.in_order(result)
