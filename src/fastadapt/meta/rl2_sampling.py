"""RL² trials: ``episodes_per_trial`` consecutive episodes of one task, hidden state kept.

Duan et al. 2016, §2.2: a *trial* is a fixed number ``n`` of episodes of one MDP; the recurrent
hidden state carries over between its episodes and is reset (to zero) between trials. The
sampler steps all ``[T tasks, B trials]`` at once on the family's
:class:`~fastadapt.envs.base.BatchedEnv` (its episode axis holds the trials), resetting the env
(not the recurrent state) at every episode boundary. Shapes: ``L = n * H`` steps per trial.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from fastadapt.envs.base import TaskFamily
from fastadapt.meta.oracle import task_features
from fastadapt.policies.recurrent import RecurrentPolicy
from fastadapt.types import Params


class Trials(NamedTuple):
    """``T`` tasks x ``B`` trials of ``L = n * H`` steps, as the sampling policy saw them.

    Attributes:
        inputs: policy inputs ``[T, B, L, I]`` (observation, previous action, previous reward,
            new-episode flag, t / L with ``time_input``, the transition columns with
            ``transition_input``), see :meth:`RecurrentPolicy.encode`.
        actions: ``[T, B, L, A]`` float or ``[T, B, L]`` int64.
        rewards: ``[T, B, L]``, zero where masked.
        masks: ``[T, B, L]``, 0.0 after an episode terminated until the next episode starts.
        log_probs: ``log pi(a|h)`` of the sampling parameters ``[T, B, L]``.
        values: ``V(h)`` of the sampling parameters ``[T, B, L]``.
        hidden: recurrent state after each step ``[T, B, L, state_size]`` (see
            :attr:`~fastadapt.policies.recurrent.CategoricalRecurrentPolicy.state_size`).
        successes: ``[T, B, L]`` float, 1.0 where the task was solved at that step (0.0 where
            masked), for families that report success (Meta-World); else ``None``.
        unstable: ``[T, B, n]`` float, 1.0 where the episode was ended by a physics blow-up
            (:attr:`~fastadapt.envs.base.BatchedEnv.unstable`), for MuJoCo families; else
            ``None``.
        expected_rewards: ``[T, B, L]`` float, ``E[r | state, action]`` of each step under its
            task (0.0 where masked), for families that report it
            (:attr:`~fastadapt.envs.base.BatchedEnv.expected_rewards`: bandits, tabular
            MDPs); else ``None``.
        task_features: ``[T, B, F]``, each trial's task features
            (:func:`~fastadapt.meta.oracle.task_features`), when the policy's value head reads
            them or its belief head predicts them (``policy.reads_task_features``); else
            ``None``.
    """

    inputs: Tensor
    actions: Tensor
    rewards: Tensor
    masks: Tensor
    log_probs: Tensor
    values: Tensor
    hidden: Tensor
    successes: Tensor | None = None
    unstable: Tensor | None = None
    expected_rewards: Tensor | None = None
    task_features: Tensor | None = None

    def _by_episode(self, per_step: Tensor, episodes_per_trial: int) -> Tensor:
        """``[T, B, L]`` masked and viewed as ``[T, B, n, H]``."""
        num_tasks, num_trials, length = per_step.shape
        return (per_step * self.masks).view(
            num_tasks, num_trials, episodes_per_trial, length // episodes_per_trial
        )

    def episode_returns(self, episodes_per_trial: int) -> Tensor:
        """Undiscounted return of each episode of each trial, ``[T, B, n]``."""
        return self._by_episode(self.rewards, episodes_per_trial).sum(-1)

    def episode_successes(self, episodes_per_trial: int) -> Tensor:
        """Whether each episode of each trial succeeded (at any of its unmasked steps,
        Meta-World's definition), ``[T, B, n]`` float 0/1.

        Raises:
            ValueError: the family does not report success (``successes`` is ``None``).
        """
        if self.successes is None:
            raise ValueError("these trials carry no successes (the family reports none)")
        return self._by_episode(self.successes, episodes_per_trial).amax(-1)

    @property
    def num_env_steps(self) -> int:
        """Environment steps actually taken (masked steps excluded)."""
        return int(self.masks.sum().item())


class TrialSampler:
    """Samples RL² trials with the family's batched simulator.

    Args:
        family: the task family.
        policy: the recurrent policy (called with the parameters given to :meth:`sample`).
        horizon: steps per episode ``H``.
        episodes_per_trial: ``n``.
        seed: seeds the env generator and the action generator (both are public attributes,
            so a checkpoint can store and restore them).
    """

    def __init__(self, family: TaskFamily[Any], policy: RecurrentPolicy, horizon: int,
                 episodes_per_trial: int, seed: int) -> None:
        self.family, self.policy = family, policy
        self.horizon, self.episodes_per_trial = horizon, episodes_per_trial
        self.env_rng = np.random.default_rng(seed)
        self.generator = torch.Generator().manual_seed(seed)

    @torch.no_grad()
    def sample(self, params: Params, tasks: list[Any], trials_per_task: int) -> Trials:
        """Roll out ``trials_per_task`` trials of each task with shared ``params``.

        Returns:
            :class:`Trials` ``[T, B, L, ...]`` with ``B = trials_per_task``; ``successes`` is
            filled when the family's batched env reports
            :attr:`~fastadapt.envs.base.BatchedEnv.success`, else ``None``; ``unstable`` when
            it reports :attr:`~fastadapt.envs.base.BatchedEnv.unstable`,
            ``expected_rewards`` when it reports
            :attr:`~fastadapt.envs.base.BatchedEnv.expected_rewards`, and ``task_features``
            when the policy's value head reads them or its belief head predicts them
            (``policy.reads_task_features``), else ``None``.
        """
        policy, horizon = self.policy, self.horizon
        env = self.family.make_batched(tasks, trials_per_task, self.env_rng)
        shape = (len(tasks), trials_per_task)
        n = shape[0] * shape[1]
        hidden = policy.initial_hidden(n)
        prev_actions = torch.zeros(n, policy.action_features)
        prev_rewards, first = torch.zeros(n), torch.zeros(n)
        prev_obs = torch.zeros(n, policy.obs_dim)
        features = self._task_features(tasks, trials_per_task)
        steps: list[tuple[Tensor, ...]] = []
        successes: list[Tensor] | None = [] if env.success is not None else None
        unstable: list[Tensor] = []  # [T, B] per episode, read before the next reset clears it
        expected: list[Tensor] = []  # [T * B] per step, where the env reports expected rewards
        length = self.episodes_per_trial * horizon
        for episode in range(self.episodes_per_trial):
            obs = torch.from_numpy(env.reset()).reshape(n, -1)
            alive = torch.ones(n)
            for step in range(horizon):
                progress = (episode * horizon + step) / length
                inputs = policy.encode(obs, prev_actions, prev_rewards, first, progress,
                                       prev_obs)
                unroll = policy.unroll(params, inputs[:, None], alive[:, None], hidden,
                                       task_features=features)
                hidden, out = unroll.hidden[:, 0], unroll.out[:, 0]
                actions = policy.sample(out, self.generator)
                env_actions = actions.reshape(*shape, *actions.shape[1:]).numpy()
                next_obs, reward, terminated = env.step(env_actions)
                rewards = torch.from_numpy(reward.astype(np.float32)).reshape(n) * alive
                if successes is not None and env.success is not None:
                    successes.append(torch.from_numpy(env.success).reshape(n).float() * alive)
                if env.expected_rewards is not None:
                    expected.append(
                        torch.from_numpy(env.expected_rewards).reshape(n).float() * alive)
                steps.append((inputs, actions, rewards, alive, policy.log_prob(out, actions),
                              unroll.values[:, 0], hidden))
                kept = alive[:, None] > 0
                prev_actions = torch.where(kept, policy.action_encoding(actions), prev_actions)
                prev_rewards = torch.where(alive > 0, rewards, prev_rewards)
                prev_obs = torch.where(kept, obs, prev_obs)
                first = torch.where(alive > 0, 0.0, first)
                alive = alive * torch.from_numpy(~terminated).reshape(n).float()
                obs = torch.from_numpy(next_obs).reshape(n, -1)
            if env.unstable is not None:
                unstable.append(torch.from_numpy(env.unstable.copy()).float())
            first = torch.ones(n)
        columns = [torch.stack(column, dim=1) for column in zip(*steps, strict=True)]
        trials = Trials(*(c.reshape(*shape, *c.shape[1:]) for c in columns))
        if successes is not None:
            trials = trials._replace(
                successes=torch.stack(successes, dim=1).reshape(*shape, -1))
        if unstable:
            trials = trials._replace(unstable=torch.stack(unstable, dim=-1))
        if expected:
            trials = trials._replace(
                expected_rewards=torch.stack(expected, dim=1).reshape(*shape, -1))
        if features is not None:
            trials = trials._replace(task_features=features.reshape(*shape, -1))
        return trials

    def _task_features(self, tasks: list[Any], trials_per_task: int) -> Tensor | None:
        """Each trial's task features ``[T * B, F]`` when an update needs them
        (``policy.reads_task_features``), else ``None``."""
        if not self.policy.reads_task_features:
            return None
        per_task = np.stack([task_features(self.family, task) for task in tasks])  # [T, F]
        return torch.from_numpy(per_task).repeat_interleave(trials_per_task, dim=0)

    def close(self) -> None:
        """Nothing to release; present for the sampler interface."""

    def __enter__(self) -> TrialSampler:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
