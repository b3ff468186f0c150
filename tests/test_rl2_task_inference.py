"""RL² with ``rl2.task_inference_coef``: a belief head on the policy's trunk predicts the
training task's parameters, adding a supervised loss that shapes the trunk; the policy's
actions never read it."""

from __future__ import annotations

import pytest
import torch

from fastadapt.algorithms.common.ppo import PPOConfig
from fastadapt.algorithms.rl2.config import RL2Config
from fastadapt.algorithms.rl2.losses import recurrent_ppo_loss, task_inference_loss
from fastadapt.algorithms.rl2.update import RL2PPO, trial_batch
from fastadapt.envs.bandit import BanditTask, BernoulliBandit
from fastadapt.errors import ConfigError
from fastadapt.policies.recurrent import RecurrentPolicy, RecurrentPolicySpec, make_recurrent_policy
from fastadapt.run.config_loading import train_config_from_dict
from fastadapt.sampling.vector import VectorSampler
from fastadapt.types import Trials

TASKS = [BanditTask((0.9, 0.2, 0.6)), BanditTask((0.1, 0.5, 0.3))]
TRIALS = 3  # per task: T != B, so a mix-up of the two axes shows


def _sampled(belief_features: int = 3) -> tuple[RecurrentPolicy, Trials]:
    torch.manual_seed(0)
    family = BernoulliBandit(num_arms=3, num_pulls=1)
    policy = make_recurrent_policy(1, family.action_space,
        RecurrentPolicySpec(hidden_size=8, init_std=1.0, belief_features=belief_features))
    sampler = VectorSampler(family, policy, 1, seed=0)
    return policy, sampler.sample_trials(policy.params(), TASKS, TRIALS, 4)


def test_loss_is_the_masked_mean_squared_error_by_hand() -> None:
    beliefs = torch.tensor([[[0.5, 0.0], [1.0, 1.0], [9.0, 9.0]]])  # [N=1, L=3, F=2]
    features = torch.tensor([[0.5, 1.0]])
    masks = torch.tensor([[1.0, 1.0, 0.0]])  # the last step is masked out
    # step 1: (0 + 1) / 2 = 0.5; step 2: (0.25 + 0) / 2 = 0.125; mean 0.3125
    assert float(task_inference_loss(beliefs, features, masks)) == pytest.approx(0.3125)


def test_belief_head_is_linear_in_the_policy_state_and_the_sampler_fills_the_task() -> None:
    policy, trials = _sampled()
    params = policy.params()
    assert params["belief.weight"].shape == (3, 8) and policy.reads_task_features
    n = len(TASKS) * TRIALS
    inputs, masks = trials.inputs.flatten(0, 1), trials.masks.flatten(0, 1)
    unroll = policy.unroll(params, inputs, masks, policy.initial_hidden(n), beliefs=True)
    assert unroll.beliefs is not None
    by_hand = unroll.hidden @ params["belief.weight"].T + params["belief.bias"]  # [N, L, 3]
    torch.testing.assert_close(unroll.beliefs, by_hand)
    # the sampler gives each trial its own bandit's arm means, which the critic does not read
    assert trials.task_features is not None
    features = torch.tensor([task.means for task in TASKS]).repeat_interleave(TRIALS, dim=0)
    torch.testing.assert_close(trials.task_features.flatten(0, 1), features, rtol=0, atol=0)
    # without a belief head (and no task critic) the sampler fills no features, and no
    # belief is computed
    plain, plain_trials = _sampled(belief_features=0)
    assert not plain.reads_task_features and plain_trials.task_features is None
    plain_unroll = plain.unroll(plain.params(), inputs, masks, plain.initial_hidden(n),
                                beliefs=True)
    assert plain_unroll.beliefs is None
    # unasked (the sampler's steps), the head is not computed
    assert policy.unroll(params, inputs, masks, policy.initial_hidden(n)).beliefs is None


def test_the_loss_adds_the_weighted_term_whose_gradient_skips_the_heads() -> None:
    policy, trials = _sampled()
    params = {n: p.requires_grad_(True) for n, p in policy.params().items()}
    batch = trial_batch(trials, RL2Config(episodes_per_trial=4), normalize=True)
    base, _ = recurrent_ppo_loss(policy, params, batch, PPOConfig())
    weighted, metrics = recurrent_ppo_loss(policy, params, batch, PPOConfig(), 2.0)
    assert batch.task_features is not None
    n = len(batch.inputs)
    beliefs = policy.unroll(params, batch.inputs, batch.masks, policy.initial_hidden(n),
                            beliefs=True).beliefs
    assert beliefs is not None
    by_hand = task_inference_loss(beliefs, batch.task_features, batch.masks)
    torch.testing.assert_close(metrics["task_inference_loss"], by_hand.detach())
    torch.testing.assert_close(weighted, base + 2.0 * by_hand)
    # the term's own gradient reaches the belief head and the trunk, not the policy or
    # value heads
    grads = dict(zip(params, torch.autograd.grad(weighted - base, list(params.values()),
                                                 allow_unused=True), strict=True))
    for name in ("belief.weight", "gru_input.weight", "gru_hidden.weight"):
        grad = grads[name]
        assert grad is not None and bool(grad.any()), name
    for name in ("head.weight", "head.bias", "value.weight", "value.bias"):
        grad = grads[name]
        assert grad is None or not bool(grad.any()), name
    # the actions never read the belief head
    changed = {**params, "belief.weight": params["belief.weight"] + 1.0}
    outputs = [policy.unroll(p, batch.inputs, batch.masks, policy.initial_hidden(n)).out
               for p in (params, changed)]
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=0)


def test_training_moves_the_beliefs_below_what_ignoring_the_history_can_reach() -> None:
    policy, trials = _sampled()
    config = RL2Config(episodes_per_trial=4, task_inference_coef=1.0,
                       ppo=PPOConfig(learning_rate=0.01))
    update = RL2PPO(policy, policy.params(), config, seed=0)
    first = update.step(trials)["task_inference_loss"]
    for _ in range(20):
        last = update.step(trials)["task_inference_loss"]
    # the best prediction that ignores the history (the bias alone) is the mean of the two
    # bandits' arm means, whose squared error is their variance: below it, the head reads
    # each trial's pulls
    means = torch.tensor([task.means for task in TASKS])
    blind = float(means.var(dim=0, unbiased=False).mean())
    assert last < 0.5 * first and last < blind, (first, last, blind)


def test_a_weight_without_a_belief_head_or_features_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"rl2\.task_inference_coef must be >= 0"):
        train_config_from_dict({"algorithm": "rl2", "rl2": {"task_inference_coef": -1.0}})
    plain, trials = _sampled(belief_features=0)
    batch = trial_batch(trials, RL2Config(episodes_per_trial=4), normalize=True)
    with pytest.raises(ValueError, match="needs a policy with a belief head"):
        recurrent_ppo_loss(plain, plain.params(), batch, PPOConfig(), 1.0)
