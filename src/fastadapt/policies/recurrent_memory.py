"""What a recurrent policy carries from one step of a trial to the next: :class:`TrialMemory`.

RL² (Duan et al. 2016, §2.2) feeds the policy ``x_t = [s_t, a_{t-1}, r_{t-1}, d_t]`` and keeps
its hidden state across the episodes of a trial. The samplers' trials
(:func:`~fastadapt.sampling.trials.trial_rollout`) and the RL² agent
(:class:`~fastadapt.algorithms.rl2.agent.RecurrentAgent`) step the policy through this one class,
so a user's loop and the meta-test feed the memory the same way.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fastadapt.policies.recurrent import RecurrentPolicy, Unroll
from fastadapt.types import Params

__all__ = ["TrialMemory"]


class TrialMemory:
    """The hidden state and the previous step's action, reward and observation of ``N``
    sequences, and whether each is on an episode's first step.

    Args:
        policy: the recurrent policy.
        num_sequences: ``N``.
        device: where the tensors live.
    """

    def __init__(self, policy: RecurrentPolicy, num_sequences: int,
                 device: torch.device | None = None) -> None:
        self.policy = policy
        n = num_sequences
        self.hidden = policy.initial_hidden(n, device)
        """``[N, state_size]``."""
        self.prev_actions = torch.zeros(n, policy.action_features, device=device)
        """Encoded previous actions ``[N, action_features]`` (zeros at a trial's start)."""
        self.prev_rewards = torch.zeros(n, device=device)
        self.first = torch.zeros(n, device=device)
        """1.0 on the first step of an episode other than the trial's first."""
        self.prev_obs = torch.zeros(n, policy.obs_dim, device=device)

    def step(self, params: Params, obs: Tensor, progress: float | Tensor, alive: Tensor,
             task_features: Tensor | None = None) -> tuple[Tensor, Unroll]:
        """The policy's input and output at ``obs [N, O]`` (the state is not changed: see
        :meth:`advance`).

        Args:
            progress: ``t / L`` (see :meth:`RecurrentPolicy.encode`).
            alive: ``[N]``, 0.0 where the sequence's episode has ended (the state is carried
                over there).
            task_features: ``[N, F]`` for a policy whose value head reads them.

        Returns:
            The inputs ``[N, I]`` and the one-step :class:`~fastadapt.policies.recurrent.Unroll`
            (``hidden[:, 0]`` is the next state).
        """
        inputs = self.policy.encode(obs, self.prev_actions, self.prev_rewards, self.first,
                                    progress, self.prev_obs)
        unroll = self.policy.unroll(params, inputs[:, None], alive[:, None], self.hidden,
                                    task_features=task_features)
        return inputs, unroll

    def advance(self, hidden: Tensor, obs: Tensor, actions: Tensor, rewards: Tensor,
                alive: Tensor) -> None:
        """Move on after a step: the new state ``hidden``, and, where ``alive``, the action
        taken at ``obs`` and its reward become the previous ones and the episode's first step
        is over."""
        self.hidden = hidden
        kept = alive[:, None] > 0
        self.prev_actions = torch.where(kept, self.policy.action_encoding(actions),
                                        self.prev_actions)
        self.prev_rewards = torch.where(alive > 0, rewards, self.prev_rewards)
        self.prev_obs = torch.where(kept, obs, self.prev_obs)
        self.first = torch.where(alive > 0, 0.0, self.first)

    def new_episode(self, mask: Tensor | None = None) -> None:
        """The masked sequences (``[N]`` bool; default all) start a new episode of their
        trial."""
        self.first = (torch.ones_like(self.first) if mask is None
                      else torch.where(mask, 1.0, self.first))

    def forget(self, mask: Tensor) -> None:
        """The masked sequences (``[N]`` bool) start a new trial: everything back to zero."""
        column = mask[:, None]
        self.hidden = torch.where(column, 0.0, self.hidden)
        self.prev_actions = torch.where(column, 0.0, self.prev_actions)
        self.prev_rewards = torch.where(mask, 0.0, self.prev_rewards)
        self.first = torch.where(mask, 0.0, self.first)
        self.prev_obs = torch.where(column, 0.0, self.prev_obs)
