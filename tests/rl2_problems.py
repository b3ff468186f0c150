"""Every trajectory of a two-pull, two-armed Bernoulli bandit, for the RL² tests that check an
update's advantages against the exact policy gradient. Test modules import it from here, never
from each other."""

from __future__ import annotations

import itertools
from typing import NamedTuple

import torch
from torch import Tensor

from fastadapt.envs.bandit import BernoulliBandit
from fastadapt.policies.recurrent import (
    HEAD_INIT_SCALE,
    RecurrentPolicy,
    RecurrentPolicySpec,
    make_recurrent_policy,
)
from fastadapt.types import Params, Trials


class TwoPulls(NamedTuple):
    """The 16 trajectories ``(a0, r0, a1, r1)`` of each of ``T`` bandits.

    Attributes:
        policy, params: a GRU policy far from uniform, parameters requiring grad.
        means: arm means ``[T, 2]``.
        inputs: what the sampler feeds a trial of two one-pull episodes ``[16, 2, I]``.
        actions, rewards: ``[16, 2]``.
        log_pi: ``log pi(a_t | h_t)`` with the graph to ``params`` ``[16, 2]``.
        mu: the pulled arms' means ``[T, 16, 2]``.
        probability: ``p(tau | bandit)`` with the graph ``[T, 16]``.
    """

    policy: RecurrentPolicy
    params: Params
    means: Tensor
    inputs: Tensor
    actions: Tensor
    rewards: Tensor
    log_pi: Tensor
    mu: Tensor
    probability: Tensor

    def exact_gradient(self) -> tuple[Tensor | None, ...]:
        """Autograd's gradient of ``sum_bandits sum_tau p(tau) (mu[a0] + mu[a1])``."""
        expected_return = (self.probability * self.mu.sum(-1)).sum()
        return torch.autograd.grad(expected_return, list(self.params.values()),
                                   allow_unused=True, retain_graph=True)

    def trials(self, values: Tensor) -> Trials:
        """The trajectories as :class:`Trials` ``[T, 16, 2]`` with these ``values``."""
        num_tasks, n = self.mu.shape[0], len(self.actions)
        return Trials(self.inputs.expand(num_tasks, -1, -1, -1),
                      self.actions.expand(num_tasks, -1, -1),
                      self.rewards.expand(num_tasks, -1, -1), torch.ones(num_tasks, n, 2),
                      self.log_pi.detach().expand(num_tasks, -1, -1), values,
                      torch.zeros(num_tasks, n, 2, self.policy.state_size),
                      expected_rewards=self.mu)


def two_pulls(means: list[tuple[float, float]], critic_features: int = 0) -> TwoPulls:
    """Enumerate the trajectories of the bandits ``means`` (seeded policy)."""
    torch.manual_seed(3)
    policy = make_recurrent_policy(1, BernoulliBandit(2, 1).action_space,
        RecurrentPolicySpec(hidden_size=4, init_std=0.5, critic_features=critic_features))
    params = policy.params()
    params["head.weight"] /= HEAD_INIT_SCALE  # a policy far from uniform: larger scores
    params = {name: p.requires_grad_(True) for name, p in params.items()}
    paths = torch.tensor(list(itertools.product((0, 1), repeat=4)))  # [16, (a0, r0, a1, r1)]
    n = len(paths)
    actions, rewards = paths[:, [0, 2]], paths[:, [1, 3]].float()  # [16, 2]
    zero = torch.zeros(n)
    inputs = torch.stack([
        policy.encode(torch.zeros(n, 1), torch.zeros(n, 2), zero, zero),
        policy.encode(torch.zeros(n, 1), policy.action_encoding(actions[:, 0]), rewards[:, 0],
                      torch.ones(n)),
    ], dim=1)
    unroll = policy.unroll(params, inputs, torch.ones(n, 2), policy.initial_hidden(n),
                           task_features=torch.zeros(n, critic_features))
    log_pi = policy.log_prob(unroll.out, actions)
    table = torch.tensor(means)  # [T, 2]
    mu = table[:, actions]  # [T, 16, 2]
    reward_probability = torch.where(rewards > 0, mu, 1 - mu).prod(-1)  # [T, 16]
    probability = log_pi.sum(-1).exp() * reward_probability
    return TwoPulls(policy, params, table, inputs, actions, rewards, log_pi, mu, probability)
