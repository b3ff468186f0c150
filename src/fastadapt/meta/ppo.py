"""PPO's losses as pure functions (Schulman et al. 2017), for recurrent policies over trials.

The clipped surrogate (Schulman et al. 2017, eq. 7) with ``r = pi(a|h) / pi_old(a|h)``::

    L_clip = -E[min(r A, clip(r, 1 - eps, 1 + eps) A)]

plus ``value_coef * E[(V - R)^2] / 2 - entropy_coef * E[entropy]``. Means are over unmasked
steps. For RL² a minibatch is a set of whole trials: :func:`recurrent_ppo_loss` recomputes
every hidden state from the trial's start with the current parameters, so the gradient flows
through the whole trial (truncated BPTT is never used).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from fastadapt.errors import ConfigError, require_at_least_one
from fastadapt.policies.recurrent import RecurrentPolicy
from fastadapt.types import Params


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
        if self.learning_rate <= 0 or self.max_grad_norm <= 0:
            raise ConfigError("ppo.learning_rate and ppo.max_grad_norm must be > 0, got "
                              f"{self.learning_rate} and {self.max_grad_norm}")
        if not 0 < self.clip_ratio < 1:
            raise ConfigError(f"ppo.clip_ratio must be in (0, 1), got {self.clip_ratio}")
        require_at_least_one(self, "ppo", ("epochs", "minibatches"))
        if self.value_coef < 0 or self.entropy_coef < 0:
            raise ConfigError("ppo.value_coef and ppo.entropy_coef must be >= 0")
        if self.entropy_coef_final is not None and self.entropy_coef_final < 0:
            raise ConfigError(f"ppo.entropy_coef_final must be >= 0, got {self.entropy_coef_final}")


class TrialBatch(NamedTuple):
    """Whole trials ready for the PPO loss; ``N`` trials (tasks x trials flattened).

    Attributes:
        inputs: recurrent policy inputs ``[N, L, I]``.
        actions: ``[N, L, A]`` or ``[N, L]``.
        masks: ``[N, L]``.
        old_log_probs: ``log pi_old(a|h)`` ``[N, L]``.
        advantages: ``[N, L]``, zero where masked.
        returns: value targets ``[N, L]`` (advantages + old values).
        task_features: the task features ``[N, F]`` a value head that knows the task reads
            or a belief head predicts, else ``None``.
    """

    inputs: Tensor
    actions: Tensor
    masks: Tensor
    old_log_probs: Tensor
    advantages: Tensor
    returns: Tensor
    task_features: Tensor | None = None

    def select(self, index: Tensor) -> TrialBatch:
        """The trials at ``index`` ``[M]`` (a minibatch)."""
        features = None if self.task_features is None else self.task_features[index]
        return TrialBatch(self.inputs[index], self.actions[index], self.masks[index],
                          self.old_log_probs[index], self.advantages[index],
                          self.returns[index], features)


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


def task_inference_loss(beliefs: Tensor, task_features: Tensor, masks: Tensor) -> Tensor:
    """Mean squared error of the belief head's predictions ``[N, L, F]`` of each trial's
    task features ``[N, F]``, averaged over features and unmasked steps ``masks [N, L]``: its
    minimiser is the posterior mean ``E[f | h_t]`` at every step."""
    return masked_mean((beliefs - task_features[:, None]).pow(2).mean(-1), masks)


def recurrent_ppo_loss(policy: RecurrentPolicy, params: Params, batch: TrialBatch,
                       config: PPOConfig, task_inference_coef: float = 0.0
                       ) -> tuple[Tensor, dict[str, Tensor]]:
    """The PPO loss of whole trials, hidden states recomputed from each trial's start.

    Args:
        policy: the recurrent policy (its own parameters are ignored).
        params: the parameters being optimised.
        batch: ``N`` whole trials.
        config: clip ratio and loss weights.
        task_inference_coef: weight of :func:`task_inference_loss` (a policy with a belief
            head and a batch with task features; 0 leaves it out).

    Returns:
        ``(loss, metrics)``: the scalar loss and detached scalars ``policy_loss``,
        ``value_loss``, ``entropy``, ``kl`` (approximate) and ``clip_fraction``, and
        ``task_inference_loss`` when ``task_inference_coef > 0``.

    Raises:
        ValueError: ``task_inference_coef > 0`` without a belief head or task features.
    """
    hidden = policy.initial_hidden(batch.masks.shape[0])
    unroll = policy.unroll(params, batch.inputs, batch.masks, hidden, all_states=False,
                           task_features=batch.task_features, beliefs=task_inference_coef > 0)
    log_probs = policy.log_prob(unroll.out, batch.actions)
    surrogate, clip_fraction = clipped_surrogate(
        log_probs, batch.old_log_probs, batch.advantages, batch.masks, config.clip_ratio
    )
    critic = value_loss(unroll.values, batch.returns, batch.masks)
    entropy = masked_mean(policy.entropy(unroll.out), batch.masks)
    loss = surrogate + config.value_coef * critic - config.entropy_coef * entropy
    metrics = {
        "policy_loss": surrogate.detach(),
        "value_loss": critic.detach(),
        "entropy": entropy.detach(),
        "kl": approximate_kl(log_probs.detach(), batch.old_log_probs, batch.masks),
        "clip_fraction": clip_fraction,
    }
    if task_inference_coef > 0:
        if unroll.beliefs is None or batch.task_features is None:
            raise ValueError("task_inference_coef > 0 needs a policy with a belief head "
                             "(belief_features > 0) and a batch with task_features")
        inference = task_inference_loss(unroll.beliefs, batch.task_features, batch.masks)
        loss = loss + task_inference_coef * inference
        metrics["task_inference_loss"] = inference.detach()
    return loss, metrics
