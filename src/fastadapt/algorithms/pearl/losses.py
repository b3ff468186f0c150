"""PEARL's losses as pure functions of explicit parameters (Rakelly et al. 2019, §4, eqs. 1-3;
soft actor-critic, Haarnoja et al. 2018a/b).

Shapes: ``T`` tasks of the meta-batch, ``B`` transitions per task in the RL batch, ``C`` in the
context, ``L`` the latent size, ``O``/``A`` observation and action sizes. Actions are in the
squashed units ``[-1, 1]^A``.

- Posterior: the encoder maps each context transition ``c_n`` to a Gaussian factor
  ``N(mu_n, sigma_n^2)`` (``sigma_n^2 = softplus(.)``); ``q(z | c)`` is their normalised
  product, ``sigma^2 = 1 / sum_n 1 / sigma_n^2``, ``mu = sigma^2 sum_n mu_n / sigma_n^2``
  (permutation invariant; eq. 4 and oyster's ``_product_of_gaussians``, variances clamped at
  1e-7, the prior not among the factors).
- Critic: ``sum_j E[(Q_j(s, a, z) - y)^2]`` with ``y = r_scale r + gamma (1 - d) V'(s', z)``
  (``v_net``) or ``y = r_scale r + gamma (1 - d) (min_j Q'_j(s', a') - alpha log pi(a' | s'))``
  (``twin_q``). Its gradient reaches the encoder through ``z``; with ``beta KL(q(z | c) ||
  N(0, I))`` (summed over tasks, as oyster) it is the encoder's whole loss (eq. 3).
- Value (``v_net``): ``E[(V(s, z) - (min_j Q_j(s, a~, z) - alpha log pi(a~ | s, z)))^2]``.
- Policy: ``E[alpha log pi(a~ | s, z) - min_j Q_j(s, a~, z)]`` plus ``1e-3`` times the mean
  squared pre-squash mean and ``log sigma`` (oyster's regularisers); ``a~`` is reparameterised.
- Entropy weight (``auto_entropy``): ``-E[log alpha (log pi + H_target)]``.

Every term is computed from the same step's parameters and their sum is differentiated once:
``z`` is detached wherever the policy or V reads it, and the Q-values the policy and V target
read use detached Q parameters, so each network receives exactly its own loss's gradient (the
reference steps Q before computing the policy's and V's Q-values; here they use the Q of the
step's start, as most SAC implementations do).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from fastadapt.algorithms.pearl.config import PEARLConfig
from fastadapt.algorithms.pearl.networks import mlp
from fastadapt.types import Params

MIN_VARIANCE = 1e-7
"""Clamp of each factor's variance in the product (oyster's)."""

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


class SACBatch(NamedTuple):
    """One gradient step's data: ``T`` tasks' RL batches and contexts.

    Attributes:
        observations: ``[T, B, O]``.
        actions: ``[T, B, A]`` in ``[-1, 1]``.
        rewards: ``[T, B]`` (unscaled).
        next_observations: ``[T, B, O]``.
        terminated: ``[T, B]``.
        context: ``[T, C, D]``, transitions ``[s, a, r]`` (or ``[s, a, r, s']``).
    """

    observations: Tensor
    actions: Tensor
    rewards: Tensor
    next_observations: Tensor
    terminated: Tensor
    context: Tensor


class StepNoise(NamedTuple):
    """Standard normals of one gradient step: ``latent [T, L]`` (``z``'s reparameterisation),
    ``actions [T, B, A]`` (the policy's), ``next_actions [T, B, A]`` (``twin_q``'s target
    actions; ``None`` for ``v_net``)."""

    latent: Tensor
    actions: Tensor
    next_actions: Tensor | None


def product_of_gaussians(means: Tensor, variances: Tensor, mask: Tensor | None = None
                         ) -> tuple[Tensor, Tensor]:
    """The normalised product of ``N`` Gaussian factors per row.

    Args:
        means, variances: ``[..., N, L]``.
        mask: ``[..., N]``, 1.0 for the factors to multiply (``None``: all).

    Returns:
        ``(mean, variance)``, ``[..., L]`` each.
    """
    precisions = 1.0 / variances.clamp(min=MIN_VARIANCE)
    if mask is not None:
        precisions = precisions * mask[..., None]
    variance = 1.0 / precisions.sum(dim=-2)
    return variance * (means * precisions).sum(dim=-2), variance


def kl_to_standard_normal(mean: Tensor, variance: Tensor) -> Tensor:
    """``KL(N(mean, diag(variance)) || N(0, I))`` over the last axis, ``[..., L] -> [...]``."""
    return 0.5 * (variance + mean.pow(2) - 1.0 - variance.log()).sum(dim=-1)


def posterior(params: Params, context: Tensor, latent_dim: int, mask: Tensor | None = None
              ) -> tuple[Tensor, Tensor]:
    """``q(z | c)`` of each task's context: ``context [T, C, D]`` (``mask [T, C]``) ->
    ``(mean, variance)`` ``[T, L]`` each."""
    tasks, size, width = context.shape
    out = mlp(params, "encoder.", context.reshape(tasks * size, width))[0]
    out = out.view(tasks, size, 2 * latent_dim)
    return product_of_gaussians(out[..., :latent_dim], F.softplus(out[..., latent_dim:]), mask)


def squashed_sample(out: Tensor, noise: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """A reparameterised tanh-Gaussian action and its log-density.

    Args:
        out: the policy's output ``[..., 2A]`` (mean, then unclamped ``log sigma``).
        noise: standard normals ``[..., A]``.

    Returns:
        ``(action [..., A], log_prob [...], mean [..., A], log_std [..., A])``: ``a =
        tanh(u)``, ``u = mean + sigma * noise``, ``log pi(a) = log N(u; mean, sigma) -
        sum log(1 - tanh(u)^2)``, the Jacobian term as ``2 (log 2 - u - softplus(-2 u))``.
    """
    action_dim = out.shape[-1] // 2
    mean, log_std = out[..., :action_dim], out[..., action_dim:].clamp(LOG_STD_MIN, LOG_STD_MAX)
    u = mean + log_std.exp() * noise
    gaussian = (-0.5 * noise.pow(2) - log_std).sum(dim=-1) - 0.5 * action_dim * math.log(
        2 * math.pi)
    jacobian = (2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))).sum(dim=-1)
    return torch.tanh(u), gaussian - jacobian, mean, log_std


def _flat(x: Tensor) -> Tensor:
    """``[T, B, ...]`` -> ``[T * B, ...]``."""
    return x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])


def pearl_loss(params: Params, targets: Params, batch: SACBatch, noise: StepNoise,
               config: PEARLConfig, target_entropy: float) -> tuple[Tensor, dict[str, Tensor]]:
    """The sum of PEARL's losses at one step (see the module docstring).

    Args:
        params: the trained networks: ``encoder.``, ``actor.``, ``q.`` (2 members), ``v.``
            (``v_net``) and ``log_alpha`` (``auto_entropy``).
        targets: the target networks, ``target_v.`` or ``target_q.``.
        target_entropy: ``H_target`` of ``auto_entropy``.

    Returns:
        The total loss and its terms (detached): ``critic_loss``, ``value_loss``,
        ``policy_loss``, ``kl``, ``alpha``, ``log_pi``, ``q``, ``posterior_std``.
    """
    tasks, per_task = batch.rewards.shape
    mean, variance = posterior(params, batch.context, config.latent_dim)
    z = mean + variance.sqrt() * noise.latent  # [T, L]
    kl = kl_to_standard_normal(mean, variance).sum()
    z_rows = z[:, None].expand(tasks, per_task, -1).reshape(tasks * per_task, -1)
    z_fixed = z_rows.detach()
    obs, next_obs = _flat(batch.observations), _flat(batch.next_observations)
    if config.auto_entropy:
        alpha = params["log_alpha"].exp().detach()
    else:
        alpha = torch.tensor(config.alpha, device=obs.device)

    q_pred = mlp(params, "q.", torch.cat([obs, _flat(batch.actions), z_rows], dim=1))[..., 0]
    out = mlp(params, "actor.", torch.cat([obs, z_fixed], dim=1))[0]
    actions, log_pi, action_mean, log_std = squashed_sample(out, _flat(noise.actions))
    frozen_q = {name: p.detach() for name, p in params.items() if name.startswith("q.")}
    q_new = mlp(frozen_q, "q.", torch.cat([obs, actions, z_fixed], dim=1))[..., 0].min(dim=0)[0]

    with torch.no_grad():
        if config.critic == "v_net":
            next_value = mlp(targets, "target_v.", torch.cat([next_obs, z_fixed], dim=1))[0, :, 0]
        else:
            assert noise.next_actions is not None
            next_out = mlp(params, "actor.", torch.cat([next_obs, z_fixed], dim=1))[0]
            next_actions, next_log_pi, _, _ = squashed_sample(next_out,
                                                              _flat(noise.next_actions))
            next_q = mlp(targets, "target_q.", torch.cat([next_obs, next_actions, z_fixed],
                                                         dim=1))[..., 0].min(dim=0)[0]
            next_value = next_q - alpha * next_log_pi
        y = (config.reward_scale * _flat(batch.rewards)
             + (1.0 - _flat(batch.terminated)) * config.gamma * next_value)
    critic_loss = (q_pred - y).pow(2).mean(dim=1).sum()
    policy_loss = ((alpha * log_pi - q_new).mean() + config.policy_mean_reg
                   * action_mean.pow(2).mean() + config.policy_std_reg * log_std.pow(2).mean())
    total = critic_loss + config.kl_weight * kl + policy_loss
    value_loss = torch.zeros((), device=obs.device)
    if config.critic == "v_net":
        value = mlp(params, "v.", torch.cat([obs, z_fixed], dim=1))[0, :, 0]
        value_loss = (value - (q_new - alpha * log_pi).detach()).pow(2).mean()
        total = total + value_loss
    if config.auto_entropy:
        total = total - (params["log_alpha"] * (log_pi.detach() + target_entropy)).mean()
    metrics = {"critic_loss": critic_loss, "value_loss": value_loss,
               "policy_loss": policy_loss, "kl": kl / tasks, "alpha": alpha,
               "log_pi": log_pi.mean(), "q": q_pred.mean(),
               "posterior_std": variance.sqrt().mean()}
    return total, {name: value.detach() for name, value in metrics.items()}
