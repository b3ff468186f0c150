"""A trained agent acting step by step in a loop the user writes: :class:`Agent`.

Every algorithm builds one (:meth:`~fastadapt.algorithms.base.Algorithm.make_agent`;
``fastadapt.load_agent(run_dir)`` for a trained run). An agent acts in ``N`` environments at
once, each its own task, and adapts as its algorithm does at meta-test:

.. code-block:: python

    agent = fastadapt.load_agent("runs/demo", num_envs=8)
    agent.reset()                                   # new tasks: forget all adaptation
    obs, _ = envs.reset()
    for _ in range(steps):
        actions = agent.act(obs)                    # exploring
        next_obs, rewards, terminated, truncated, info = envs.step(actions)
        agent.observe(obs, actions, rewards, terminated, truncated, final_next_obs)
        obs = next_obs
    agent.adapt()                                   # MAML: inner step; PEARL: posterior
    actions = agent.act(obs, deterministic=True)    # the adapted policy

- :meth:`Agent.reset` forgets the tasks of the masked envs (a new task starts there);
- :meth:`Agent.act` returns actions for observations ``[N, *obs_shape]`` (numpy, any real
  dtype), sampled (exploring) or, with ``deterministic=True``, the most likely ones;
- :meth:`Agent.observe` records one step of every env; ``terminated | truncated`` ends an
  env's episode (its next observation given to :meth:`act` starts the next one);
  ``next_observations`` are the observations the step led to (with gymnasium's
  ``SAME_STEP`` autoreset: ``info["final_obs"]`` where an episode ended);
- :meth:`Agent.new_episode` says that masked envs were reset without an ending step
  (an env reset mid-episode);
- :meth:`Agent.adapt` adapts on what was observed since the last :meth:`adapt` (the MAML
  family and the transfer baselines: an inner gradient step on those episodes; PEARL: ``z``
  from the posterior of everything observed since :meth:`reset`; RL²: nothing, its memory
  adapts at every step).

The adaptation is the one :meth:`~fastadapt.algorithms.base.Algorithm.meta_test` runs, through
the same functions (tests compare the two on the same episodes).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from fastadapt.errors import AgentError
from fastadapt.types import Trajectories

__all__ = ["AdaptsBy", "Agent", "StepLog"]

AdaptsBy = Literal["gradient_steps", "episodes"]
"""How an algorithm adapts at meta-test: inner gradient steps, or episodes of experience in a
recurrent state or a posterior (the points of its adaptation curve)."""

NOISE_STEPS = 64
"""Steps of exploration noise an agent draws at once (one draw per step costs more than the
policy's forward in cheap envs)."""


def _mask(mask: Any, num_envs: int) -> np.ndarray:
    """``mask`` as ``[N]`` bool (``None``: every env).

    Raises:
        AgentError: not ``N`` booleans.
    """
    if mask is None:
        return np.ones(num_envs, dtype=bool)
    array = np.asarray(mask)
    if array.shape != (num_envs,) or array.dtype != np.bool_:
        raise AgentError(f"mask must be {num_envs} booleans (one per env), got "
                         f"{array.dtype} of shape {array.shape}")
    return array


class StepLog:
    """The steps an agent observed, env by env, as episodes: step-major arrays kept while
    acting, turned into :class:`~fastadapt.types.Trajectories` ``[N, E, H, ...]`` when it
    adapts (episodes padded with masked steps; an unfinished episode counts as far as it got).

    Args:
        num_envs: ``N``.
    """

    def __init__(self, num_envs: int) -> None:
        self.num_envs = num_envs
        self._rows: list[tuple[np.ndarray, ...]] = []
        self._valid: list[np.ndarray] = []
        self._starts = np.ones(num_envs, dtype=bool)

    def __len__(self) -> int:
        return len(self._rows)

    def record(self, observations: np.ndarray, actions: np.ndarray, rewards: np.ndarray,
               terminated: np.ndarray, truncated: np.ndarray, next_observations: np.ndarray
               ) -> None:
        """One step of every env (``[N, ...]`` each; copied, so the caller may reuse its
        buffers)."""
        ended = terminated | truncated
        self._rows.append((*(np.array(values) for values in (
            observations, actions, rewards, terminated, next_observations)),
            self._starts.copy()))
        self._valid.append(np.ones(self.num_envs, dtype=bool))
        self._starts = ended.copy()

    def new_episode(self, mask: np.ndarray) -> None:
        """The masked envs' next recorded step starts an episode."""
        self._starts |= mask

    def forget(self, mask: np.ndarray) -> None:
        """Drop the masked envs' steps (the others keep theirs)."""
        for valid in self._valid:
            valid &= ~mask
        self._starts |= mask
        if not any(valid.any() for valid in self._valid):
            self._rows, self._valid = [], []

    def steps_per_env(self) -> np.ndarray:
        """Recorded steps of each env ``[N]``."""
        if not self._valid:
            return np.zeros(self.num_envs, dtype=np.int64)
        counts: np.ndarray = np.stack(self._valid).sum(axis=0)
        return counts

    def trajectories(self, device: torch.device) -> Trajectories:
        """The recorded steps as episodes ``[N, E, H, ...]`` (``E``, ``H``: the most any env
        has), with ``terminated`` and ``final_observations`` (the next observation after
        each episode's last recorded step) filled.

        Raises:
            AgentError: nothing was recorded.
        """
        if not self._rows:
            raise AgentError("nothing observed to adapt on: call observe() after act() "
                             "(adapt() came before any observe(), or right after reset())")
        obs, actions, rewards, terminated, next_obs, starts = (
            np.stack(column) for column in zip(*self._rows, strict=True))  # [S, N, ...]
        valid = np.stack(self._valid)
        steps = np.arange(len(valid))[:, None]
        boundary = starts & valid
        episode = np.cumsum(boundary, axis=0) - 1  # [S, N]; -1 before an env's first start
        begin = np.maximum.accumulate(np.where(boundary, steps, 0), axis=0)
        position = steps - begin
        keep = valid & (episode >= 0)
        env = np.broadcast_to(np.arange(self.num_envs), valid.shape)
        index = (env[keep], episode[keep], position[keep])
        shape = (self.num_envs, int(episode[keep].max()) + 1 if keep.any() else 1,
                 int(position[keep].max()) + 1 if keep.any() else 1)

        def padded(values: np.ndarray, dtype: Any) -> Tensor:
            out = np.zeros((*shape, *values.shape[2:]), dtype=dtype)
            out[index] = values[keep]
            return torch.from_numpy(out).to(device)

        lengths = np.zeros(shape[:2], dtype=np.int64)
        np.maximum.at(lengths, index[:2], index[2] + 1)
        last = index[2] == lengths[index[:2]] - 1  # each episode's last recorded step
        final = np.zeros((*shape[:2], obs.shape[-1]), dtype=np.float32)
        final[index[0][last], index[1][last]] = next_obs[keep][last]
        return Trajectories(
            observations=padded(obs, np.float32), actions=padded(actions, actions.dtype),
            rewards=padded(rewards, np.float32), masks=padded(np.ones_like(rewards), np.float32),
            terminated=padded(terminated, np.float32),
            final_observations=torch.from_numpy(final).to(device))


class Agent(ABC):
    """A trained agent acting in ``num_envs`` environments, each its own task (see the module
    docstring for the loop).

    Subclasses implement :meth:`_act`, :meth:`_record`, :meth:`_end_episodes`, :meth:`_forget`
    and :meth:`adapt`.

    Args:
        num_envs: ``N``.
        observation_space: one env's observations (their shape is checked).
        action_space: one env's actions (a ``Box``: float32 ``[N, A]`` are returned; a
            ``Discrete``: int64 ``[N]``).
        device: where the agent computes.
        seed: seeds its exploration noise and its own draws.
    """

    adapts_by: ClassVar[AdaptsBy] = "gradient_steps"
    """How it adapts: by :meth:`adapt` (gradient steps) or within episodes (memory,
    posterior)."""
    acts_on_rewards: ClassVar[bool] = False
    """Whether its actions read the rewards of the previous steps (RL²'s memory): then every
    step it acts in must be observed, also while it is evaluated."""

    def __init__(self, num_envs: int, observation_space: gym.spaces.Space[Any],
                 action_space: gym.spaces.Space[Any], device: torch.device, seed: int = 0
                 ) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise AgentError(f"num_envs must be an integer >= 1, got {num_envs!r}")
        self.num_envs = num_envs
        self.observation_space = observation_space
        self.action_space = action_space
        self.obs_shape = tuple(observation_space.shape or ())
        discrete = isinstance(action_space, gym.spaces.Discrete)
        self._action_shape = (num_envs, *(() if discrete else tuple(action_space.shape or ())))
        self._action_dtype: Any = np.int64 if discrete else np.float32
        self.device = device
        self.rng = np.random.default_rng(seed)
        """Draws the exploration noise (numpy, like the samplers)."""
        self._noise: list[np.ndarray] = []
        self.generator = torch.Generator(device).manual_seed(seed)
        """Draws the agent's other random values (PEARL's latents)."""

    # ------------------------------------------------------------------ the public loop

    def reset(self, mask: Any = None) -> None:
        """Forget what the masked envs (``[N]`` bool; default all) learned about their task:
        new tasks start there."""
        self._forget(_mask(mask, self.num_envs))

    def new_episode(self, mask: Any = None) -> None:
        """The masked envs were reset without an ending step observed (mid-episode)."""
        self._end_episodes(_mask(mask, self.num_envs))

    def act(self, observations: Any, deterministic: bool = False) -> np.ndarray:
        """Actions for ``observations [N, *obs_shape]`` (any real dtype): sampled, or the most
        likely ones with ``deterministic``.

        Returns:
            float32 ``[N, A]`` (continuous) or int64 ``[N]`` (discrete actions).

        Raises:
            AgentError: observations of the wrong shape or type.
        """
        actions = self._act(self.observations(observations, "observations"), deterministic)
        return actions.detach().cpu().numpy()

    def observe(self, observations: Any, actions: Any, rewards: Any, terminated: Any,
                truncated: Any, next_observations: Any) -> None:
        """Record one step of every env (arrays with a leading ``[N]`` axis).

        Raises:
            AgentError: an array of the wrong shape or type.
        """
        n = self.num_envs
        obs = self._flat_observations(observations, "observations")
        next_obs = self._flat_observations(next_observations, "next_observations")
        acts = self._array(actions, "actions", self._action_shape, self._action_dtype)
        rews = self._array(rewards, "rewards", (n,), np.float32)
        term = self._array(terminated, "terminated", (n,), np.bool_)
        trunc = self._array(truncated, "truncated", (n,), np.bool_)
        self._record(obs, acts, rews, term, trunc, next_obs)

    @abstractmethod
    def adapt(self) -> None:
        """Adapt to each env's task on what was observed (see the module docstring).

        Raises:
            AgentError: nothing was observed since the last :meth:`adapt` or :meth:`reset`
                (algorithms that adapt by gradient steps or a posterior).
        """

    # ------------------------------------------------------------------ for subclasses

    @abstractmethod
    def _act(self, observations: Tensor, deterministic: bool) -> Tensor:
        """Actions ``[N, ...]`` for checked float32 observations ``[N, O]`` on
        :attr:`device`."""

    @abstractmethod
    def _forget(self, mask: np.ndarray) -> None:
        """Forget the masked envs' tasks."""

    @abstractmethod
    def _end_episodes(self, mask: np.ndarray) -> None:
        """The masked envs start new episodes."""

    @abstractmethod
    def _record(self, observations: np.ndarray, actions: np.ndarray, rewards: np.ndarray,
                terminated: np.ndarray, truncated: np.ndarray, next_observations: np.ndarray
                ) -> None:
        """Keep one checked step (float32 ``[N, O]`` observations)."""

    def noise(self, draw: Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]
              ) -> Tensor:
        """One step's exploration noise ``[N, ...]`` from ``draw(rng, shape)`` (a policy's
        ``draw_noise``), drawn :data:`NOISE_STEPS` steps at a time."""
        if not self._noise:
            self._noise = list(draw(self.rng, (NOISE_STEPS, self.num_envs)))
        return torch.from_numpy(self._noise.pop()).to(self.device)

    def observations(self, values: Any, name: str) -> Tensor:
        """``values`` checked and flattened to float32 ``[N, O]`` on :attr:`device`.

        Raises:
            AgentError: not ``[N, *obs_shape]`` real numbers.
        """
        return torch.from_numpy(self._flat_observations(values, name)).to(self.device)

    def _flat_observations(self, values: Any, name: str) -> np.ndarray:
        """``values`` checked and flattened to float32 ``[N, O]`` (numpy).

        Raises:
            AgentError: not ``[N, *obs_shape]`` real numbers.
        """
        array = self._array(values, name, (self.num_envs, *self.obs_shape), np.float32)
        return array.reshape(self.num_envs, -1)

    def _array(self, values: Any, name: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """``values`` as a numpy array of ``shape`` and ``dtype``.

        Raises:
            AgentError: another shape, or not real numbers (booleans for ``np.bool_``).
        """
        if isinstance(values, Tensor):
            values = values.detach().cpu().numpy()
        array = np.asarray(values)
        kind = array.dtype.kind
        numeric = kind in "biuf" if dtype is np.bool_ else kind in "iuf"
        if not numeric:
            raise AgentError(f"{name} must be real numbers, got dtype {array.dtype}")
        if array.shape != shape:
            raise AgentError(f"{name} have shape {array.shape}; this agent acts in "
                             f"{self.num_envs} envs: want {shape}")
        return np.ascontiguousarray(array, dtype=dtype)
