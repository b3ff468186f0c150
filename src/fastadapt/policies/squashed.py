"""The tanh-squashed Gaussian policy of soft actor-critic (Haarnoja et al. 2018, appendix C),
as the module a sampler steps.

``forward(obs [..., O]) -> out [..., 2A] = [mu, sigma]``: the mean and standard deviation of the
pre-squash Gaussian ``u ~ N(mu(s), diag(sigma(s)^2))``, with ``log sigma`` clamped to
``[LOG_STD_MIN, LOG_STD_MAX]`` (rlkit's ``TanhGaussianPolicy``) and multiplied by the
parameter ``noise_scale`` (1: the stochastic policy; 0: its mean action, as PEARL evaluates,
Rakelly et al. 2019). ``sample(out, noise)`` returns ``a = c + h * tanh(mu + sigma * noise)``,
where ``c`` and ``h`` are the centre and half-width of the action space's box.

An algorithm whose learner reads more than the observation (PEARL's latent task variable ``z``)
folds the extra input into each task's first-layer bias: ``W [o; z] + b = W_o o + (W_z z + b)``,
so the sampler steps this module with per-task parameters (:mod:`fastadapt.sampling`).
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from torch import Tensor, nn

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0
"""Clamp of ``log sigma`` (rlkit's ``LOG_SIG_MIN``, ``LOG_SIG_MAX``, as PEARL's oyster)."""


class SquashedGaussianPolicy(nn.Module):
    """``a = c + h * tanh(u)``, ``u ~ N(mu(s), diag(sigma(s)^2))``: a ReLU MLP of
    ``hidden_sizes`` from ``O`` observations to ``2A`` outputs (mean, ``log sigma``).

    Args:
        obs_dim: ``O``.
        low, high: the action box's bounds, ``[A]`` each (finite).
        hidden_sizes: units per hidden layer.
    """

    discrete = False
    center: Tensor
    """``c``: the box's centre ``[A]`` (a buffer)."""
    half_width: Tensor
    """``h``: the box's half-width ``[A]`` (a buffer)."""

    def __init__(self, obs_dim: int, low: np.ndarray, high: np.ndarray,
                 hidden_sizes: tuple[int, ...]) -> None:
        super().__init__()
        low_t = torch.as_tensor(low, dtype=torch.float32).reshape(-1)
        high_t = torch.as_tensor(high, dtype=torch.float32).reshape(-1)
        self.action_dim = int(low_t.numel())
        sizes = [obs_dim, *hidden_sizes, 2 * self.action_dim]
        layers: list[nn.Module] = []
        for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
            layers.append(nn.Linear(fan_in, fan_out))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)
        self.noise_scale = nn.Parameter(torch.ones(()))
        """Multiplies ``sigma``: 1 samples the policy, 0 takes its mean action."""
        self.register_buffer("center", (high_t + low_t) / 2)
        self.register_buffer("half_width", (high_t - low_t) / 2)

    def forward(self, obs: Tensor) -> Tensor:
        """``obs [..., O]`` -> ``[mu, sigma]`` ``[..., 2A]``."""
        out: Tensor = self.net(obs)
        mean, log_std = out[..., : self.action_dim], out[..., self.action_dim :]
        std = torch.exp(log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)) * self.noise_scale
        return torch.cat([mean, std], dim=-1)

    def draw_noise(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        """Standard normals ``[*shape, A]`` float32, in one draw."""
        return rng.standard_normal((*shape, self.action_dim), dtype=np.float32)

    def sample(self, out: Tensor, noise: Tensor) -> Tensor:
        """Actions ``c + h * tanh(mu + sigma * noise)`` ``[..., A]`` from ``out [..., 2A]``."""
        mean, std = out[..., : self.action_dim], out[..., self.action_dim :]
        return self.center + self.half_width * torch.tanh(mean + std * noise)

    def mode(self, out: Tensor) -> Tensor:
        """The mean action ``c + h * tanh(mu)`` ``[..., A]`` (PEARL's deterministic
        evaluation)."""
        return self.center + self.half_width * torch.tanh(out[..., : self.action_dim])
