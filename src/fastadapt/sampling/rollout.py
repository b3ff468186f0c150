"""The one rollout routine every sampler runs, and the per-task random streams it draws from.

Random streams. Call ``c`` (0, 1, 2, ... counted by the sampler) of a sampler seeded ``s``
gives task ``i`` (its index in the ``tasks`` list passed to ``sample``) two numpy generators:

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
remainder loops (:func:`~fastadapt.backends.fast_cpu.split_invariant_`); another policy, run
through ``vmap``, may round a transcendental op differently by an ulp with the batch size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from fastadapt.backends.fast_cpu import SamplingForward, supports_fast_products
from fastadapt.envs.base import TaskFamily
from fastadapt.policies.functional import per_task_output
from fastadapt.sampling.base import EpisodePolicy
from fastadapt.types import Params, Trajectories

ACTION_STREAM, ENV_STREAM = 0, 1
"""Last spawn-key entry of a task's action-noise and env streams."""


def task_generators(
    seed: int, call: int, task_indices: Sequence[int], stream: int
) -> list[np.random.Generator]:
    """One generator per task: ``default_rng(SeedSequence(seed, spawn_key=(call, i, stream)))``.

    Args:
        seed: the sampler's seed (``>= 0``).
        call: the sampler's call counter.
        task_indices: global task indices ``i`` (positions in the batch's task list).
        stream: :data:`ACTION_STREAM` or :data:`ENV_STREAM`.
    """
    return [
        np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(call, i, stream)))
        for i in task_indices
    ]


def step_actions(policy: EpisodePolicy, params: Params) -> Callable[[Tensor, Tensor], Tensor]:
    """``(obs [T, E, O], noise) -> actions`` of per-task ``params``, fixed for a rollout.

    MLP policies run a :class:`~fastadapt.backends.fast_cpu.SamplingForward` prepared once
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
    seed: int,
    call: int,
    first_task: int = 0,
) -> Trajectories:
    """Roll out ``E`` episodes of ``H`` steps for each of ``T`` tasks, all stepped together.

    Args:
        family: the task family (its batched simulator steps every episode at once).
        policy: the policy module, called with ``params``.
        horizon: ``H``.
        params: per-task parameters ``[T, ...]``.
        tasks: the ``T`` tasks.
        episodes_per_task: ``E``.
        seed, call: the sampler's seed and call counter (see the module docstring).
        first_task: global index of ``tasks[0]`` (a worker holding tasks ``j..k`` passes ``j``).

    Returns:
        :class:`Trajectories` ``[T, E, H, ...]``; steps after an episode terminated are masked
        out (their rewards are zero). ``successes`` is filled when the family's batched env
        reports :attr:`~fastadapt.envs.base.BatchedEnv.success`, ``unstable`` when it reports
        :attr:`~fastadapt.envs.base.BatchedEnv.unstable`, ``dense_rewards`` when it reports
        :attr:`~fastadapt.envs.base.BatchedEnv.dense_rewards`, else ``None``; ``terminated``
        and ``final_observations`` always.
    """
    num_tasks, episodes = len(tasks), episodes_per_task
    indices = range(first_task, first_task + num_tasks)
    action_rngs = task_generators(seed, call, indices, ACTION_STREAM)
    noise_per_task = [policy.draw_noise(g, (horizon, episodes)) for g in action_rngs]
    noise = torch.from_numpy(np.stack(noise_per_task, axis=1))  # [H, T, E, ...]
    env = family.make_batched(tasks, episodes, task_generators(seed, call, indices, ENV_STREAM))
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
