"""PPO's settings and loss terms as pure functions (Schulman et al. 2017).

The clipped surrogate (Schulman et al. 2017, eq. 7) with ``r = pi(a|s) / pi_old(a|s)``::

    L_clip = -E[min(r A, clip(r, 1 - eps, 1 + eps) A)]

plus ``value_coef * E[(V - R)^2] / 2 - entropy_coef * E[entropy]``. Means are over unmasked
steps (any shape). RL² assembles them over whole trials
(:func:`fastadapt.algorithms.rl2.losses.recurrent_ppo_loss`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fastadapt.errors import require, require_at_least_one


@dataclass(frozen=True)
class PPOConfig:
    """PPO settings (defaults: CleanRL's ``ppo.py`` where they apply)."""

    learning_rate: float = 3e-4
    """Adam step size."""
    clip_ratio: float = 0.2
    """``eps``: the probability ratio is clipped to ``[1 - eps, 1 + eps]``."""
    epochs: int = 4
    """Passes over each iteration's trials."""
    minibatches: int = 4
    """Minibatches per epoch; each holds whole trials (at most the number of trials)."""
    value_coef: float = 0.5
    """Weight of the value loss."""
    entropy_coef: float = 0.0
    """Weight of the entropy bonus (at the first iteration when ``entropy_coef_final`` is set)."""
    entropy_coef_final: float | None = None
    """If set, the entropy weight moves linearly from ``entropy_coef`` at iteration 0 towards
    this value over ``run.iterations``: iteration ``i = 0..N-1`` uses
    ``entropy_coef + (entropy_coef_final - entropy_coef) * i / N`` (the last iteration is one
    step short of it, as with ``anneal_lr``). A large early bonus keeps an RL² policy from
    committing before its memory is useful; a small late one lets it exploit what it has
    learned. Like ``anneal_lr`` the schedule follows ``run.iterations``: resuming with more
    iterations moves the weight back to where the new total puts it."""
    max_grad_norm: float = 0.5
    """Gradients are clipped to this global norm."""
    normalize_advantages: bool = True
    """Standardise the advantages over the iteration's unmasked steps."""
    anneal_lr: bool = False
    """Decay the Adam step size linearly from ``learning_rate`` towards 0 over
    ``run.iterations`` (CleanRL's ``anneal_lr``): iteration ``i = 0..N-1`` uses
    ``learning_rate * (1 - i / N)``. The schedule follows ``run.iterations``, so resuming with
    more iterations continues from the rate the new total gives."""

    def learning_rate_at(self, fraction_done: float) -> float:
        """The step size once ``fraction_done`` (in ``[0, 1)``) of the iterations are done."""
        if not self.anneal_lr:
            return self.learning_rate
        return self.learning_rate * (1.0 - fraction_done)

    def entropy_coef_at(self, fraction_done: float) -> float:
        """The entropy weight once ``fraction_done`` (in ``[0, 1)``) of the iterations are done."""
        if self.entropy_coef_final is None:
            return self.entropy_coef
        return self.entropy_coef + (self.entropy_coef_final - self.entropy_coef) * fraction_done

    def __post_init__(self) -> None:
        for key in ("learning_rate", "max_grad_norm"):
            require(getattr(self, key) > 0, key, f"must be > 0, got {getattr(self, key)}")
        require(0 < self.clip_ratio < 1, "clip_ratio", f"must be in (0, 1), got {self.clip_ratio}")
        require_at_least_one(self, ("epochs", "minibatches"))
        for key in ("value_coef", "entropy_coef"):
            require(getattr(self, key) >= 0, key, f"must be >= 0, got {getattr(self, key)}")
        final = self.entropy_coef_final
        require(final is None or final >= 0, "entropy_coef_final", f"must be >= 0, got {final}")


def masked_mean(values: Tensor, masks: Tensor) -> Tensor:
    """Mean of ``values`` over the unmasked entries (any shape)."""
    return (values * masks).sum() / masks.sum().clamp(min=1.0)


def clipped_surrogate(log_probs: Tensor, old_log_probs: Tensor, advantages: Tensor,
                      masks: Tensor, clip_ratio: float) -> tuple[Tensor, Tensor]:
    """PPO's clipped surrogate loss (Schulman et al. 2017, eq. 7), to be minimised.

    Args:
        log_probs, old_log_probs, advantages, masks: same shape, e.g. ``[N, L]``.
        clip_ratio: ``eps``.

    Returns:
        ``(loss, clip_fraction)``: ``-mean(min(r A, clip(r) A))`` and the fraction of steps
        whose ratio lies outside ``[1 - eps, 1 + eps]``.
    """
    ratio = (log_probs - old_log_probs).exp()
    clipped = ratio.clamp(1.0 - clip_ratio, 1.0 + clip_ratio)
    objective = torch.minimum(ratio * advantages, clipped * advantages)
    outside = ((ratio - 1.0).abs() > clip_ratio).float()
    return -masked_mean(objective, masks), masked_mean(outside, masks)


def value_loss(values: Tensor, returns: Tensor, masks: Tensor) -> Tensor:
    """``mean((V - R)^2) / 2`` over unmasked steps."""
    return 0.5 * masked_mean((values - returns).pow(2), masks)


def approximate_kl(log_probs: Tensor, old_log_probs: Tensor, masks: Tensor) -> Tensor:
    """``KL(pi_old || pi)`` estimated as ``E[(r - 1) - log r]`` (unbiased, >= 0)."""
    log_ratio = log_probs - old_log_probs
    return masked_mean(log_ratio.exp() - 1.0 - log_ratio, masks)
