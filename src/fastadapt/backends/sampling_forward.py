"""The policy's forward pass prepared once per rollout for a sampler's many small steps
(:class:`SamplingForward`), with each task's outputs independent of the other tasks in the batch
and of the thread count, bit for bit (:func:`split_invariant_`).

Computes what :func:`~fastadapt.backends.products.mlp_forward` computes, up to float32
rounding (tests check it against the policy module vmapped over tasks). Covers the policies
:func:`~fastadapt.backends.products.supports_fast_products` accepts.

Shapes: per-task parameters ``[T, ...]``; observations ``[T, E, O]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from fastadapt.backends.products import mlp_layers
from fastadapt.policies.mlp import GaussianMLPPolicy, Policy
from fastadapt.types import Params

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
        layers, activation = mlp_layers(policy)
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
