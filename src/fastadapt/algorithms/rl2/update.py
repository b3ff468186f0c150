"""RL²'s update (Duan et al. 2016; Wang et al. 2016): PPO over whole trials.

Given the iteration's trials (``T`` tasks x ``B`` trials of ``n`` episodes, the hidden state
kept between episodes):

1. GAE over each whole trial, the trial being the RL episode (Duan et al. 2016, §2.2), with
   the values the policy predicted while sampling (:func:`gae_skipping_masked`);
2. ``ppo.epochs`` passes of Adam over minibatches of whole trials
   (:func:`~fastadapt.algorithms.rl2.losses.recurrent_ppo_loss`).
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from fastadapt.algorithms.common.adam import adam_state_tensors, load_adam_state
from fastadapt.algorithms.common.ppo import masked_mean
from fastadapt.algorithms.common.returns import gae_skipping_masked
from fastadapt.algorithms.rl2.config import RL2Config
from fastadapt.algorithms.rl2.losses import TrialBatch, recurrent_ppo_loss
from fastadapt.errors import ConfigError
from fastadapt.policies.recurrent import RecurrentPolicy
from fastadapt.types import Params, Trials

_ADAM_PREFIX = "adam/"


def trial_batch(trials: Trials, config: RL2Config, normalize: bool) -> TrialBatch:
    """Flatten ``[T, B]`` into ``N`` trials and compute GAE advantages and value targets.

    Args:
        trials: ``[T, B, L, ...]`` from a sampler's ``sample_trials``.
        normalize: standardise the advantages over all unmasked steps.

    Returns:
        A :class:`TrialBatch` of ``N = T * B`` trials.
    """
    def flat(x: Tensor) -> Tensor:
        return x.flatten(0, 1)

    masks, values = flat(trials.masks), flat(trials.values)
    per_step = trials.expected_rewards if config.expected_rewards else trials.rewards
    if per_step is None:
        raise ConfigError("rl2.expected_rewards needs a family whose batched env reports "
                          "expected rewards (Bandit, TabularMDP); this one does not")
    rewards = flat(per_step) * config.reward_scale
    advantages = gae_skipping_masked(rewards, values, masks, config.gamma, config.gae_lambda)
    returns = (advantages + values) * masks
    if normalize:
        mean = masked_mean(advantages, masks)
        std = masked_mean((advantages - mean).pow(2), masks).sqrt()
        advantages = (advantages - mean) / (std + 1e-8) * masks
    features = None if trials.task_features is None else flat(trials.task_features)
    return TrialBatch(flat(trials.inputs), flat(trials.actions), masks, flat(trials.log_probs),
                      advantages, returns, features)


class RL2PPO:
    """The RL² update: PPO with Adam on whole trials. Owns the parameters and Adam's state.

    Args:
        policy: the recurrent policy.
        params: initial parameters (copied).
        config: trial and PPO settings.
        seed: seeds the generator that shuffles trials into minibatches.
    """

    def __init__(self, policy: RecurrentPolicy, params: Params, config: RL2Config,
                 seed: int) -> None:
        self.policy, self.config, self.ppo = policy, config, config.ppo
        self.params = {n: p.detach().clone().requires_grad_(True) for n, p in params.items()}
        self.optimizer = torch.optim.Adam(self.params.values(), lr=self.ppo.learning_rate,
                                          eps=1e-5)
        self.generator = torch.Generator().manual_seed(seed)

    def step(self, trials: Trials, fraction_done: float = 0.0) -> dict[str, float]:
        """``ppo.epochs`` passes over ``trials`` in ``ppo.minibatches`` minibatches.

        Args:
            trials: the iteration's trials.
            fraction_done: iterations done / ``run.iterations``; sets the step size when
                ``ppo.anneal_lr`` (:meth:`PPOConfig.learning_rate_at`) and the entropy weight
                when ``ppo.entropy_coef_final`` is set (:meth:`PPOConfig.entropy_coef_at`).

        Returns:
            Means over the minibatches of the loss terms, ``kl`` and ``clip_fraction`` of
            the last epoch, ``grad_norm``, ``learning_rate`` (the step size used),
            ``entropy_coef`` (the entropy weight used), and ``nonfinite`` (1.0 if any
            minibatch had a non-finite loss or gradient; such minibatches are skipped).
        """
        learning_rate = self.ppo.learning_rate_at(fraction_done)
        ppo = replace(self.ppo, entropy_coef=self.ppo.entropy_coef_at(fraction_done))
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate
        device = next(iter(self.params.values())).device
        batch = trial_batch(trials.to(device), self.config, self.ppo.normalize_advantages)
        num_trials = batch.masks.shape[0]
        nonfinite, count = 0.0, 0
        totals: dict[str, float] = {}
        for _ in range(self.ppo.epochs):
            totals, count = {}, 0
            order = torch.randperm(num_trials, generator=self.generator)
            for index in order.chunk(min(self.ppo.minibatches, num_trials)):
                minibatch = batch.select(index)
                loss, metrics = recurrent_ppo_loss(self.policy, self.params, minibatch, ppo,
                                                   self.config.task_inference_coef)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                norm = torch.nn.utils.clip_grad_norm_(self.params.values(), self.ppo.max_grad_norm)
                if not (torch.isfinite(loss) and torch.isfinite(norm)):
                    nonfinite = 1.0
                    continue
                self.optimizer.step()
                metrics = {**metrics, "loss": loss.detach(), "grad_norm": norm}
                for key, value in metrics.items():
                    totals[key] = totals.get(key, 0.0) + float(value)
                count += 1
        result = {key: value / max(count, 1) for key, value in totals.items()}
        result.setdefault("kl", 0.0)
        return {**result, "learning_rate": learning_rate, "entropy_coef": ppo.entropy_coef,
                "nonfinite": nonfinite}

    def state_dict(self) -> dict[str, Tensor]:
        """Adam's moments and step counts and the shuffling generator, for a checkpoint."""
        return {f"{_ADAM_PREFIX}generator": self.generator.get_state(),
                **adam_state_tensors(self.optimizer, list(self.params))}

    def load_state_dict(self, tensors: dict[str, Tensor]) -> None:
        """Restore what :meth:`state_dict` saved (parameters are set separately).

        Raises:
            KeyError: the shuffling generator's state is missing.
        """
        self.generator.set_state(tensors[f"{_ADAM_PREFIX}generator"])
        load_adam_state(self.optimizer, list(self.params), tensors)

    def load_params(self, params: Params) -> None:
        """Overwrite the parameters in place (Adam keeps referring to the same tensors)."""
        with torch.no_grad():
            for name, value in params.items():
                self.params[name].copy_(value)
