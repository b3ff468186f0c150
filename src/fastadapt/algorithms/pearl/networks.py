"""PEARL's networks as explicit parameters: ensembles of ReLU MLPs with stacked weights.

A network of ``K`` members (``K = 2`` for the twin Qs, 1 for the others) is a ``Params`` dict
``{prefix}{i}.weight [K, in, out]``, ``{prefix}{i}.bias [K, 1, out]`` for layers
``i = 0..L-1``; :func:`mlp` evaluates all members in one batched matrix product per layer
(``baddbmm``), the first layer of a shared input as one wide product. The learner
(:mod:`.update`) keeps every network in one dict and every loss is a pure function of it
(:mod:`.losses`).

Initialisation follows rlkit, the library of PEARL's oyster: hidden weights uniform in
``+-1/sqrt(fan_in)``, hidden biases 0.1, the last layer's weights and biases uniform in
``+-3e-3`` (oyster's policy: ``+-1e-3``).
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor

from fastadapt.types import Params

HIDDEN_BIAS = 0.1
LAST_LAYER_SCALE = 3e-3
POLICY_LAST_LAYER_SCALE = 1e-3


def init_mlp(prefix: str, sizes: list[int], members: int, generator: torch.Generator,
             last_scale: float = LAST_LAYER_SCALE) -> Params:
    """A fresh ``members``-member ReLU MLP of layer ``sizes`` (input first, output last)."""
    params: Params = {}
    layers = list(itertools.pairwise(sizes))
    for i, (fan_in, fan_out) in enumerate(layers):
        last = i == len(layers) - 1
        bound = last_scale if last else 1.0 / math.sqrt(fan_in)
        weight = (torch.rand(members, fan_in, fan_out, generator=generator) * 2 - 1) * bound
        if last:
            bias = (torch.rand(members, 1, fan_out, generator=generator) * 2 - 1) * bound
        else:
            bias = torch.full((members, 1, fan_out), HIDDEN_BIAS)
        params[f"{prefix}{i}.weight"], params[f"{prefix}{i}.bias"] = weight, bias
    return params


def num_layers(params: Params, prefix: str) -> int:
    """Layers of the network ``prefix`` in ``params``."""
    return sum(1 for name in params if name.startswith(prefix) and name.endswith(".weight"))


def mlp(params: Params, prefix: str, x: Tensor) -> Tensor:
    """The ``K`` members of network ``prefix`` at ``x``.

    Args:
        x: ``[N, in]`` (one input for every member) or ``[K, N, in]`` (one per member).

    Returns:
        ``[K, N, out]``.
    """
    layers = num_layers(params, prefix)
    weight, bias = params[f"{prefix}0.weight"], params[f"{prefix}0.bias"]
    members, fan_in, width = weight.shape
    if x.dim() == 2:  # a shared input: all members' first layers as one [N, K * width] product
        wide = weight.permute(1, 0, 2).reshape(fan_in, members * width)
        h = (x @ wide).view(-1, members, width).transpose(0, 1) + bias
    else:
        h = torch.baddbmm(bias, x, weight)
    for i in range(1, layers):
        h = torch.baddbmm(params[f"{prefix}{i}.bias"], torch.relu(h),
                          params[f"{prefix}{i}.weight"])
    return h


def fold_latent(params: Params, prefix: str, z: Tensor, obs_dim: int) -> Params:
    """The single-member network ``prefix`` of input ``[s, z]`` as per-task parameters of a
    :class:`~fastadapt.policies.squashed.SquashedGaussianPolicy` of input ``s``: task ``t``'s
    first-layer bias absorbs its latent, ``b + W_z z_t`` (``nn.Linear`` layout ``[out, in]``).

    Args:
        z: ``[T, L]``.

    Returns:
        ``net.{2i}.weight [T, out, in]``, ``net.{2i}.bias [T, out]`` and ``noise_scale [T]``
        (1.0), on ``z``'s device.
    """
    tasks = z.shape[0]
    folded: Params = {}
    for i in range(num_layers(params, prefix)):
        weight = params[f"{prefix}{i}.weight"][0]  # [in, out]
        bias = params[f"{prefix}{i}.bias"][0, 0]  # [out]
        if i == 0:
            bias = bias + z @ weight[obs_dim:]  # [T, out]
            weight = weight[:obs_dim]
        else:
            bias = bias.expand(tasks, -1)
        folded[f"net.{2 * i}.weight"] = weight.T.expand(tasks, -1, -1)
        folded[f"net.{2 * i}.bias"] = bias
    folded["noise_scale"] = torch.ones(tasks, device=z.device)
    return folded
