"""A fastadapt :class:`~fastadapt.algorithms.agent.Agent` as Meta-World 3.x's
``MetaLearningAgent`` (``metaworld.evaluation``), so that Meta-World's own
``metalearning_evaluation`` scores it:

.. code-block:: python

    import gymnasium as gym
    import metaworld
    from metaworld.evaluation import metalearning_evaluation

    agent = fastadapt.load_agent("runs/reach", num_envs=20)
    envs = gym.make_vec("Meta-World/ML1-test", env_name="reach-v3", seed=0,
                        total_tasks_per_cls=40, meta_batch_size=20,
                        recurrent_info_in_obs=agent.acts_on_rewards)
    success_rate, mean_return, per_task = metalearning_evaluation(
        MetaWorldAgent(agent, recurrent_info_in_obs=agent.acts_on_rewards), envs)

The protocol's calls map onto the agent's:

- ``init()``: :meth:`Agent.reset` (new tasks: forget all adaptation);
- ``adapt_action(obs)``: :meth:`Agent.act` (exploring), no auxiliary outputs;
- ``step(timestep)``: :meth:`Agent.observe`. Meta-World's ``Timestep`` holds the observation
  the action was taken at but not the one it led to, so the step is kept pending and observed
  at the next ``adapt_action`` with that call's observations as ``next_observations``. Where
  the step ended its env's episode, gymnasium's ``SAME_STEP`` autoreset has already replaced
  the next observation by the next episode's first one, and Meta-World passes no
  ``final_obs``: the step's own observation stands in. Only PEARL with
  ``pearl.next_obs_in_context`` reads ``next_observations`` of an ending step (one context
  row per episode); the MAML family bootstraps nothing at an episode's end; RL² reads none;
- ``adapt()``: observes the pending step (own observation standing in for the next one),
  closes unfinished episodes (Meta-World resets its envs after ``adapt``), then
  :meth:`Agent.adapt`;
- ``eval_action(obs)``: :meth:`Agent.act` with ``deterministic=True``;
- ``reset(env_mask)``: :meth:`Agent.new_episode` (Meta-World calls it where an evaluation
  episode ended, and for every env when its evaluation starts).

**Agents that act on rewards (RL²).** Their memory must observe every step, also while they
are evaluated, where Meta-World reports nothing but the next observation. Make the envs with
``recurrent_info_in_obs=True``: each observation then ends with the previous action, the
previous reward (divided by 10 with ``normalize_reward_in_recurrent_info``, Meta-World's
default) and the previous done flag (``39 + 4 + 1 + 1`` columns). :class:`MetaWorldAgent`
strips those columns before the agent sees an observation, and at each ``eval_action`` first
observes the previous evaluation step: its observation and action, its reward from the new
observation's reward column (times 10 if normalized), ending its episode where ``reset`` was
called in between (as ``truncated``: Meta-World does not say which). The last reward of each
evaluation episode is lost: ``SAME_STEP`` autoreset replaces that observation by the next
episode's first one, whose reward column is 0, so the memory reads 0 for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import numpy.typing as npt

from fastadapt.algorithms.agent import Agent
from fastadapt.errors import AgentError

if TYPE_CHECKING:
    from metaworld.evaluation import Timestep

__all__ = ["MetaWorldAgent"]

REWARD_SCALE = 10.0
"""What ``normalize_reward_in_recurrent_info`` divides the observed reward column by."""


class _Step(NamedTuple):
    """A step of every env, observed once its next observations are known (``[N, ...]``)."""

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray


class MetaWorldAgent:
    """``agent`` behind Meta-World's ``MetaLearningAgent`` protocol (see the module docstring).

    Args:
        agent: a fastadapt agent acting in as many envs as the vector env has (``N``).
        recurrent_info_in_obs: the envs were made with ``recurrent_info_in_obs=True``: their
            observations end with the previous action, reward and done flag.
        normalized_reward_in_obs: that reward column is the reward divided by 10
            (``normalize_reward_in_recurrent_info=True``, Meta-World's default).

    Raises:
        AgentError: ``agent`` acts on rewards (RL²) and ``recurrent_info_in_obs`` is False.
    """

    def __init__(self, agent: Agent, recurrent_info_in_obs: bool = False,
                 normalized_reward_in_obs: bool = True) -> None:
        if agent.acts_on_rewards and not recurrent_info_in_obs:
            raise AgentError(
                f"{type(agent).__name__} acts on the rewards of every step, also while "
                "evaluated: make the Meta-World envs with recurrent_info_in_obs=True and pass "
                "MetaWorldAgent(agent, recurrent_info_in_obs=True)")
        self.agent = agent
        self.recurrent_info_in_obs = recurrent_info_in_obs
        self.reward_scale = REWARD_SCALE if normalized_reward_in_obs else 1.0
        self.obs_dim = int(np.prod(agent.obs_shape))
        self.action_dim = int(np.prod(agent.action_space.shape or ()))
        self._pending: _Step | None = None
        """The last adaptation step, observed once the next observations come."""
        self._ended = np.zeros(agent.num_envs, dtype=bool)
        """Envs whose last observed step ended their episode."""
        self._eval_previous: tuple[np.ndarray, np.ndarray] | None = None
        """With recurrent info: the last evaluation step's observations and actions."""
        self._eval_reset = np.zeros(agent.num_envs, dtype=bool)
        """With recurrent info: envs reset since the last evaluation step."""

    # ------------------------------------------------------------------ the protocol

    def init(self) -> None:
        """New tasks: the agent forgets all adaptation."""
        self.agent.reset()
        self._pending, self._eval_previous = None, None
        self._ended[:] = False
        self._eval_reset[:] = False

    def adapt_action(self, observations: npt.NDArray[np.float64]
                     ) -> tuple[npt.NDArray[np.float64], dict[str, npt.NDArray[Any]]]:
        """Exploring actions ``[N, A]`` at ``observations`` (after observing the pending step
        with them as its next observations), and no auxiliary outputs.

        Raises:
            AgentError: observations of the wrong shape.
        """
        obs, _ = self._split(observations)
        self._observe_pending(obs)
        actions = self.agent.act(obs)
        return actions.astype(np.float64), {}

    def step(self, timestep: Timestep) -> None:
        """Keep an adaptation step until its next observations come (see the module
        docstring)."""
        self._observe_pending(None)  # two steps without an action in between
        obs, _ = self._split(timestep.observation)
        self._pending = _Step(obs, np.asarray(timestep.action), np.asarray(timestep.reward),
                              np.asarray(timestep.terminated, dtype=bool),
                              np.asarray(timestep.truncated, dtype=bool))

    def adapt(self) -> None:
        """Observe the pending step, close unfinished episodes, and adapt.

        Raises:
            AgentError: nothing was observed since ``init`` (algorithms that adapt on what
                they observed).
        """
        self._observe_pending(None)
        if not self._ended.all():  # Meta-World resets its envs after adapt()
            self.agent.new_episode(~self._ended)
            self._ended[:] = True
        self._eval_previous = None
        self.agent.adapt()

    def eval_action(self, observations: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """The most likely actions ``[N, A]`` at ``observations``; with recurrent info, after
        observing the previous evaluation step (see the module docstring).

        Raises:
            AgentError: observations of the wrong shape.
        """
        obs, info = self._split(observations)
        if info is not None:
            if self._eval_previous is not None:
                previous_obs, previous_actions = self._eval_previous
                ended = self._eval_reset.copy()
                rewards = info[:, self.action_dim] * self.reward_scale
                next_obs = np.where(ended[:, None], previous_obs, obs)
                self.agent.observe(previous_obs, previous_actions, rewards,
                                   np.zeros_like(ended), ended, next_obs)
            self._eval_reset[:] = False
        actions = self.agent.act(obs, deterministic=True)
        if info is not None:
            self._eval_previous = (obs, actions)
        return actions.astype(np.float64)

    def reset(self, env_mask: npt.NDArray[np.bool_]) -> None:
        """The masked envs start a new episode (their last one ended, or they were reset)."""
        mask = np.asarray(env_mask, dtype=bool)
        if self._eval_previous is not None:  # ends the step observed at the next eval_action
            self._eval_reset |= mask
            return
        self._observe_pending(None)
        if mask.any():
            self.agent.new_episode(mask)
            self._ended |= mask

    # ------------------------------------------------------------------ helpers

    def _split(self, observations: npt.NDArray[np.float64]
               ) -> tuple[np.ndarray, np.ndarray | None]:
        """The agent's observations ``[N, O]`` and, with recurrent info, the extra columns
        ``[N, A + 2]`` (previous action, reward, done).

        Raises:
            AgentError: not ``[N, O]`` (``[N, O + A + 2]`` with recurrent info).
        """
        array = np.asarray(observations)
        extra = self.action_dim + 2 if self.recurrent_info_in_obs else 0
        width = self.obs_dim + extra
        if array.ndim != 2 or array.shape[1] != width:
            with_info = (f" + {self.action_dim} + 1 + 1 (recurrent_info_in_obs)"
                         if extra else "")
            raise AgentError(f"Meta-World observations have shape {array.shape}; this agent "
                             f"reads [{self.agent.num_envs}, {self.obs_dim}{with_info}]")
        if not extra:
            return array, None
        return array[:, :self.obs_dim], array[:, self.obs_dim:]

    def _observe_pending(self, next_observations: np.ndarray | None) -> None:
        """Observe the pending step: its next observations are ``next_observations`` where
        its episode went on, its own observations elsewhere (and everywhere if ``None``)."""
        step = self._pending
        if step is None:
            return
        self._pending = None
        ended = step.terminated | step.truncated
        next_obs = (step.observations if next_observations is None
                    else np.where(ended[:, None], step.observations, next_observations))
        self.agent.observe(step.observations, step.actions, step.rewards, step.terminated,
                           step.truncated, next_obs)
        self._ended = ended


if TYPE_CHECKING:
    from metaworld.evaluation import MetaLearningAgent

    def _implements_the_protocol(agent: Agent) -> MetaLearningAgent:
        """mypy checks that :class:`MetaWorldAgent` is a ``MetaLearningAgent``."""
        return MetaWorldAgent(agent)
