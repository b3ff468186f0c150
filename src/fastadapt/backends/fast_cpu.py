"""The fast CPU backend: exact MLP products from cached passes, a prepared sampling forward,
and the allocator setting that keeps their large activations cheap.

Everything here computes what the plain ``torch.func`` path computes (that path,
:mod:`fastadapt.algorithms.maml.adapt`, stays the reference; tests check this module against it
and against finite differences):

- :class:`MLPProducts`, :class:`HessianProducts`, :func:`policy_gradients`: Jacobian,
  gradient and Hessian products of per-task MLP policies from one cached forward pass. TRPO's
  conjugate gradient multiplies by the meta-Fisher ten times per meta-iteration, each time
  through the inner step's Hessian (:mod:`fastadapt.algorithms.maml.curvature`); generic
  autograd redoes the whole double-backward graph for every product, while here the
  activations and their first and second derivatives are computed once per batch and every
  product is the R-operator pass of Pearlmutter (1994, "Fast exact multiplication by the
  Hessian"): about six batched matmuls per Hessian-vector product, four per Gauss-Newton one.
- :class:`SamplingForward`: the policy's forward pass prepared once per rollout for the
  sampler's many small steps, with each task's outputs independent of the other tasks in the
  batch and of the thread count, bit for bit (:func:`split_invariant_`).
- :func:`retain_freed_memory` / :func:`configure_process`: glibc's allocator set to keep
  freed memory in the process, so the hundreds of large temporary tensors of an exact TRPO
  step do not each fault in fresh pages.

Covers :class:`~fastadapt.policies.mlp.GaussianMLPPolicy` and
:class:`~fastadapt.policies.mlp.CategoricalMLPPolicy` (:func:`supports_fast_products`);
anything else takes the reference path. Measured speed-ups are in the docs (Performance).

Shapes: per-task parameters ``[T, ...]``; inputs ``[T, N, I]`` with ``N`` flattened samples.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import sys
from collections.abc import Callable
from typing import TypeGuard

import torch
from torch import Tensor, nn

from fastadapt.policies.mlp import CategoricalMLPPolicy, GaussianMLPPolicy, Policy, tanh
from fastadapt.types import Batch, Params


def supports_fast_products(policy: object) -> TypeGuard[Policy]:
    """Whether ``policy`` is an MLP policy this module handles."""
    return isinstance(policy, GaussianMLPPolicy | CategoricalMLPPolicy)


def _layers(policy: Policy) -> tuple[list[tuple[str, str]], str]:
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
    layers, activation = _layers(policy)
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


VECTOR_STEP = 64
"""Elements: a multiple of the step of ATen's vectorised CPU loops (two vector registers, 32
float32 with AVX-512)."""
SERIAL_SLICE = 16384
"""Elements per elementwise call: under ATen's parallel grain (32768), so one thread runs it."""


def split_invariant_(op_: Callable[[Tensor], Tensor], flat: Tensor) -> None:
    """Apply the in-place elementwise ``op_`` (``Tensor.sigmoid_``, ``Tensor.exp_``) to the 1-D
    ``flat`` (length a multiple of :data:`VECTOR_STEP`) so that every element takes ATen's
    vectorised path.

    ATen runs a contiguous elementwise op in steps of two vectors and the remainder (and each
    thread's remainder) with the scalar function, whose ``exp`` rounds differently from the
    vectorised one by an ulp. Which elements fall in a remainder depends on the tensor's length,
    so a task's actions would depend on how many tasks share the batch: a worker holding 2 of
    5 tasks would not reproduce the in-process batch bit for bit. Padded to
    :data:`VECTOR_STEP` and cut into single-thread slices, no element has a remainder.
    """
    if flat.numel() <= SERIAL_SLICE or torch.get_num_threads() == 1:
        op_(flat)
        return
    for start in range(0, flat.numel(), SERIAL_SLICE):
        op_(flat[start : start + SERIAL_SLICE])


def padded(shape: tuple[int, ...], dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """A zeroed 1-D buffer padded to a multiple of :data:`VECTOR_STEP` and its first
    ``prod(shape)`` elements viewed as ``shape`` (for :func:`split_invariant_`)."""
    size = math.prod(shape)
    flat = torch.zeros(-(-size // VECTOR_STEP) * VECTOR_STEP, dtype=dtype)
    return flat, flat[:size].view(shape)


class SamplingForward:
    """``mlp_forward`` prepared for a sampler's many small steps with fixed per-task params.

    A rollout calls the policy once per env step on ``[T, E, O]`` observations (a few hundred
    rows), where per-op overhead, not arithmetic, sets the cost. Once per rollout this
    transposes the weights, computes ``sigma = exp(log_std)``, and folds the affine maps of
    ``tanh(z) = 2 sigmoid(2z) - 1`` into the weights (with ``s = sigmoid(2z)``:
    ``W tanh(z) + b = (2W) s + (b - W 1)``), so each hidden layer is one ``baddbmm`` into a
    reused buffer and one in-place ``sigmoid``, and a Gaussian action ``mu + sigma * noise`` is
    the output layer's ``baddbmm`` onto ``b + sigma * noise``. Same function as
    :func:`mlp_forward` up to float32 rounding (~2e-6 on the outputs).

    Each task's outputs are independent of the other tasks in the batch, bit for bit (the
    ``exp`` and ``sigmoid`` run through :func:`split_invariant_`), and of the thread count:
    what lets worker samplers return the in-process batch exactly.

    Args:
        policy: a policy :func:`supports_fast_products` accepts.
        params: per-task parameters ``[T, ...]`` (read once; later changes are not seen).
    """

    def __init__(self, policy: Policy, params: Params) -> None:
        layers, activation = _layers(policy)
        self._sigmoid = activation == "tanh"
        self._affine: list[tuple[Tensor, Tensor]] = []  # (bias [T, 1, out], weight [T, in, out])
        self._buffers: dict[tuple[int, ...], list[tuple[Tensor, Tensor]]] = {}
        last = len(layers) - 1
        for i, (w, b) in enumerate(layers):
            weight = params[w].detach().transpose(1, 2)
            bias = params[b].detach().unsqueeze(1)
            if self._sigmoid:
                if i > 0:  # the input is s = sigmoid(2 z_prev): W h = 2 W s - W 1
                    bias = bias - weight.sum(1, keepdim=True)
                    weight = 2 * weight
                if i < last:  # this layer's pre-activation enters as 2 z
                    bias, weight = 2 * bias, 2 * weight
            # hidden layers: contiguous [in, out]; the narrow output layer stays a transposed
            # view (the faster form for a product with few output columns)
            self._affine.append((bias, weight if i == last else weight.contiguous()))
        self.std: Tensor | None = None
        if isinstance(policy, GaussianMLPPolicy):
            log_std = params["log_std"].detach().clamp(min=policy.min_log_std)
            flat, std = padded(tuple(log_std.shape), log_std.dtype)
            std.copy_(log_std)
            split_invariant_(Tensor.exp_, flat)
            self.std = std.unsqueeze(1)

    def _hidden(self, obs: Tensor) -> Tensor:
        """Last hidden layer ``[T, E, W]``; a view of a buffer the next call overwrites."""
        key = tuple(obs.shape[:-1])
        if key not in self._buffers:
            self._buffers[key] = [padded((*key, w.shape[-1]), obs.dtype)
                                  for _, w in self._affine[:-1]]
        a = obs
        for (bias, weight), (flat, out) in zip(self._affine[:-1], self._buffers[key],
                                               strict=True):
            a = torch.baddbmm(bias, a, weight, out=out)
            if self._sigmoid:
                split_invariant_(Tensor.sigmoid_, flat)
            else:
                a.relu_()  # exact: no rounding to depend on the batch
        return a

    def __call__(self, obs: Tensor) -> Tensor:
        """Network outputs (Gaussian means or logits) ``[T, E, D]`` at ``obs [T, E, O]``."""
        bias, weight = self._affine[-1]
        return torch.baddbmm(bias, self._hidden(obs), weight)

    def gaussian_actions(self, obs: Tensor, noise: Tensor) -> Tensor:
        """``mu(obs) + sigma * noise`` ``[T, E, A]`` (Gaussian policies) for ``noise [T, E, A]``."""
        if self.std is None:
            raise TypeError("gaussian_actions needs a GaussianMLPPolicy")
        bias, weight = self._affine[-1]
        return torch.baddbmm(torch.addcmul(bias, noise, self.std), self._hidden(obs), weight)


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
        self.layers, activation = _layers(policy)
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


def policy_gradients(policy: Policy, params: Params, batch: Batch) -> Params:
    """Per-task gradients of the on-policy inner loss, without a graph (one cached forward
    pass and one backward pass of batched matmuls; the values of
    :func:`fastadapt.algorithms.maml.adapt.inner_gradients` without its ``vmap``).

    Args:
        params: per-task parameters ``[T, ...]``.
        batch: ``[T, E, H, ...]``.

    Returns:
        ``[T, ...]`` (detached).
    """
    mlp = MLPProducts(policy, params, batch.observations, second_order=False)
    return mlp.vjp(inner_loss_output_gradient(policy, mlp.out, batch))


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


# --------------------------------------------------------------------------- the allocator
# Meta-RL updates allocate and free the same large activations many times per iteration (one
# [20, 2000, 64] float32 tensor is 10 MB; an exact TRPO step makes hundreds). glibc serves blocks
# above its mmap threshold with fresh mmap pages and unmaps them on free, so every allocation
# pays page faults and the zeroing of new pages in the kernel. retain_freed_memory serves such
# blocks from the heap and keeps freed memory in the process, as jemalloc or tcmalloc would; the
# price is that the process keeps its peak heap until it exits.

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 1 << 30
"""Blocks below this come from the heap (glibc >= 2.35 accepts it; older glibc caps the
threshold at 32 MB, which :func:`retain_freed_memory` falls back to)."""
MMAP_THRESHOLD_FALLBACK_BYTES = 32 << 20
TRIM_THRESHOLD_BYTES = 1 << 30
"""Free memory at the top of the heap kept before glibc returns any to the OS."""


def retain_freed_memory() -> bool:
    """Serve blocks below 1 GB (32 MB on older glibc) from glibc's heap and keep freed memory
    in the process.

    Setting these ``mallopt`` parameters also turns off glibc's dynamic threshold (which
    otherwise follows the last freed block, so whether an allocation faults in fresh pages
    depends on the order of earlier ones). A no-op returning ``False`` where the C library
    is not glibc (macOS, musl, Windows).

    Returns:
        Whether both settings were applied.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    mmap_set: bool = any(mallopt(_M_MMAP_THRESHOLD, size) == 1
                         for size in (MMAP_THRESHOLD_BYTES, MMAP_THRESHOLD_FALLBACK_BYTES))
    trim_set: bool = mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1
    return mmap_set and trim_set


def configure_process(num_threads: int, keep_freed_memory: bool = True) -> None:
    """Set torch's intra-op threads and, optionally, :func:`retain_freed_memory`.

    Args:
        num_threads: torch intra-op threads (the machine's cores; 1 when several processes
            share them).
        keep_freed_memory: apply :func:`retain_freed_memory` (``run.retain_freed_memory``).
    """
    torch.set_num_threads(num_threads)
    if keep_freed_memory:
        retain_freed_memory()
