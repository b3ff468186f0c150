"""RL²'s PPO loss over whole trials (Schulman et al. 2017; Duan et al. 2016, §2.2).

A minibatch is a set of whole trials: :func:`recurrent_ppo_loss` recomputes every hidden state
from the trial's start with the current parameters, so the gradient flows through the whole
trial (truncated BPTT is never used).
"""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor

from fastadapt.algorithms.common.ppo import (
    PPOConfig,
    approximate_kl,
    clipped_surrogate,
    masked_mean,
    value_loss,
)
from fastadapt.policies.recurrent import RecurrentPolicy
from fastadapt.types import Params


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
    hidden = policy.initial_hidden(batch.masks.shape[0], batch.masks.device)
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
