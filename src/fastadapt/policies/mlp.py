"""Functional MLP policies: the module maps observations to distribution parameters.

A policy is an ``nn.Module`` whose ``forward(obs [..., O]) -> out [..., D]`` returns the
parameters of the action distribution; the distribution itself is a set of pure functions of
``out`` (``log_prob``, ``kl``, ``sample``, ``entropy``). Algorithms never call the module
directly: they call it through ``torch.func.functional_call`` with explicit parameters
(:mod:`fastadapt.policies.functional`), so the same module serves shared and per-task
(adapted) parameters.
Actions are sampled outside any ``vmap`` from ``out``.
"""

from __future__ import annotations

import itertools
import math
from typing import Literal

import torch
from torch import Tensor, nn

from fastadapt.policies.distributions import CategoricalLogits, DiagonalGaussian

Activation = Literal["tanh", "relu"]


def tanh(x: Tensor) -> Tensor:
    """``tanh(x)`` computed as ``2 sigmoid(2x) - 1``: the same function (within 2e-7 in
    float32, 4e-16 in float64), cheaper than ``torch.tanh`` on AVX2 CPUs. The module,
    :func:`~fastadapt.backends.products.mlp_forward` and the cached products
    (which evaluate the same expression in place, ``2z`` from doubled weights) agree exactly;
    the sampler's prepared forward folds it into its weights (equal up to rounding)."""
    return torch.sigmoid(2 * x) * 2 - 1


class Tanh(nn.Module):
    """``nn.Tanh`` through :func:`tanh`."""

    def forward(self, x: Tensor) -> Tensor:
        return tanh(x)


_ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": Tanh, "relu": nn.ReLU}


def _mlp(sizes: list[int], activation: Activation) -> nn.Sequential:
    """Linear layers of ``sizes`` with ``activation`` between them; Xavier-uniform weights."""
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        linear = nn.Linear(fan_in, fan_out)
        nn.init.xavier_uniform_(linear.weight)
        nn.init.zeros_(linear.bias)
        layers.append(linear)
        if i < len(sizes) - 2:
            layers.append(_ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


def mlp_parameter_count(sizes: list[int]) -> int:
    """Weights and biases of the linear layers of ``sizes`` (what :func:`_mlp` builds),
    counted without building them: ``sum((n_in + 1) * n_out)``.

    Args:
        sizes: widths from the input to the output, e.g. ``[obs_dim, 64, 64, action_dim]``.
    """
    return sum((fan_in + 1) * fan_out for fan_in, fan_out in itertools.pairwise(sizes))


class GaussianMLPPolicy(DiagonalGaussian, nn.Module):
    """Diagonal Gaussian policy ``N(mu_theta(s), diag(sigma^2))`` with state-independent
    ``log sigma`` (Finn et al. 2017; pytorch-maml-rl ``NormalMLPPolicy``).

    ``forward`` returns ``out = [mu, log sigma]`` of shape ``[..., 2A]``.
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        hidden_sizes: tuple[int, ...] = (64, 64),
        activation: Activation = "tanh",
        init_std: float = 1.0,
        min_std: float = 1e-6,
    ) -> None:
        super().__init__()
        self.action_dim = action_dim
        self.mean = _mlp([obs_dim, *hidden_sizes, action_dim], activation)
        self.log_std = nn.Parameter(torch.full((action_dim,), math.log(init_std)))
        self.min_log_std = math.log(min_std)

    def forward(self, obs: Tensor) -> Tensor:
        """``obs [..., O]`` -> ``out [..., 2A]`` (mean, then log standard deviation)."""
        mean: Tensor = self.mean(obs)
        log_std = self.log_std.clamp(min=self.min_log_std).expand_as(mean)
        return torch.cat([mean, log_std], dim=-1)


class CategoricalMLPPolicy(CategoricalLogits, nn.Module):
    """Categorical policy ``softmax(f_theta(s))`` over ``K`` actions; ``out`` are the logits."""

    def __init__(
        self,
        obs_dim: int,
        num_actions: int,
        hidden_sizes: tuple[int, ...] = (64, 64),
        activation: Activation = "tanh",
    ) -> None:
        super().__init__()
        self.num_actions = num_actions
        self.logits = _mlp([obs_dim, *hidden_sizes, num_actions], activation)

    def forward(self, obs: Tensor) -> Tensor:
        """``obs [..., O]`` -> logits ``[..., K]``."""
        logits: Tensor = self.logits(obs)
        return logits


Policy = GaussianMLPPolicy | CategoricalMLPPolicy


def make_policy(
    observation_space_dim: int,
    action_space: object,
    hidden_sizes: tuple[int, ...],
    activation: Activation,
    init_std: float,
) -> Policy:
    """A Gaussian policy for a ``Box`` action space, categorical for ``Discrete``."""
    import gymnasium as gym

    if isinstance(action_space, gym.spaces.Discrete):
        return CategoricalMLPPolicy(
            observation_space_dim, int(action_space.n), hidden_sizes, activation
        )
    if isinstance(action_space, gym.spaces.Box):
        action_dim = int(action_space.shape[0])
        return GaussianMLPPolicy(
            observation_space_dim, action_dim, hidden_sizes, activation, init_std
        )
    raise TypeError(f"unsupported action space {action_space!r}")
