"""RL² with ``rl2.expected_rewards``: the sampler records ``E[r | s, a]``, the update trains on
it, and the policy gradient it estimates is the exact gradient of the expected return."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from rl2_problems import two_pulls

from fastadapt.algorithms.rl2.config import RL2Config
from fastadapt.algorithms.rl2.update import trial_batch
from fastadapt.envs.bandit import BanditTask, BernoulliBandit
from fastadapt.envs.navigation import Navigation2D
from fastadapt.errors import ConfigError
from fastadapt.policies.recurrent import RecurrentPolicySpec, make_recurrent_policy
from fastadapt.run.config_loading import load_train_config
from fastadapt.run.trainer import train
from fastadapt.sampling.vector import VectorSampler
from fastadapt.types import Trials

MEANS = (0.9, 0.2, 0.6)


def _bandit_trials(pulls: int = 5) -> Trials:
    torch.manual_seed(0)
    family = BernoulliBandit(num_arms=3, num_pulls=1)
    policy = make_recurrent_policy(1, family.action_space,
        RecurrentPolicySpec(hidden_size=8, init_std=0.5))
    sampler = VectorSampler(family, policy, horizon=1, seed=0)
    tasks = [BanditTask(MEANS), BanditTask((0.1, 0.5, 0.3))]
    return sampler.sample_trials(policy.params(), tasks, 4, episodes_per_trial=pulls)


def test_sampler_records_the_mean_of_every_pulled_arm() -> None:
    trials = _bandit_trials()
    assert trials.expected_rewards is not None
    means = torch.tensor([MEANS, (0.1, 0.5, 0.3)])  # [T, K]
    expected = torch.gather(means, 1, trials.actions.flatten(1)).view_as(trials.actions)
    torch.testing.assert_close(trials.expected_rewards, expected)
    assert set(trials.rewards.unique().tolist()) <= {0.0, 1.0}  # what the policy reads


@pytest.mark.parametrize("normalize", [False, True])
def test_update_trains_on_the_expected_rewards_only_when_asked(normalize: bool) -> None:
    trials = _bandit_trials()
    assert trials.expected_rewards is not None
    config = RL2Config(episodes_per_trial=5, gamma=1.0, gae_lambda=0.9, reward_scale=0.1)
    on_expected = trial_batch(trials, replace(config, expected_rewards=True), normalize)
    swapped = trial_batch(trials._replace(rewards=trials.expected_rewards), config, normalize)
    sampled = trial_batch(trials, config, normalize)
    torch.testing.assert_close(on_expected.advantages, swapped.advantages, rtol=0, atol=0)
    torch.testing.assert_close(on_expected.returns, swapped.returns, rtol=0, atol=0)
    assert not torch.allclose(on_expected.advantages, sampled.advantages)
    torch.testing.assert_close(on_expected.inputs, sampled.inputs, rtol=0, atol=0)


def test_families_without_expected_rewards_are_refused_by_name(tmp_path: Path) -> None:
    config = load_train_config("rl2/2d-navigation", ["rl2.expected_rewards=true"])
    with pytest.raises(ConfigError, match="Navigation2D does not"):
        train(config, tmp_path / "run", resume=False, show_progress=False)
    assert not (tmp_path / "run").exists()  # refused before the run directory is made
    # trials without expected rewards reach the update only through the library API
    family = Navigation2D()
    policy = make_recurrent_policy(2, family.action_space,
        RecurrentPolicySpec(hidden_size=8, init_std=0.5))
    sampler = VectorSampler(family, policy, horizon=3, seed=0)
    trials = sampler.sample_trials(policy.params(),
                                   family.sample_tasks(np.random.default_rng(0), 2), 2, 2)
    assert trials.expected_rewards is None
    with pytest.raises(ConfigError, match=r"rl2\.expected_rewards needs a family"):
        trial_batch(trials, RL2Config(episodes_per_trial=2, expected_rewards=True), True)


def test_expected_reward_advantages_average_to_the_exact_policy_gradient() -> None:
    """Two pulls of a 2-armed bandit, every trajectory (a0, r0, a1, r1) enumerated: the
    probability-weighted sum of the update's advantage x score, with the sampled or with the
    expected rewards (gamma = lambda = 1, zero values), equals autograd's gradient of the exact
    expected return sum_tau p(tau) (mu[a0] + mu[a1])."""
    problem = two_pulls([(0.8, 0.3)])
    exact = problem.exact_gradient()
    trials = problem.trials(torch.zeros(1, 16, 2))
    for expected_rewards in (False, True):
        config = RL2Config(episodes_per_trial=2, gamma=1.0, gae_lambda=1.0,
                           expected_rewards=expected_rewards)
        advantages = trial_batch(trials, config, normalize=False).advantages  # [16, 2]
        surrogate = (problem.probability.detach()[0, :, None] * advantages
                     * problem.log_pi).sum()
        estimate = torch.autograd.grad(surrogate, list(problem.params.values()),
                                       allow_unused=True, retain_graph=True)
        for name, got, want in zip(problem.params, estimate, exact, strict=True):
            if want is None:  # the value head: no part of the return
                assert got is None, name
                continue
            assert want.abs().max() > 1e-4, name  # the recurrent weights get gradient too
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7, msg=name)
