"""Discounting, GAE and the linear feature baseline as pure tensor functions.

All functions take ``[..., H]`` tensors whose last axis is time within an episode and a mask
that is 1.0 inside the episode and 0.0 after it ended.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fastadapt.types import Batch, Trajectories


def _discount_matrix(horizon: int, factor: float, dtype: torch.dtype,
                     device: torch.device | None = None) -> Tensor:
    """``M[t, k] = factor^(k - t)`` for ``k >= t`` else 0, shape ``[H, H]``."""
    steps = torch.arange(horizon, dtype=dtype, device=device)
    exponents = steps[None, :] - steps[:, None]
    return torch.where(exponents >= 0, factor ** exponents.clamp(min=0), 0.0)


def discounted_returns(rewards: Tensor, masks: Tensor, gamma: float) -> Tensor:
    """Reward-to-go ``G_t = sum_{k>=t} gamma^(k-t) r_k`` within each episode.

    Args:
        rewards: ``[..., H]``.
        masks: ``[..., H]``.
        gamma: discount factor.

    Returns:
        ``[..., H]``, zero where masked.
    """
    rewards = rewards * masks
    matrix = _discount_matrix(rewards.shape[-1], gamma, rewards.dtype, rewards.device)
    return (rewards @ matrix.T) * masks


def gae(rewards: Tensor, values: Tensor, masks: Tensor, gamma: float, lam: float) -> Tensor:
    """Generalized advantage estimation (Schulman et al. 2016, eq. 16).

    ``delta_t = r_t + gamma V(s_{t+1}) - V(s_t)`` with ``V = 0`` after the episode, and
    ``A_t = sum_k (gamma lam)^k delta_{t+k}``. With ``lam = 1`` this is ``G_t - V(s_t)``.

    Args:
        rewards, values, masks: ``[..., H]``.

    Returns:
        Advantages ``[..., H]``, zero where masked.
    """
    values = values * masks
    next_values = torch.nn.functional.pad(values[..., 1:], (0, 1))
    deltas = (rewards + gamma * next_values - values) * masks
    matrix = _discount_matrix(rewards.shape[-1], gamma * lam, rewards.dtype, rewards.device)
    return (deltas @ matrix.T) * masks


def linear_baseline_features(observations: Tensor, masks: Tensor) -> Tensor:
    """Features ``[s, s^2, t, t^2, t^3, 1]`` (``t`` = step / 100) of the linear feature
    baseline (Duan et al. 2016, benchmarking deep RL; rllab ``LinearFeatureBaseline``).

    Args:
        observations: ``[..., H, O]``. masks: ``[..., H]``.

    Returns:
        ``[..., H, 2O + 4]``, zero rows where masked.
    """
    horizon = observations.shape[-2]
    time = torch.arange(horizon, dtype=observations.dtype, device=observations.device) / 100.0
    time = time.expand(observations.shape[:-1]).unsqueeze(-1)
    ones = torch.ones_like(time)
    features = torch.cat([observations, observations**2, time, time**2, time**3, ones], -1)
    return features * masks.unsqueeze(-1)


def fit_linear_baseline(
    observations: Tensor, returns: Tensor, masks: Tensor, reg_coeff: float = 1e-5
) -> Tensor:
    """Per-task ridge regression of returns on :func:`linear_baseline_features`.

    Args:
        observations: ``[T, E, H, O]``. returns, masks: ``[T, E, H]``.
        reg_coeff: Tikhonov regularisation, multiplied by 10 (up to 4 times) while the
            factorisation fails or the solution is not finite, as rllab does.

    Returns:
        Baseline values ``[T, E, H]`` fitted separately for each task.
    """
    features = linear_baseline_features(observations, masks).double().flatten(1, 2)  # [T, EH, F]
    targets = (returns * masks).double().flatten(1, 2).unsqueeze(-1)  # [T, EH, 1]
    gram = features.transpose(1, 2) @ features  # [T, F, F]
    rhs = features.transpose(1, 2) @ targets  # [T, F, 1]
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    # gram + reg I is symmetric positive definite: Cholesky (LU's batched solve trips an MKL
    # error on some rank-deficient systems, e.g. the oracle's 1,124 features of 10 samples)
    for _ in range(5):
        factor, info = torch.linalg.cholesky_ex(gram + reg_coeff * eye)
        weights: Tensor = torch.cholesky_solve(rhs, factor)
        if not info.any() and torch.isfinite(weights).all():
            break
        reg_coeff *= 10
    values = (features @ weights).squeeze(-1).reshape(returns.shape)
    return values.to(returns.dtype) * masks


def normalize_advantages(advantages: Tensor, masks: Tensor, eps: float = 1e-8) -> Tensor:
    """Standardise advantages per task over its unmasked steps.

    Args:
        advantages, masks: ``[T, E, H]``.

    Returns:
        ``[T, E, H]`` with zero mean and unit variance per task, zero where masked.
    """
    dims = (1, 2)
    count = masks.sum(dims, keepdim=True).clamp(min=1.0)
    mean = (advantages * masks).sum(dims, keepdim=True) / count
    var = ((advantages - mean) ** 2 * masks).sum(dims, keepdim=True) / count
    return (advantages - mean) / (var.sqrt() + eps) * masks


def process_trajectories(
    trajectories: Trajectories, gamma: float, gae_lambda: float, normalize: bool = True
) -> Batch:
    """Turn sampled episodes into a :class:`Batch`: fit the baseline per task, compute GAE.

    Follows pytorch-maml-rl: linear feature baseline fitted on the same episodes, GAE with
    ``gae_lambda``, advantages normalised per task.
    """
    obs, actions = trajectories.observations, trajectories.actions
    rewards, masks = trajectories.rewards, trajectories.masks
    returns = discounted_returns(rewards, masks, gamma)
    values = fit_linear_baseline(obs, returns, masks)
    advantages = gae(rewards, values, masks, gamma, gae_lambda)
    if normalize:
        advantages = normalize_advantages(advantages, masks)
    return Batch(obs, actions, masks, advantages.detach())


def gae_skipping_masked(
    rewards: Tensor, values: Tensor, masks: Tensor, gamma: float, lam: float
) -> Tensor:
    """GAE along a sequence whose masked steps are holes to skip, not episode ends.

    An RL² trial (Duan et al. 2016, §2.2) is one RL episode made of several env episodes; an
    env episode that terminates early leaves masked steps inside the trial. Masked steps are
    removed before the recursion of :func:`gae` (Schulman et al. 2016, eq. 16): ``V(s_{t+1})``
    is the value of the next *unmasked* step (0 after the last one) and the discount counts
    unmasked steps only. Without holes this equals :func:`gae` over the whole sequence.

    Args:
        rewards, values, masks: ``[..., L]``.

    Returns:
        Advantages ``[..., L]``, zero where masked.
    """
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[..., 0])
    next_value = torch.zeros_like(rewards[..., 0])
    for t in reversed(range(rewards.shape[-1])):
        alive = masks[..., t] > 0
        delta = rewards[..., t] + gamma * next_value - values[..., t]
        running = torch.where(alive, delta + gamma * lam * running, running)
        next_value = torch.where(alive, values[..., t], next_value)
        advantages[..., t] = running * masks[..., t]
    return advantages
