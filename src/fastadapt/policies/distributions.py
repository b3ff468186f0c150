"""Action distributions as pure functions of the policy's output ``out [..., D]``.

Mixed into every policy class (MLP and recurrent), so all of them share one implementation of
``log_prob``, ``kl``, ``fisher_output_product``, ``entropy``, ``draw_noise``, ``sample`` and
``mode`` (the deterministic action).
Sampling is split in two so that samplers can draw a whole rollout's noise up front from a
task's own numpy stream (:mod:`fastadapt.sampling.rollout`): ``draw_noise(rng, shape)`` draws
it, ``sample(out, noise)`` turns distribution parameters and noise into actions.

- :class:`DiagonalGaussian`: ``out = [mu, log sigma]``, ``D = 2A``;
- :class:`CategoricalLogits`: ``out`` are the logits, ``D = K``; actions are integers.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor


class DiagonalGaussian:
    """``N(mu, diag(sigma^2))`` with ``out = [mu, log sigma]`` of shape ``[..., 2A]``."""

    discrete = False
    action_dim: int
    """``A``: set by the policy's ``__init__``."""

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

    def draw_noise(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        """Standard normals ``[*shape, A]`` float32, in one draw."""
        return rng.standard_normal((*shape, self.action_dim), dtype=np.float32)

    def sample(self, out: Tensor, noise: Tensor) -> Tensor:
        """Actions ``mu + sigma * noise`` ``[..., A]`` from ``out [..., 2A]`` and standard
        normals ``noise [..., A]`` (:meth:`draw_noise`)."""
        return out[..., : self.action_dim] + noise * torch.exp(out[..., self.action_dim :])

    def mode(self, out: Tensor) -> Tensor:
        """The most likely action ``mu`` ``[..., A]`` (an agent's deterministic action)."""
        return out[..., : self.action_dim]


class CategoricalLogits:
    """``softmax(out)`` over ``K`` actions; ``out [..., K]`` are the logits."""

    discrete = True
    num_actions: int
    """``K``: set by the policy's ``__init__``."""

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

    def draw_noise(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        """Uniforms in ``[0, 1)`` ``[*shape]`` float32, in one draw."""
        return rng.random(shape, dtype=np.float32)

    def sample(self, out: Tensor, noise: Tensor) -> Tensor:
        """Integer actions ``[...]`` from logits ``out [..., K]`` and uniforms ``noise [...]``
        (:meth:`draw_noise`) by the inverse CDF, ``a = #{k : cdf[k] <= u}``, clamped to
        ``K - 1`` against rounding of the last ``cdf`` entry."""
        cdf = torch.softmax(out, dim=-1).cumsum(dim=-1)
        draws = (cdf <= noise.unsqueeze(-1)).sum(dim=-1)
        return draws.clamp(max=out.shape[-1] - 1)

    def mode(self, out: Tensor) -> Tensor:
        """The most likely action ``argmax out`` ``[...]`` int64 (ties: the lowest)."""
        return out.argmax(dim=-1)
