"""PPO losses and GAE over RL² trials, against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from fastadapt.algorithms.common.ppo import approximate_kl, clipped_surrogate, value_loss
from fastadapt.algorithms.common.returns import gae, gae_skipping_masked


def test_clipped_surrogate_by_hand() -> None:
    ratios = torch.tensor([1.5, 0.5, 1.1, 0.7, 3.0])
    advantages = torch.tensor([1.0, 1.0, -1.0, -1.0, 100.0])
    masks = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0])  # the last step is masked out
    old = torch.full((5,), -0.3)
    loss, clip_fraction = clipped_surrogate(old + ratios.log(), old, advantages, masks, 0.2)
    # min(r A, clip(r, 0.8, 1.2) A): 1.2, 0.5, -1.1, -0.8 -> mean -0.05, loss 0.05
    assert loss.item() == pytest.approx(0.05, abs=1e-6)
    assert clip_fraction.item() == pytest.approx(0.75)  # 1.5, 0.5 and 0.7 are outside


def test_clipped_surrogate_gradient_vanishes_where_clipped() -> None:
    log_probs = torch.log(torch.tensor([1.5, 0.9])).requires_grad_(True)
    loss, _ = clipped_surrogate(log_probs, torch.zeros(2), torch.ones(2), torch.ones(2), 0.2)
    loss.backward()  # type: ignore[no-untyped-call]
    assert log_probs.grad is not None
    # d/dlogp of -mean(r A) = -r A / 2 where unclipped (r = 0.9), 0 where clipped (r = 1.5)
    assert log_probs.grad.tolist() == pytest.approx([0.0, -0.45])


def test_value_loss_and_kl_by_hand() -> None:
    masks = torch.tensor([1.0, 1.0, 0.0])
    loss = value_loss(torch.tensor([1.0, 2.0, 9.0]), torch.tensor([0.0, 4.0, 0.0]), masks)
    assert loss.item() == pytest.approx(0.5 * (1.0 + 4.0) / 2)
    log_ratio = torch.tensor([math.log(2.0), 0.0, 5.0])
    kl = approximate_kl(log_ratio, torch.zeros(3), masks)
    assert kl.item() == pytest.approx(((2.0 - 1.0 - math.log(2.0)) + 0.0) / 2)


def test_gae_over_a_trial_by_hand() -> None:
    rewards = torch.tensor([1.0, 2.0, 3.0])
    values = torch.tensor([0.5, 1.0, 1.5])
    # delta = (1.4, 2.35, 1.5); A_t = delta_t + 0.45 A_{t+1}
    expected = [1.4 + 0.45 * (2.35 + 0.45 * 1.5), 2.35 + 0.45 * 1.5, 1.5]
    advantages = gae_skipping_masked(rewards, values, torch.ones(3), gamma=0.9, lam=0.5)
    assert advantages.tolist() == pytest.approx(expected)


def test_gae_over_a_trial_skips_holes_left_by_terminated_episodes() -> None:
    # the same trial with a masked step (an episode ended early) after the first step
    rewards = torch.tensor([1.0, 0.0, 2.0, 3.0])
    values = torch.tensor([0.5, 99.0, 1.0, 1.5])
    masks = torch.tensor([1.0, 0.0, 1.0, 1.0])
    advantages = gae_skipping_masked(rewards, values, masks, gamma=0.9, lam=0.5)
    compact = gae_skipping_masked(rewards[[0, 2, 3]], values[[0, 2, 3]], torch.ones(3), 0.9, 0.5)
    assert advantages[1].item() == 0.0
    assert advantages[[0, 2, 3]].tolist() == pytest.approx(compact.tolist())


def test_gae_over_a_trial_equals_episode_gae_without_holes() -> None:
    generator = torch.Generator().manual_seed(0)
    rewards = torch.randn(3, 4, 30, generator=generator, dtype=torch.float64)
    values = torch.randn(3, 4, 30, generator=generator, dtype=torch.float64)
    masks = torch.ones(3, 4, 30, dtype=torch.float64)
    scan = gae_skipping_masked(rewards, values, masks, 0.97, 0.9)
    assert torch.allclose(scan, gae(rewards, values, masks, 0.97, 0.9))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"clip_ratio": 0.0}, "rl2.ppo.clip_ratio must be in (0, 1)"),
        ({"minibatches": 0}, "rl2.ppo.minibatches must be >= 1"),
        ({"learning_rate": -1.0}, "rl2.ppo.learning_rate must be > 0"),
        ({"entropy_coef_final": -0.01}, "rl2.ppo.entropy_coef_final must be >= 0, got -0.01"),
    ],
)
def test_ppo_config_range_checks(overrides: dict[str, float], message: str) -> None:
    """PPOConfig's range checks, named by their full key as a config is built (``rl2.ppo``)."""
    from fastadapt.errors import ConfigError
    from fastadapt.run.config_loading import train_config_from_dict

    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        train_config_from_dict({"algorithm": "rl2", "rl2": {"ppo": overrides}})
