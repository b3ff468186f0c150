"""RL²'s agent: a recurrent policy that adapts in its memory (Duan et al. 2016).

Each env's hidden state, previous action, reward and episode flag live in a
:class:`~fastadapt.policies.recurrent_memory.TrialMemory`, the class the samplers' trials step
through. :meth:`RecurrentAgent.act` reads the memory and the observation;
:meth:`RecurrentAgent.observe` moves the memory on (the step's reward enters the next input);
an observed ``terminated | truncated`` starts the env's next episode of the trial, and
:meth:`~fastadapt.algorithms.agent.Agent.reset` starts a new trial. :meth:`adapt` does
nothing: the memory adapts at every observed step.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from fastadapt.algorithms.agent import Agent
from fastadapt.policies.recurrent import RecurrentPolicy
from fastadapt.policies.recurrent_memory import TrialMemory
from fastadapt.types import Params

__all__ = ["RecurrentAgent"]


class RecurrentAgent(Agent):
    """RL² in a user's loop.

    Args:
        policy: the recurrent policy module.
        params: its parameters (on ``device``).
        trial_steps: ``L``, the steps of a training trial (``episodes_per_trial x horizon``):
            the policy's ``t / L`` input with ``rl2.time_input``.
        num_envs, observation_space, action_space, device, seed: see
            :class:`~fastadapt.algorithms.agent.Agent`.
    """

    adapts_by = "episodes"
    acts_on_rewards = True

    def __init__(self, policy: RecurrentPolicy, params: Params, trial_steps: int,
                 num_envs: int, observation_space: gym.spaces.Space[Any],
                 action_space: gym.spaces.Space[Any], device: torch.device, seed: int = 0
                 ) -> None:
        super().__init__(num_envs, observation_space, action_space, device, seed)
        self.policy = policy
        self.params = {name: value.detach().to(device) for name, value in params.items()}
        self.trial_steps = trial_steps
        self.memory = TrialMemory(policy, num_envs, device)
        self.steps = torch.zeros(num_envs, device=device)
        """Steps of each env's trial so far."""
        self._alive = torch.ones(num_envs, device=device)
        self._features = (torch.zeros(num_envs, policy.critic_features, device=device)
                          if policy.critic_features else None)  # the value head's; unused
        self._pending: tuple[Tensor, Tensor] | None = None

    def _next_state(self, observations: Tensor) -> tuple[Tensor, Tensor]:
        """The output ``[N, D]`` at ``observations`` and the state after the step."""
        _, unroll = self.memory.step(self.params, observations, self.steps / self.trial_steps,
                                     self._alive, self._features)
        return unroll.out[:, 0], unroll.hidden[:, 0]

    @torch.no_grad()
    def _act(self, observations: Tensor, deterministic: bool) -> Tensor:
        out, hidden = self._next_state(observations)
        self._pending = (observations, hidden)
        if deterministic:
            return self.policy.mode(out)
        return self.policy.sample(out, self.noise(self.policy.draw_noise))

    @torch.no_grad()
    def _record(self, observations: np.ndarray, actions: np.ndarray, rewards: np.ndarray,
                terminated: np.ndarray, truncated: np.ndarray, next_observations: np.ndarray
                ) -> None:
        obs = torch.from_numpy(observations).to(self.device)
        pending = self._pending
        self._pending = None
        if pending is not None and torch.equal(pending[0], obs):
            hidden = pending[1]  # the step act() took
        else:  # a step the agent did not act in (or acted on other observations)
            hidden = self._next_state(obs)[1]
        self.memory.advance(hidden, obs, torch.from_numpy(actions).to(self.device),
                            torch.from_numpy(rewards).to(self.device), self._alive)
        self.steps += 1
        ended = torch.from_numpy(terminated | truncated).to(self.device)
        if bool(ended.any()):
            self.memory.new_episode(ended)

    def _forget(self, mask: np.ndarray) -> None:
        chosen = torch.from_numpy(mask).to(self.device)
        self.memory.forget(chosen)
        self.steps = torch.where(chosen, 0.0, self.steps)
        self._pending = None

    def _end_episodes(self, mask: np.ndarray) -> None:
        self.memory.new_episode(torch.from_numpy(mask).to(self.device))
        self._pending = None

    def adapt(self) -> None:
        """Nothing to do: the memory adapted at every observed step."""
