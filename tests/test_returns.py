"""Discounting, GAE, the linear baseline and advantage normalisation: hand-computed values and
identities (GAE at lambda = 1 and 0), on tiny float64 tensors."""

from __future__ import annotations

from typing import Any

import torch
from torch.testing import assert_close

from fastadapt.algorithms.common.returns import (
    discounted_returns,
    fit_linear_baseline,
    gae,
    linear_baseline_features,
    normalize_advantages,
    process_trajectories,
)
from fastadapt.types import Trajectories

F64 = torch.float64
T, E, H, OBS = 3, 4, 5, 2  # tasks, episodes per task, horizon, observation size


def _tensor(values: list[Any]) -> torch.Tensor:
    return torch.tensor(values, dtype=F64)


def _random_masks(generator: torch.Generator) -> torch.Tensor:
    """``[T, E, H]`` masks: every episode lasts 1..H steps; the first one of each task lasts H."""
    lengths = torch.randint(1, H + 1, (T, E), generator=generator)
    lengths[:, 0] = H
    return (torch.arange(H) < lengths.unsqueeze(-1)).to(F64)


# --- discounted returns -----------------------------------------------------------------------


def test_discounted_returns_hand_computed() -> None:
    returns = discounted_returns(_tensor([1, 2, 3]), _tensor([1, 1, 1]), gamma=0.5)
    assert_close(returns, _tensor([2.75, 3.5, 3.0]))


def test_discounted_returns_stop_at_the_end_of_the_episode() -> None:
    # The episode ends after two steps: the rewards after it (3, 4) must not leak back.
    returns = discounted_returns(_tensor([1, 2, 3, 4]), _tensor([1, 1, 0, 0]), gamma=0.5)
    assert_close(returns, _tensor([2.0, 2.0, 0.0, 0.0]))


def test_discounted_returns_batched_over_leading_axes() -> None:
    rewards = torch.stack([_tensor([1, 2, 3]), _tensor([0, 0, 1])])  # [2, 3]
    returns = discounted_returns(rewards, torch.ones(2, 3, dtype=F64), gamma=0.9)
    expected = _tensor([[1 + 1.8 + 2.43, 2 + 2.7, 3], [0.81, 0.9, 1]])
    assert_close(returns, expected)


# --- GAE --------------------------------------------------------------------------------------


def test_gae_hand_computed() -> None:
    # deltas: 1 + 0.9 * 1.0 - 0.5 = 1.4, 0 + 0.9 * 1.5 - 1.0 = 0.35, 2 + 0 - 1.5 = 0.5;
    # gamma * lam = 0.45: A2 = 0.5, A1 = 0.35 + 0.45 * 0.5, A0 = 1.4 + 0.45 * A1.
    rewards, values = _tensor([1, 0, 2]), _tensor([0.5, 1.0, 1.5])
    advantages = gae(rewards, values, _tensor([1, 1, 1]), gamma=0.9, lam=0.5)
    assert_close(advantages, _tensor([1.65875, 0.575, 0.5]))


def test_gae_value_after_the_episode_is_zero() -> None:
    # The episode ends after two steps: delta_1 = 0 + 0.9 * 0 - 1.0 (no bootstrap from V(s_2)).
    rewards, values = _tensor([1, 0, 2]), _tensor([0.5, 1.0, 1.5])
    advantages = gae(rewards, values, _tensor([1, 1, 0]), gamma=0.9, lam=0.5)
    assert_close(advantages, _tensor([1.4 - 0.45, -1.0, 0.0]))


def test_gae_with_lambda_one_is_returns_minus_values() -> None:
    generator = torch.Generator().manual_seed(0)
    masks = _random_masks(generator)
    rewards = torch.randn(T, E, H, generator=generator, dtype=F64) * masks
    values = torch.randn(T, E, H, generator=generator, dtype=F64)
    advantages = gae(rewards, values, masks, gamma=0.95, lam=1.0)
    expected = (discounted_returns(rewards, masks, 0.95) - values) * masks
    assert_close(advantages, expected)


def test_gae_with_lambda_zero_is_the_one_step_td_error() -> None:
    generator = torch.Generator().manual_seed(1)
    masks = _random_masks(generator)
    rewards = torch.randn(T, E, H, generator=generator, dtype=F64) * masks
    values = torch.randn(T, E, H, generator=generator, dtype=F64)
    advantages = gae(rewards, values, masks, gamma=0.95, lam=0.0)
    expected = torch.zeros_like(rewards)
    for t in range(H):
        next_value = values[..., t + 1] * masks[..., t + 1] if t + 1 < H else 0.0
        expected[..., t] = (rewards[..., t] + 0.95 * next_value - values[..., t]) * masks[..., t]
    assert_close(advantages, expected)


# --- linear feature baseline ------------------------------------------------------------------


def test_linear_baseline_features_hand_computed() -> None:
    observations = _tensor([[1.0, -2.0], [3.0, 0.5]])  # H = 2
    features = linear_baseline_features(observations, _tensor([1, 0]))
    expected = _tensor([[1, -2, 1, 4, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 0, 0]])
    assert_close(features, expected)


def test_linear_baseline_recovers_an_exactly_linear_target_per_task() -> None:
    generator = torch.Generator().manual_seed(2)
    observations = torch.randn(T, E, H, OBS, generator=generator, dtype=F64)
    masks = _random_masks(generator)
    features = linear_baseline_features(observations, masks)  # [T, E, H, 2O + 4]
    weights = torch.randn(T, features.shape[-1], generator=generator, dtype=F64)  # one per task
    returns = torch.einsum("tehf,tf->teh", features, weights)
    values = fit_linear_baseline(observations, returns, masks, reg_coeff=1e-12)
    assert values.shape == (T, E, H)
    assert_close(values, returns, rtol=0, atol=1e-5)  # the default ridge (1e-5) is off by ~1e-3
    assert (values[masks == 0] == 0).all()


def test_linear_baseline_keeps_the_returns_dtype() -> None:
    observations = torch.randn(T, E, H, OBS)
    values = fit_linear_baseline(observations, torch.randn(T, E, H), torch.ones(T, E, H))
    assert values.dtype == torch.float32


# --- normalisation and the whole pipeline -----------------------------------------------------


def test_normalize_advantages_per_task_over_unmasked_steps() -> None:
    generator = torch.Generator().manual_seed(3)
    masks = _random_masks(generator)
    advantages = 5.0 + 3.0 * torch.randn(T, E, H, generator=generator, dtype=F64)
    advantages[0] += 100.0  # tasks are normalised separately
    normalized = normalize_advantages(advantages, masks)
    assert (normalized[masks == 0] == 0).all()
    for task in range(T):
        inside = normalized[task][masks[task] == 1]
        assert_close(inside.mean(), torch.tensor(0.0, dtype=F64), rtol=0, atol=1e-12)
        assert_close(inside.std(unbiased=False), torch.tensor(1.0, dtype=F64), rtol=0, atol=1e-6)


def _trajectories(discrete: bool) -> Trajectories:
    generator = torch.Generator().manual_seed(4)
    masks = _random_masks(generator)
    observations = torch.randn(T, E, H, OBS, generator=generator, dtype=F64)
    if discrete:
        actions = torch.randint(0, 3, (T, E, H), generator=generator)
    else:
        actions = torch.randn(T, E, H, 2, generator=generator, dtype=F64)
    rewards = torch.randn(T, E, H, generator=generator, dtype=F64) * masks
    return Trajectories(observations, actions, rewards, masks)


def test_process_trajectories_shapes_gaussian_and_categorical() -> None:
    for discrete in (False, True):
        trajectories = _trajectories(discrete)
        batch = process_trajectories(trajectories, gamma=0.99, gae_lambda=0.95)
        assert batch.observations.shape == (T, E, H, OBS)
        assert batch.actions.shape == trajectories.actions.shape
        assert batch.masks.shape == batch.advantages.shape == (T, E, H)
        assert torch.equal(batch.actions, trajectories.actions)
        assert torch.equal(batch.masks, trajectories.masks)
        assert (batch.advantages[batch.masks == 0] == 0).all()
        assert not batch.advantages.requires_grad


def test_process_trajectories_is_gae_of_the_fitted_baseline() -> None:
    trajectories = _trajectories(discrete=False)
    obs, rewards, masks = trajectories.observations, trajectories.rewards, trajectories.masks
    batch = process_trajectories(trajectories, gamma=0.9, gae_lambda=0.8, normalize=False)
    values = fit_linear_baseline(obs, discounted_returns(rewards, masks, 0.9), masks)
    assert_close(batch.advantages, gae(rewards, values, masks, 0.9, 0.8))
