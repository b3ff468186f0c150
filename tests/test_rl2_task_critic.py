"""RL² with ``rl2.task_critic``: the value head reads the training task's parameters, the
policy does not, and the policy gradient stays the exact gradient of the expected return."""

from __future__ import annotations

import pytest
import torch
from rl2_problems import two_pulls
from torch import Tensor

from fastadapt.algorithms.common.ppo import PPOConfig
from fastadapt.algorithms.rl2.config import RL2Config
from fastadapt.algorithms.rl2.losses import recurrent_ppo_loss
from fastadapt.algorithms.rl2.update import trial_batch
from fastadapt.envs.bandit import BanditTask, BernoulliBandit
from fastadapt.policies.recurrent import RecurrentPolicy, RecurrentPolicySpec, make_recurrent_policy
from fastadapt.sampling.vector import VectorSampler
from fastadapt.types import Trials

TASKS = [BanditTask((0.9, 0.2, 0.6)), BanditTask((0.1, 0.5, 0.3))]
TRIALS = 3  # per task: T != B, so a mix-up of the two axes shows


def _sampled() -> tuple[RecurrentPolicy, Trials]:
    torch.manual_seed(0)
    family = BernoulliBandit(num_arms=3, num_pulls=1)
    policy = make_recurrent_policy(1, family.action_space,
        RecurrentPolicySpec(hidden_size=8, init_std=1.0, critic_features=3))
    sampler = VectorSampler(family, policy, 1, seed=0)
    return policy, sampler.sample_trials(policy.params(), TASKS, TRIALS, 4)


def test_value_head_is_a_tanh_layer_over_the_state_and_the_task() -> None:
    policy, trials = _sampled()
    params = policy.params()
    assert params["value_hidden.weight"].shape == (8, 8 + 3)
    n = len(TASKS) * TRIALS
    inputs, masks = trials.inputs.flatten(0, 1), trials.masks.flatten(0, 1)  # [N, L, I]
    features = torch.tensor([task.means for task in TASKS]).repeat_interleave(TRIALS, dim=0)
    unroll = policy.unroll(params, inputs, masks, policy.initial_hidden(n),
                           task_features=features)
    h = unroll.hidden  # [N, L, 8], the GRU's states
    task = features[:, None].expand(-1, h.shape[1], -1)
    layer = torch.tanh(torch.cat([h, task], -1) @ params["value_hidden.weight"].T
                       + params["value_hidden.bias"])
    by_hand = layer @ params["value.weight"][0] + params["value.bias"]
    torch.testing.assert_close(unroll.values, by_hand)
    # the sampler's values and features are the same ones
    torch.testing.assert_close(trials.values.flatten(0, 1), by_hand)
    assert trials.task_features is not None
    torch.testing.assert_close(trials.task_features.flatten(0, 1), features, rtol=0, atol=0)
    for wrong in (None, features[:, :2], features[:4]):
        with pytest.raises(ValueError, match=r"task_features must be \[N, F\] = \[6, 3\]"):
            policy.unroll(params, inputs, masks, policy.initial_hidden(n), task_features=wrong)


def test_the_update_gives_each_trial_its_own_task_and_the_policy_never_reads_it() -> None:
    policy, trials = _sampled()
    params = {n: p.requires_grad_(True) for n, p in policy.params().items()}
    batch = trial_batch(trials, RL2Config(episodes_per_trial=4), normalize=True)
    inputs, masks, n = batch.inputs, batch.masks, len(batch.inputs)
    assert batch.task_features is not None
    own = policy.unroll(params, inputs, masks, policy.initial_hidden(n),
                        task_features=batch.task_features)
    # the update recomputes the values the sampler saw: same trial, same task
    torch.testing.assert_close(own.values, trials.values.flatten(0, 1))
    other = policy.unroll(params, inputs, masks, policy.initial_hidden(n),
                          task_features=batch.task_features.flip(0))
    torch.testing.assert_close(other.out, own.out, rtol=0, atol=0)
    assert not torch.allclose(other.values, own.values)
    # the PPO loss: only the value term's gradient reaches value_hidden
    for value_coef in (0.0, 0.5):
        loss, _ = recurrent_ppo_loss(policy, params, batch, PPOConfig(value_coef=value_coef))
        grads = dict(zip(params, torch.autograd.grad(loss, list(params.values())), strict=True))
        assert bool(grads["value_hidden.weight"].any()) == (value_coef > 0)
        assert grads["head.weight"].any()
    minibatch = batch.select(torch.tensor([3, 0]))
    assert minibatch.task_features is not None
    torch.testing.assert_close(minibatch.task_features, batch.task_features[[3, 0]])
    torch.testing.assert_close(minibatch.advantages, batch.advantages[[3, 0]])


def test_task_critic_advantages_average_to_the_exact_policy_gradient() -> None:
    """Every trajectory of two 2-armed bandits enumerated: with the values of a critic that
    reads the bandit's means (gamma = lambda = 1), the probability-weighted advantage x score
    equals the exact gradient of the expected return. A baseline that may depend on the task
    still adds nothing in expectation, while the values it subtracts are far from zero."""
    means = [(0.8, 0.3), (0.1, 0.6)]
    problem = two_pulls(means, critic_features=2)
    params = {**problem.params}
    with torch.no_grad():  # a value head that leans on the task
        params["value_hidden.weight"] = params["value_hidden.weight"].clone()
        params["value_hidden.weight"][:, 4:] *= 20.0
    features = problem.means.repeat_interleave(16, dim=0)  # [2 * 16, 2]
    values = problem.policy.unroll(params, problem.inputs.repeat(2, 1, 1),
                                   torch.ones(32, 2), problem.policy.initial_hidden(32),
                                   task_features=features).values.detach().view(2, 16, 2)
    assert (values[0] - values[1]).abs().min() > 0.05  # the tasks' baselines differ
    config = RL2Config(episodes_per_trial=2, gamma=1.0, gae_lambda=1.0)
    exact = problem.exact_gradient()

    def estimate(baseline: Tensor) -> tuple[Tensor | None, ...]:
        advantages = trial_batch(problem.trials(baseline), config, False).advantages
        weighted = problem.probability.detach()[..., None] * advantages.view(2, 16, 2)
        return torch.autograd.grad((weighted * problem.log_pi).sum(),
                                   list(problem.params.values()), allow_unused=True,
                                   retain_graph=True)

    for name, got, want in zip(problem.params, estimate(values), exact, strict=True):
        if want is None:  # the value head
            assert got is None, name
            continue
        assert want.abs().max() > 1e-4, name
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7, msg=name)
    # the control: a baseline that also depends on the action taken is not one
    head = list(problem.params).index("head.weight")
    biased = estimate(values + 0.3 * problem.actions.float())[head]
    assert biased is not None and exact[head] is not None
    assert not torch.allclose(biased, exact[head], rtol=1e-3, atol=1e-5)
