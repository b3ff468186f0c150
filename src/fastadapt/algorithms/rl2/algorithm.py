"""RL² (Duan et al. 2016; Wang et al. 2016) as an :class:`~fastadapt.algorithms.base.Algorithm`:
a recurrent policy meta-trained with PPO over trials.

One iteration samples ``B`` trials of each of the ``T`` tasks (``n`` episodes per trial, the
hidden state kept between them: a sampler's ``sample_trials``) and takes the PPO update of
:class:`~fastadapt.algorithms.rl2.update.RL2PPO`. Meta-testing needs no gradient step: the
policy adapts inside its hidden state, so the return of the ``k``-th episode of a trial on a
held-out task is the adaptation curve.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from fastadapt.algorithms.agent import Agent
from fastadapt.algorithms.base import (
    Algorithm,
    Iteration,
    MetaTestCurves,
    MetaTestProtocol,
    example_paths,
    on_cpu,
)
from fastadapt.algorithms.rl2.agent import RecurrentAgent
from fastadapt.algorithms.rl2.config import RL2Config
from fastadapt.algorithms.rl2.update import RL2PPO
from fastadapt.config import AlgorithmConfig, PolicyConfig, TrainConfig
from fastadapt.envs.base import TaskFamily
from fastadapt.envs.wrappers import task_feature_size
from fastadapt.errors import ConfigError
from fastadapt.policies.recurrent import (
    RecurrentPolicy,
    RecurrentPolicySpec,
    make_recurrent_policy,
)
from fastadapt.sampling.base import Sampler
from fastadapt.sampling.success import outcome_metrics
from fastadapt.types import Params, Trials


def _task_width(family: TaskFamily[Any], option: str) -> int:
    """How many task features ``option`` (``rl2.task_critic``'s value head,
    ``rl2.task_inference_coef``'s belief head) reads or predicts (one held-out task's).

    Raises:
        ConfigError: the family's tasks are not numbers only (Meta-World names its env).
    """
    try:
        return task_feature_size(family)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{option} needs tasks made of numbers; {family.name}'s are "
                          f"not ({err})") from err


def _check_settings(family: TaskFamily[Any], rl2: RL2Config, policy: PolicyConfig) -> None:
    """Refuse what this family cannot serve, and ``policy:`` keys RL² does not read.

    Raises:
        ConfigError: naming the option and the reason.
    """
    if rl2.expected_rewards and not family.reports_expected_rewards:
        raise ConfigError(f"rl2.expected_rewards needs a family that reports the expected "
                          f"reward of each step (Bandit, TabularMDP); {family.name} does not")
    if rl2.transition_input and not isinstance(family.action_space, gym.spaces.Discrete):
        raise ConfigError(f"rl2.transition_input needs discrete actions; {family.name} has "
                          f"{family.action_space}")
    defaults = PolicyConfig()
    for key in ("hidden_sizes", "activation"):
        if getattr(policy, key) != getattr(defaults, key):
            raise ConfigError(f"policy.{key} is not read by rl2, whose recurrent policy is "
                              "sized by rl2.hidden_size and rl2.cell; remove it")


def mean_episode_returns(trials: Trials, episodes_per_trial: int) -> list[float]:
    """Mean return of the ``k``-th episode of a trial over tasks and trials, ``k = 1..n``."""
    returns = trials.episode_returns(episodes_per_trial)  # [T, B, n]
    return [float(r) for r in returns.mean(dim=(0, 1))]


def trial_outcomes(trials: Trials, episodes_per_trial: int) -> dict[str, float]:
    """``success_rate_before`` / ``success_rate_after``: the fraction of the first and of the
    last episodes of the trials that succeeded, for families with success (Meta-World);
    ``unstable_episodes``: episodes ended by a physics blow-up, for MuJoCo families."""
    rates = None
    if trials.successes is not None:
        by_episode = trials.episode_successes(episodes_per_trial).mean(dim=(0, 1))  # [n]
        rates = (float(by_episode[0]), float(by_episode[-1]))
    return outcome_metrics(rates, None if trials.unstable is None
                           else float(trials.unstable.sum()))


class RL2(Algorithm[RL2Config]):
    """RL²: a GRU (or LSTM) policy trained with PPO over trials; reads ``rl2:`` and, of
    ``policy:``, ``init_std`` only."""

    config_class = RL2Config
    adapts_by = "episodes"

    @classmethod
    def updates_per_iteration(cls, section: AlgorithmConfig) -> int | None:
        """PPO's Adam steps: ``epochs`` passes of ``minibatches`` (at most one per trial)."""
        assert isinstance(section, RL2Config)
        trials = section.tasks_per_iteration * section.trials_per_task
        return section.ppo.epochs * min(section.ppo.minibatches, trials)

    def __init__(self, family: TaskFamily[Any], config: TrainConfig, device: torch.device
                 ) -> None:
        super().__init__(family, config, device)
        rl2 = self.settings
        _check_settings(family, rl2, config.policy)
        critic_features = _task_width(family, "rl2.task_critic") if rl2.task_critic else 0
        belief_features = (_task_width(family, "rl2.task_inference_coef")
                           if rl2.task_inference_coef > 0 else 0)
        torch.manual_seed(config.run.seed)
        obs_dim = int(np.prod(family.observation_space.shape))
        spec = RecurrentPolicySpec(
            hidden_size=rl2.hidden_size, cell=rl2.cell, separate_value_gru=rl2.separate_value_gru,
            time_input=rl2.time_input, transition_input=rl2.transition_input,
            critic_features=critic_features, belief_features=belief_features,
            init_std=config.policy.init_std)
        self.policy: RecurrentPolicy = make_recurrent_policy(obs_dim, family.action_space, spec)
        self.learner = RL2PPO(self.policy, self.initial_parameters(), rl2, config.run.seed)
        """The PPO update: the parameters, Adam's state and the shuffling generator."""

    def parameters(self) -> Params:
        return {name: p.detach() for name, p in self.learner.params.items()}

    def load_parameters(self, params: Params) -> None:
        self.learner.load_params(params)

    def state_dict(self) -> dict[str, Tensor]:
        return self.learner.state_dict()

    def load_state_dict(self, tensors: dict[str, Tensor]) -> None:
        self.learner.load_state_dict(tensors)

    def train_iteration(self, sampler: Sampler, tasks: list[Any], fraction_done: float
                        ) -> Iteration:
        rl2 = self.settings
        trials = sampler.sample_trials(on_cpu(self.parameters()), tasks, rl2.trials_per_task,
                                       rl2.episodes_per_trial)
        metrics = self.learner.step(trials, fraction_done)
        nonfinite = bool(metrics.pop("nonfinite"))
        return Iteration(trials.num_env_steps,
                         mean_episode_returns(trials, rl2.episodes_per_trial),
                         {**metrics, **trial_outcomes(trials, rl2.episodes_per_trial)}, nonfinite)

    def make_agent(self, num_envs: int, seed: int = 0) -> Agent:
        """A :class:`~fastadapt.algorithms.rl2.agent.RecurrentAgent` of the current
        parameters."""
        return RecurrentAgent(self.policy, self.parameters(),
                              self.settings.episodes_per_trial * self.horizon, num_envs,
                              self.family.observation_space, self.family.action_space,
                              self.device, seed)

    def default_adaptation_steps(self) -> int:
        """The meta-test's points are a trial's episodes: ``rl2.episodes_per_trial - 1``
        steps."""
        return self.settings.episodes_per_trial - 1

    def meta_test(self, sampler: Sampler, tasks: list[Any], protocol: MetaTestProtocol
                  ) -> MetaTestCurves:
        """``episodes_per_task`` trials of ``adaptation_steps + 1`` episodes on each held-out
        task; point ``k`` is the mean return of the trials' ``k``-th episodes.

        Raises:
            ConfigError: ``eval_episodes_per_task`` is set (a trial has no separately sampled
                adapted policy).
        """
        if protocol.eval_episodes_per_task is not None:
            raise ConfigError("--eval-episodes applies to gradient-adapted runs; an RL² trial "
                              "adapts within its episodes (use --adaptation-steps and "
                              "--episodes)")
        episodes = protocol.adaptation_steps + 1
        trials = sampler.sample_trials(on_cpu(self.parameters()), tasks,
                                       protocol.episodes_per_task, episodes)
        successes = None
        if trials.successes is not None:  # families that report success (Meta-World)
            successes = trials.episode_successes(episodes).mean(dim=1).double()  # [N, K + 1]
        return MetaTestCurves(
            returns=trials.episode_returns(episodes).mean(dim=1).double(),  # [N, K + 1]
            episodes_per_step=1,
            successes=successes,
            unstable_episodes=None if trials.unstable is None else int(trials.unstable.sum()),
            trajectories=self._example_paths(trials, episodes),
        )

    def _example_paths(self, trials: Trials, episodes: int) -> list[dict[str, Any]] | None:
        """Positions in the first and the last episode of the first trial of the first
        tasks."""
        horizon = trials.masks.shape[2] // episodes

        def episode(i: int, which: int) -> Tensor:
            k = (0, episodes - 1)[which]
            steps = slice(k * horizon, (k + 1) * horizon)
            return trials.inputs[i, 0, steps][:int(trials.masks[i, 0, steps].sum())]

        return example_paths(self.family, trials.masks.shape[0], episode)
