"""The agent of the gradient-adapted algorithms (the MAML family, Meta-SGD, the transfer
baselines, and plugins that adapt like MAML, e.g. the Reptile example): an MLP policy whose
parameters each env adapts by inner policy-gradient steps.

Each env starts from the meta-parameters ``theta``; :meth:`GradientAgent.adapt` takes one
inner step on the episodes each env observed since its last step,
``phi_i <- phi_i - alpha * grad L_i(phi_i)``
(:func:`~fastadapt.algorithms.maml.meta_batch.inner_update`, the step of
:meth:`~fastadapt.algorithms.maml.algorithm.GradientAdapted.meta_test`), so ``K`` calls give
the ``K``-th point of the meta-test curve.
"""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from fastadapt.algorithms.agent import Agent, StepLog
from fastadapt.algorithms.base import on_cpu
from fastadapt.algorithms.maml.adapt import expand_to_tasks
from fastadapt.algorithms.maml.config import MAMLConfig
from fastadapt.algorithms.maml.meta_batch import inner_update
from fastadapt.errors import AgentError
from fastadapt.policies.functional import per_task_output
from fastadapt.policies.mlp import Policy
from fastadapt.sampling.rollout import step_actions
from fastadapt.types import Params, Trajectories

__all__ = ["GradientAgent"]


class GradientAgent(Agent):
    """MAML's inner loop, one env at a time in the user's loop.

    Args:
        policy: the MLP policy module.
        theta: the meta-parameters (shared shapes, on ``device``).
        settings: the inner loop's ``gamma`` and ``gae_lambda`` (and the algorithm's other
            MAML settings, unused here).
        inner_lr: the inner step size (Meta-SGD: its learned per-parameter rates).
        num_envs, observation_space, action_space, device, seed: see
            :class:`~fastadapt.algorithms.agent.Agent`.
    """

    adapts_by = "gradient_steps"

    def __init__(self, policy: Policy, theta: Params, settings: MAMLConfig,
                 inner_lr: float | Params, num_envs: int,
                 observation_space: gym.spaces.Space[object],
                 action_space: gym.spaces.Space[object], device: torch.device, seed: int = 0
                 ) -> None:
        super().__init__(num_envs, observation_space, action_space, device, seed)
        self.policy = policy
        self.theta = {name: value.detach().to(device) for name, value in theta.items()}
        self.settings = settings
        self.inner_lr = inner_lr
        self.log = StepLog(num_envs)
        """The steps observed since each env's last inner step."""
        self.steps_taken = np.zeros(num_envs, dtype=np.int64)
        """Inner steps each env has taken since its task began."""
        self.params: Params = {name: value.clone() for name, value
                               in expand_to_tasks(self.theta, num_envs).items()}
        """Each env's current parameters ``[N, ...]`` (all at ``theta`` to begin with)."""
        self._forward: Callable[[Tensor, Tensor], Tensor] | None = None

    def _set_params(self, params: Params) -> None:
        self.params = params
        self._forward = None  # prepared again on the next act

    def _forget(self, mask: np.ndarray) -> None:
        start = expand_to_tasks(self.theta, self.num_envs)
        keep = torch.from_numpy(~mask).to(self.device)
        self._set_params({name: torch.where(keep.view(-1, *[1] * (value.dim() - 1)),
                                            self.params[name], value)
                          for name, value in start.items()})
        self.steps_taken[mask] = 0
        self.log.forget(mask)

    def _end_episodes(self, mask: np.ndarray) -> None:
        self.log.new_episode(mask)

    def _act(self, observations: Tensor, deterministic: bool) -> Tensor:
        obs = observations[:, None]  # [N, 1, O]: one episode per env
        if self.device.type != "cpu" or deterministic:
            out = per_task_output(self.policy, self.params, obs)
            if deterministic:
                return self.policy.mode(out)[:, 0]
            return self.policy.sample(out, self.noise(self.policy.draw_noise)[:, None])[:, 0]
        if self._forward is None:  # the sampler's prepared forward, once per parameters
            self._forward = step_actions(self.policy, on_cpu(self.params))
        return self._forward(obs, self.noise(self.policy.draw_noise)[:, None])[:, 0]

    def _record(self, observations: np.ndarray, actions: np.ndarray, rewards: np.ndarray,
                terminated: np.ndarray, truncated: np.ndarray, next_observations: np.ndarray
                ) -> None:
        self.log.record(observations, actions, rewards, terminated, truncated,
                        next_observations)

    @torch.no_grad()
    def adapt(self) -> None:
        """One inner step for each env that observed steps since its last one (the others
        keep their parameters).

        Raises:
            AgentError: no env observed anything since its last step.
        """
        observed = self.log.steps_per_env() > 0
        if not observed.any():
            raise AgentError("adapt() needs experience: observe() steps first (none since "
                             "the last adapt() or reset())")
        trajectories = self.log.trajectories(self.device)
        envs = torch.from_numpy(np.flatnonzero(observed)).to(self.device)
        chosen = Trajectories(trajectories.observations[envs], trajectories.actions[envs],
                              trajectories.rewards[envs], trajectories.masks[envs])
        _, adapted = inner_update(self.policy, {n: p[envs] for n, p in self.params.items()},
                                  chosen, self.settings, self.inner_lr)
        params = {name: value.clone() for name, value in self.params.items()}
        for name, value in adapted.items():
            params[name][envs] = value
        self._set_params(params)
        self.steps_taken[observed] += 1
        self.log.forget(np.ones(self.num_envs, dtype=bool))
