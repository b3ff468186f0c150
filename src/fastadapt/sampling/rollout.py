"""The one rollout routine every sampler runs, and the per-task random streams it draws from.

Random streams. Call ``c`` (0, 1, 2, ... counted by the sampler) of a sampler seeded ``s``
gives task ``i`` (its index in the ``tasks`` list passed to ``sample``) two numpy generators
(a rollout gets ``s``, ``c`` and the index of its first task as one :class:`StreamKey`):

- actions: ``default_rng(SeedSequence(s, spawn_key=(c, i, 0)))``; all the call's action noise
  of the task, ``[H, E, A]`` standard normals (Gaussian) or ``[H, E]`` uniforms (categorical,
  inverse CDF), is drawn up front in one op;
- env: ``default_rng(SeedSequence(s, spawn_key=(c, i, 1)))``, handed to the task family's
  batched simulator as that task's own stream.

A task's episodes therefore depend only on ``(s, c, i)``, its parameters and the task itself,
never on which other tasks are stepped with it: the in-process sampler and worker processes or
Ray actors holding any split of the tasks return the same batch, bit for bit, and a sampler's
whole random state is the pair ``(s, c)`` (what a checkpoint stores). Bit for bit holds for
the MLP policies, whose prepared step keeps its ``exp`` and ``sigmoid`` off ATen's scalar
remainder loops (:func:`~fastadapt.backends.sampling_forward.split_invariant_`); another policy, run
through ``vmap``, may round a transcendental op differently by an ulp with the batch size.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from fastadapt.backends.products import supports_fast_products
from fastadapt.backends.sampling_forward import SamplingForward
from fastadapt.envs.base import TaskFamily
from fastadapt.policies.functional import per_task_output
from fastadapt.sampling.base import EpisodePolicy
from fastadapt.types import Params, Trajectories

ACTION_STREAM, ENV_STREAM = 0, 1
"""Last spawn-key entry of a task's action-noise and env streams."""


class StreamKey(NamedTuple):
    """What keys the random streams of the tasks one rollout steps (see the module docstring).

    Attributes:
        seed: the sampler's seed ``s`` (``>= 0``).
        call: the sampler's call counter ``c``.
        first_task: global index ``i`` of the rollout's first task (a worker holding tasks
            ``j..k`` of the call passes ``j``).
    """

    seed: int
    call: int
    first_task: int = 0


def task_generators(key: StreamKey, num_tasks: int, stream: int) -> list[np.random.Generator]:
    """One generator per task: ``default_rng(SeedSequence(s, spawn_key=(c, i, stream)))`` for
    the ``num_tasks`` global task indices ``i`` from ``key.first_task`` on.

    Args:
        key: the seed ``s``, call ``c`` and first task index.
        num_tasks: how many tasks, in order.
        stream: :data:`ACTION_STREAM` or :data:`ENV_STREAM`.
    """
    first = key.first_task
    return [
        np.random.default_rng(np.random.SeedSequence(key.seed, spawn_key=(key.call, i, stream)))
        for i in range(first, first + num_tasks)
    ]


def step_actions(policy: EpisodePolicy, params: Params) -> Callable[[Tensor, Tensor], Tensor]:
    """``(obs [T, E, O], noise) -> actions`` of per-task ``params``, fixed for a rollout.

    MLP policies run a :class:`~fastadapt.backends.sampling_forward.SamplingForward` prepared once
    (Gaussian: ``mu + sigma * noise`` in one op); other policies ``vmap`` the module and
    ``policy.sample``.
    """
    if not supports_fast_products(policy):
        return lambda obs, noise: policy.sample(per_task_output(policy, params, obs), noise)
    forward = SamplingForward(policy, params)
    if forward.std is not None:
        return forward.gaussian_actions
    return lambda obs, noise: policy.sample(forward(obs), noise)


@torch.no_grad()
def rollout(
    family: TaskFamily[Any],
    policy: EpisodePolicy,
    horizon: int,
    params: Params,
    tasks: list[Any],
    episodes_per_task: int,
    key: StreamKey,
) -> Trajectories:
    """Roll out ``E`` episodes of ``H`` steps for each of ``T`` tasks, all stepped together.

    Args:
        family: the task family (its batched simulator steps every episode at once).
        policy: the policy module, called with ``params``.
        horizon: ``H``.
        params: per-task parameters ``[T, ...]``.
        tasks: the ``T`` tasks.
        episodes_per_task: ``E``.
        key: the sampler's seed, its call counter and the global index of ``tasks[0]``
            (see the module docstring).

    Returns:
        :class:`Trajectories` ``[T, E, H, ...]``; steps after an episode terminated are masked
        out (their rewards are zero). ``successes`` is filled when the family's batched env
        reports :attr:`~fastadapt.envs.base.BatchedEnv.success`, ``unstable`` when it reports
        :attr:`~fastadapt.envs.base.BatchedEnv.unstable`, ``dense_rewards`` when it reports
        :attr:`~fastadapt.envs.base.BatchedEnv.dense_rewards`, else ``None``; ``terminated``
        and ``final_observations`` always.
    """
    num_tasks, episodes = len(tasks), episodes_per_task
    action_rngs = task_generators(key, num_tasks, ACTION_STREAM)
    noise_per_task = [policy.draw_noise(g, (horizon, episodes)) for g in action_rngs]
    noise = torch.from_numpy(np.stack(noise_per_task, axis=1))  # [H, T, E, ...]
    env = family.make_batched(tasks, episodes, task_generators(key, num_tasks, ENV_STREAM))
    first_obs = env.reset()
    # step-major numpy buffers while stepping (a numpy slice copy per step is cheaper than a
    # torch indexed write); masks and masked rewards are computed once at the end
    steps = (horizon, num_tasks, episodes)
    observations = np.empty((*steps, first_obs.shape[-1]), dtype=np.float32)
    observations[0] = first_obs
    rewards = np.empty(steps, dtype=np.float32)
    terminated = np.empty(steps, dtype=bool)
    successes = np.empty(steps, dtype=bool) if env.success is not None else None
    dense = np.empty(steps, dtype=np.float32) if env.dense_rewards is not None else None
    actions_t: list[Tensor] = []
    act = step_actions(policy, params)
    for t in range(horizon):
        actions = act(torch.from_numpy(observations[t]), noise[t])
        next_obs, rewards[t], terminated[t] = env.step(actions.numpy())
        if t + 1 < horizon:
            observations[t + 1] = next_obs
        else:
            final_obs = torch.from_numpy(np.array(next_obs, dtype=np.float32))  # [T, E, O]
        if successes is not None and env.success is not None:
            successes[t] = env.success
        if dense is not None and env.dense_rewards is not None:
            dense[t] = env.dense_rewards
        actions_t.append(actions)
    alive = np.ones(steps, dtype=np.float32)  # step t counts if no earlier step terminated
    alive[1:] = np.cumprod(~terminated[:-1], axis=0)
    success_values = None if successes is None else _task_major(successes * alive)
    unstable = None if env.unstable is None else torch.from_numpy(env.unstable.copy()).float()
    return Trajectories(_task_major(observations), torch.stack(actions_t, dim=2),
                        _task_major(rewards * alive), _task_major(alive), success_values,
                        unstable, _task_major(terminated * alive), final_obs,
                        None if dense is None else _task_major(dense * alive))


def _task_major(steps: np.ndarray) -> Tensor:
    """``[H, T, E, ...]`` numpy -> contiguous ``[T, E, H, ...]`` float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(steps, 0, 2), dtype=np.float32))
