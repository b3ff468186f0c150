"""RL² with ``rl2.transition_input``: the trunk reads the previous step's
``vec([1, s] (x) a) (x) [1, r]``, whose sums over a trial are the visit counts and reward totals
of every (state, action) pair."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from fastadapt.envs.bandit import BanditTask, BernoulliBandit
from fastadapt.envs.navigation import Navigation2D
from fastadapt.envs.tabular_mdp import TabularMDP
from fastadapt.policies.recurrent import RecurrentPolicySpec, make_recurrent_policy
from fastadapt.sampling.vector import VectorSampler

S, A, STEPS, EPISODES = 3, 2, 4, 3


def test_encode_puts_one_and_the_reward_in_the_slots_of_the_previous_pair() -> None:
    policy = make_recurrent_policy(S, TabularMDP(S, A).action_space,
        RecurrentPolicySpec(hidden_size=4, init_std=1.0, transition_input=True))
    assert policy.transition_features == 2 * (S + 1) * A
    obs = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    prev_obs = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])  # row 1: a trial's first step
    prev_actions = torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    x = policy.encode(obs, prev_actions, torch.tensor([0.7, 0.0]), torch.tensor([1.0, 0.0]),
                      prev_obs=prev_obs)
    assert x.shape == (2, policy.input_size) and policy.input_size == S + A + 2 + 16
    # rows [1, s0, s1, s2] x columns [a0, a1]: state 1, action 1 -> slots (0, 1) and (2, 1)
    pair = [0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0]
    expected = [0.0, 0.0, 1.0, 0.0, 1.0, 0.7, 1.0, *pair, *(0.7 * p for p in pair)]
    torch.testing.assert_close(x[0], torch.tensor(expected))
    assert torch.equal(x[1, S + A + 2:], torch.zeros(16))  # nothing before the first action
    with pytest.raises(ValueError, match="needs prev_obs"):
        policy.encode(obs, prev_actions, torch.zeros(2), torch.zeros(2))


def test_sampled_trials_sum_to_the_visit_counts_and_reward_totals_of_every_pair() -> None:
    torch.manual_seed(0)
    family = TabularMDP(S, A, episode_steps=STEPS)
    policy = make_recurrent_policy(S, family.action_space,
        RecurrentPolicySpec(hidden_size=8, init_std=1.0, transition_input=True))
    sampler = VectorSampler(family, policy, STEPS, seed=0)
    tasks = family.sample_tasks(np.random.default_rng(0), 2)
    trials = sampler.sample_trials(policy.params(), tasks, 3, EPISODES)
    inputs = trials.inputs.flatten(0, 1)  # [N, L, I]
    states = inputs[..., :S].argmax(-1)  # [N, L], the state each action was taken in
    actions, rewards = trials.actions.flatten(0, 1), trials.rewards.flatten(0, 1)
    pairs = F.one_hot(states * A + actions, S * A).float()  # [N, L, S A]
    columns = inputs[..., S + A + 2:]  # the step after each pair reads it
    count_slots = columns[..., A : (S + 1) * A]  # rows s0..s2 of the "1" half
    total_slots = columns[..., (S + 2) * A :]  # rows s0..s2 of the reward half
    assert torch.equal(columns[:, 0], torch.zeros_like(columns[:, 0]))
    torch.testing.assert_close(count_slots[:, 1:], pairs[:, :-1], rtol=0, atol=0)
    torch.testing.assert_close(total_slots[:, 1:], pairs[:, :-1] * rewards[:, :-1, None])
    # the row of the constant 1: the previous action alone, and the reward it paid
    torch.testing.assert_close(columns[:, 1:, :A], F.one_hot(actions[:, :-1], A).float(),
                               rtol=0, atol=0)
    # what a tabular learner counts after the whole trial but its last step
    visits = count_slots.sum(1).view(-1, S, A)
    assert torch.equal(visits.sum((1, 2)), torch.full((6,), EPISODES * STEPS - 1.0))
    # the PPO update's recomputation from the trial start sees the same states
    unroll = policy.unroll(policy.params(), inputs, trials.masks.flatten(0, 1),
                           policy.initial_hidden(6))
    torch.testing.assert_close(unroll.hidden, trials.hidden.flatten(0, 1), atol=1e-6, rtol=0)


def test_bandit_columns_are_the_pulled_arm_and_its_reward() -> None:
    torch.manual_seed(0)
    family = BernoulliBandit(num_arms=3, num_pulls=1)
    policy = make_recurrent_policy(1, family.action_space,
        RecurrentPolicySpec(hidden_size=8, init_std=1.0, transition_input=True))
    trials = VectorSampler(family, policy, 1, seed=0).sample_trials(
        policy.params(), [BanditTask((0.9, 0.2, 0.6))], 4, 6)
    columns = trials.inputs[0, :, 1:, 1 + 3 + 2:]  # [B, L - 1, 2 (1 + 1) 3]
    arms = F.one_hot(trials.actions[0, :, :-1], 3).float()
    reward = trials.rewards[0, :, :-1, None]
    zeros = torch.zeros_like(arms)  # the row of the bandit's constant observation 0
    torch.testing.assert_close(columns, torch.cat([arms, zeros, arms * reward, zeros], -1),
                               rtol=0, atol=0)


def test_library_refuses_continuous_actions_by_name() -> None:
    # the CLI's one-line error: tests/test_rl2_runs.py::test_bad_rl2_config_is_one_line_error
    with pytest.raises(ValueError, match="needs a Discrete action space"):
        make_recurrent_policy(2, Navigation2D().action_space,
            RecurrentPolicySpec(hidden_size=8, init_std=1.0, transition_input=True))
