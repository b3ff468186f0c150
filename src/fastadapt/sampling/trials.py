"""Trials of a recurrent policy: ``n`` consecutive episodes of one task, hidden state kept.

Duan et al. 2016, §2.2: a *trial* is a fixed number ``n`` of episodes of one MDP; the recurrent
hidden state carries over between its episodes and is reset (to zero) between trials. The
rollout steps all ``[T tasks, B trials]`` at once on the family's
:class:`~fastadapt.envs.base.BatchedEnv` (its episode axis holds the trials), resetting the env
(not the recurrent state) at every episode boundary. Shapes: ``L = n * H`` steps per trial.

Randomness comes from the per-task streams of :mod:`fastadapt.sampling.rollout`: call ``c`` of
a sampler seeded ``s`` draws task ``i``'s action noise (``[L, B, A]`` normals or ``[L, B]``
uniforms, up front) and env randomness from streams keyed ``(s, c, i)``, so worker processes and
Ray actors holding any split of the tasks return the trials of the in-process sampler, up to
float32 rounding: the recurrent cell's matrix products round each row differently with the
number of rows and threads (the MLP sampler's prepared forward avoids that; a recurrent one
does not yet). A given sampler kind and worker count gives the same bits every time.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from fastadapt.envs.base import TaskFamily
from fastadapt.envs.wrappers import task_features
from fastadapt.policies.recurrent import RecurrentPolicy
from fastadapt.policies.recurrent_memory import TrialMemory
from fastadapt.sampling.rollout import ACTION_STREAM, ENV_STREAM, StreamKey, task_generators
from fastadapt.types import Params, Trials


def _task_features(family: TaskFamily[Any], policy: RecurrentPolicy, tasks: list[Any],
                   trials_per_task: int) -> Tensor | None:
    """Each trial's task features ``[T * B, F]`` when an update needs them
    (``policy.reads_task_features``), else ``None``."""
    if not policy.reads_task_features:
        return None
    per_task = np.stack([task_features(family, task) for task in tasks])  # [T, F]
    return torch.from_numpy(per_task).repeat_interleave(trials_per_task, dim=0)


@torch.no_grad()
def trial_rollout(
    family: TaskFamily[Any],
    policy: RecurrentPolicy,
    horizon: int,
    params: Params,
    tasks: list[Any],
    trials_per_task: int,
    episodes_per_trial: int,
    key: StreamKey,
) -> Trials:
    """Roll out ``B`` trials of ``n`` episodes of ``H`` steps for each of ``T`` tasks.

    Args:
        family: the task family.
        policy: the recurrent policy, called with ``params``.
        horizon: ``H``.
        params: shared parameters (the module's shapes).
        tasks: the ``T`` tasks.
        trials_per_task: ``B``.
        episodes_per_trial: ``n``.
        key: the sampler's seed, its call counter and the global index of ``tasks[0]``
            (see the module docstring).

    Returns:
        :class:`~fastadapt.types.Trials` ``[T, B, L, ...]``; ``successes`` is filled when the
        family's batched env reports :attr:`~fastadapt.envs.base.BatchedEnv.success`,
        ``unstable`` when it reports :attr:`~fastadapt.envs.base.BatchedEnv.unstable`,
        ``expected_rewards`` when it reports
        :attr:`~fastadapt.envs.base.BatchedEnv.expected_rewards`, and ``task_features`` when
        the policy's value head reads them or its belief head predicts them
        (``policy.reads_task_features``), else ``None``.
    """
    shape = (len(tasks), trials_per_task)
    n = shape[0] * shape[1]
    length = episodes_per_trial * horizon
    noise_per_task = [policy.draw_noise(g, (length, trials_per_task))
                      for g in task_generators(key, len(tasks), ACTION_STREAM)]
    noise = torch.from_numpy(np.stack(noise_per_task, axis=1))  # [L, T, B, ...]
    env = family.make_batched(tasks, trials_per_task,
                              task_generators(key, len(tasks), ENV_STREAM))
    memory = TrialMemory(policy, n)
    features = _task_features(family, policy, tasks, trials_per_task)
    steps: list[tuple[Tensor, ...]] = []
    successes: list[Tensor] | None = [] if env.success is not None else None
    unstable: list[Tensor] = []  # [T, B] per episode, read before the next reset clears it
    expected: list[Tensor] = []  # [T * B] per step, where the env reports expected rewards
    for episode in range(episodes_per_trial):
        obs = torch.from_numpy(env.reset()).reshape(n, -1)
        alive = torch.ones(n)
        for step in range(horizon):
            t = episode * horizon + step
            inputs, unroll = memory.step(params, obs, t / length, alive, features)
            hidden, out = unroll.hidden[:, 0], unroll.out[:, 0]
            actions = policy.sample(out, noise[t].reshape(n, *noise.shape[3:]))
            env_actions = actions.reshape(*shape, *actions.shape[1:]).numpy()
            next_obs, reward, terminated = env.step(env_actions)
            rewards = torch.from_numpy(reward.astype(np.float32)).reshape(n) * alive
            if successes is not None and env.success is not None:
                successes.append(torch.from_numpy(env.success).reshape(n).float() * alive)
            if env.expected_rewards is not None:
                expected.append(torch.from_numpy(env.expected_rewards).reshape(n).float() * alive)
            steps.append((inputs, actions, rewards, alive, policy.log_prob(out, actions),
                          unroll.values[:, 0], hidden))
            memory.advance(hidden, obs, actions, rewards, alive)
            alive = alive * torch.from_numpy(~terminated).reshape(n).float()
            obs = torch.from_numpy(next_obs).reshape(n, -1)
        if env.unstable is not None:
            unstable.append(torch.from_numpy(env.unstable.copy()).float())
        memory.new_episode()
    columns = [torch.stack(column, dim=1) for column in zip(*steps, strict=True)]
    trials = Trials(*(c.reshape(*shape, *c.shape[1:]) for c in columns))
    if successes is not None:
        trials = trials._replace(successes=torch.stack(successes, dim=1).reshape(*shape, -1))
    if unstable:
        trials = trials._replace(unstable=torch.stack(unstable, dim=-1))
    if expected:
        trials = trials._replace(
            expected_rewards=torch.stack(expected, dim=1).reshape(*shape, -1))
    if features is not None:
        trials = trials._replace(task_features=features.reshape(*shape, -1))
    return trials
