"""Functional MLP policies: the module maps observations to distribution parameters.

A policy is an ``nn.Module`` whose ``forward(obs [..., O]) -> out [..., D]`` returns the
parameters of the action distribution; the distribution itself is a set of pure functions of
``out`` (``log_prob``, ``kl``, ``sample``, ``entropy``). Algorithms never call the module
directly: they call it through ``torch.func.functional_call`` with explicit parameters
(``fastadapt.meta.adapt``), so the same module serves shared and per-task (adapted) parameters.
Actions are sampled outside any ``vmap`` from ``out``.
"""

from __future__ import annotations

import itertools
import math
from typing import Literal

import torch
from torch import Tensor, nn

Activation = Literal["tanh", "relu"]
_ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU}


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


class GaussianMLPPolicy(nn.Module):
    """Diagonal Gaussian policy ``N(mu_theta(s), diag(sigma^2))`` with state-independent
    ``log sigma`` (Finn et al. 2017; pytorch-maml-rl ``NormalMLPPolicy``).

    ``forward`` returns ``out = [mu, log sigma]`` of shape ``[..., 2A]``.
    """

    discrete = False

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

    def _split(self, out: Tensor) -> tuple[Tensor, Tensor]:
        return out[..., : self.action_dim], out[..., self.action_dim :]

    def log_prob(self, out: Tensor, actions: Tensor) -> Tensor:
        """``log pi(a|s)``: ``out [..., 2A]``, ``actions [..., A]`` -> ``[...]``."""
        mean, log_std = self._split(out)
        z = (actions - mean) * torch.exp(-log_std)
        return (-0.5 * z.pow(2) - log_std).sum(-1) - 0.5 * self.action_dim * math.log(2 * math.pi)

    def kl(self, old_out: Tensor, new_out: Tensor) -> Tensor:
        """``KL(pi_old || pi_new)`` per state: ``[..., 2A]`` x2 -> ``[...]``."""
        mean0, log_std0 = self._split(old_out)
        mean1, log_std1 = self._split(new_out)
        var_ratio = torch.exp(2 * (log_std0 - log_std1))
        mahalanobis = (mean0 - mean1).pow(2) * torch.exp(-2 * log_std1)
        return 0.5 * (var_ratio + mahalanobis - 1).sum(-1) + (log_std1 - log_std0).sum(-1)

    def fisher_output_product(self, out: Tensor, tangent: Tensor) -> Tensor:
        """Hessian of ``KL(pi_out || pi_x)`` in ``x`` at ``x = out``, times ``tangent``.

        For ``[mu, log sigma]`` it is ``diag(1 / sigma^2, 2)``. Shapes ``[..., 2A]``.
        """
        _, log_std = self._split(out)
        d_mean, d_log_std = self._split(tangent)
        return torch.cat([d_mean * torch.exp(-2 * log_std), 2 * d_log_std], dim=-1)

    def entropy(self, out: Tensor) -> Tensor:
        """Differential entropy per state, ``[...]``."""
        _, log_std = self._split(out)
        return (log_std + 0.5 * math.log(2 * math.pi * math.e)).sum(-1)

    def sample(self, out: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Draw actions ``[..., A]`` from ``out [..., 2A]``."""
        mean, log_std = self._split(out)
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
        return mean + noise * torch.exp(log_std)


class CategoricalMLPPolicy(nn.Module):
    """Categorical policy ``softmax(f_theta(s))`` over ``K`` actions; ``out`` are the logits."""

    discrete = True

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

    def log_prob(self, out: Tensor, actions: Tensor) -> Tensor:
        """``log pi(a|s)``: ``out [..., K]``, integer ``actions [...]`` -> ``[...]``."""
        log_p = torch.log_softmax(out, dim=-1)
        return log_p.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)

    def kl(self, old_out: Tensor, new_out: Tensor) -> Tensor:
        """``KL(pi_old || pi_new)`` per state, ``[...]``."""
        log_p0 = torch.log_softmax(old_out, dim=-1)
        log_p1 = torch.log_softmax(new_out, dim=-1)
        return (log_p0.exp() * (log_p0 - log_p1)).sum(-1)

    def fisher_output_product(self, out: Tensor, tangent: Tensor) -> Tensor:
        """Hessian of ``KL(pi_out || pi_x)`` in the logits ``x`` at ``x = out`` times
        ``tangent``: ``(diag(p) - p p^T) t``. Shapes ``[..., K]``."""
        probs = torch.softmax(out, dim=-1)
        return probs * (tangent - (probs * tangent).sum(-1, keepdim=True))

    def entropy(self, out: Tensor) -> Tensor:
        """Entropy per state, ``[...]``."""
        log_p = torch.log_softmax(out, dim=-1)
        return -(log_p.exp() * log_p).sum(-1)

    def sample(self, out: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Draw integer actions ``[...]`` from logits ``[..., K]``."""
        probs = torch.softmax(out, dim=-1).reshape(-1, out.shape[-1])
        draws = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        return draws.reshape(out.shape[:-1])


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
