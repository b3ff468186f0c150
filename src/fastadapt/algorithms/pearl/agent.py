"""PEARL's agent: act with a latent task variable ``z``, infer it from what was observed
(Rakelly et al. 2019, §4; the reference's ``collect_paths``).

Each env starts a task with ``z`` from the prior ``N(0, I)``, drawn afresh at every episode
end until the agent adapts (the meta-test's exploration episodes). :meth:`PEARLAgent.adapt`
draws ``z ~ q(z | c)`` from the context ``c`` of every transition the env observed since its
task began (:func:`~fastadapt.algorithms.pearl.update.episode_context` and
:func:`~fastadapt.algorithms.pearl.update.posterior_sample`, what
:meth:`~fastadapt.algorithms.pearl.algorithm.PEARL.meta_test` calls); ``z`` stays until the next
:meth:`adapt`. The actor is the tanh-Gaussian policy of ``[s, z]``, ``z`` folded into its first
layer's bias; ``deterministic=True`` takes its mean action (PEARL's ``deterministic_eval``).
"""

from __future__ import annotations

import copy
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from fastadapt.algorithms.agent import Agent, StepLog
from fastadapt.algorithms.pearl.networks import fold_latent
from fastadapt.algorithms.pearl.update import episode_context, posterior_sample
from fastadapt.errors import AgentError
from fastadapt.policies.functional import per_task_output
from fastadapt.policies.squashed import SquashedGaussianPolicy
from fastadapt.types import Params

__all__ = ["PEARLAgent"]


class PEARLAgent(Agent):
    """PEARL in a user's loop.

    Args:
        policy: the actor as a policy of the observation (``z`` folded in per env).
        params: the encoder's and the actor's parameters (``encoder.*``, ``actor.*``).
        latent_dim: ``L``.
        next_obs_in_context: whether context rows hold the next observation.
        num_envs, observation_space, action_space, device, seed: see
            :class:`~fastadapt.algorithms.agent.Agent`.
    """

    adapts_by = "episodes"

    def __init__(self, policy: SquashedGaussianPolicy, params: Params, latent_dim: int,
                 next_obs_in_context: bool, num_envs: int,
                 observation_space: gym.spaces.Space[Any],
                 action_space: gym.spaces.Space[Any], device: torch.device, seed: int = 0
                 ) -> None:
        super().__init__(num_envs, observation_space, action_space, device, seed)
        self.policy = policy if device.type == "cpu" else copy.deepcopy(policy).to(device)
        self.params = {name: value.detach().to(device) for name, value in params.items()}
        self.latent_dim = latent_dim
        self.next_obs_in_context = next_obs_in_context
        self.obs_dim = int(np.prod(self.obs_shape))
        self.log = StepLog(num_envs)
        """Every step each env observed since its task began (its context)."""
        self.inferred = np.zeros(num_envs, dtype=bool)
        """Whether each env's ``z`` comes from a posterior (else from the prior)."""
        self.z = torch.zeros(num_envs, latent_dim, device=device)
        """Each env's latent ``[N, L]``."""
        self._actor: Params | None = None
        self._forget(np.ones(num_envs, dtype=bool))

    def _draw_prior(self, mask: np.ndarray) -> None:
        if not mask.any():  # no draw: the stream depends only on the episodes that end
            return
        chosen = torch.from_numpy(mask).to(self.device)
        prior = torch.randn(self.num_envs, self.latent_dim, generator=self.generator,
                            device=self.device)
        self.z = torch.where(chosen[:, None], prior, self.z)
        self._actor = None

    def _forget(self, mask: np.ndarray) -> None:
        self.log.forget(mask)
        self.inferred[mask] = False
        self._draw_prior(mask)

    def _end_episodes(self, mask: np.ndarray) -> None:
        self.log.new_episode(mask)
        self._draw_prior(mask & ~self.inferred)  # a fresh prior z per exploration episode

    @torch.no_grad()
    def _act(self, observations: Tensor, deterministic: bool) -> Tensor:
        if self._actor is None:
            self._actor = fold_latent(self.params, "actor.", self.z, self.obs_dim)
        out = per_task_output(self.policy, self._actor, observations[:, None])[:, 0]
        if deterministic:
            return self.policy.mode(out)
        return self.policy.sample(out, self.noise(self.policy.draw_noise))

    def _record(self, observations: np.ndarray, actions: np.ndarray, rewards: np.ndarray,
                terminated: np.ndarray, truncated: np.ndarray, next_observations: np.ndarray
                ) -> None:
        self.log.record(observations, actions, rewards, terminated, truncated,
                        next_observations)
        ended = terminated | truncated
        if ended.any():
            self._draw_prior(ended & ~self.inferred)

    @torch.no_grad()
    def adapt(self) -> None:
        """``z ~ q(z | c)`` for each env that observed steps since its task began.

        Raises:
            AgentError: no env observed anything.
        """
        observed = self.log.steps_per_env() > 0
        if not observed.any():
            raise AgentError("adapt() needs experience: observe() steps first (none since "
                             "reset())")
        episodes = self.log.trajectories(self.device)
        context, mask = episode_context(episodes, self.policy.center, self.policy.half_width,
                                        self.next_obs_in_context)
        z = posterior_sample(self.params, context, self.latent_dim, self.generator, mask)
        chosen = torch.from_numpy(observed).to(self.device)
        self.z = torch.where(chosen[:, None], z, self.z)
        self.inferred |= observed
        self._actor = None
