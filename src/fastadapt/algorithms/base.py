"""The interface every algorithm implements, and the values it exchanges with the trainer.

An algorithm is a class with a config section (a frozen dataclass, :class:`AlgorithmConfig`)
and five duties; the trainer (:mod:`fastadapt.run.trainer`) owns everything else: the run
directory, the task stream, the sampler, metrics, checkpoints, resume, ``run.init_from``,
non-finite handling and the final policy file.

1. **Build** from ``(family, config, device)``: the policy module the sampler steps
   (:attr:`Algorithm.policy`), its parameters on ``device``, optimizer state.
2. **Train one iteration** given a sampler and the iteration's tasks
   (:meth:`Algorithm.train_iteration`): collect, update, return :class:`Iteration` (whose
   ``nonfinite`` says the update met a NaN/inf and was not applied).
3. **Hold its state** for checkpoints (:meth:`Algorithm.state_dict`) and its policy for the
   final file (:meth:`Algorithm.parameters`, :meth:`Algorithm.policy_extras`). The built-in
   algorithms keep their update and its state in one object, ``self.learner`` (MAML's outer
   step, RL²'s PPO, PEARL's SAC networks), with its own ``state_dict`` / ``load_state_dict``.
4. **Meta-test** on held-out tasks (:meth:`Algorithm.meta_test`): an adaptation curve
   (:class:`MetaTestCurves`), by gradient steps (the MAML family, the transfer baselines) or by
   episodes within a trial (RL²).
5. **Say how it adapts** (:attr:`Algorithm.adapts_by`), so reports label their axes.
6. **Build an agent** (:meth:`Algorithm.make_agent`): the same adaptation, step by step in a
   loop the user writes (:mod:`fastadapt.algorithms.agent`).

On-policy algorithms collect fresh episodes in every iteration (``sampler.sample`` or
``sampler.sample_trials``). An off-policy one (PEARL, Rakelly et al. 2019) fits the same
interface: it keeps per-task replay buffers in its state, fills them in
:meth:`Algorithm.train_iteration` with ``sampler.sample`` turned into
:class:`~fastadapt.types.Transitions` (``Trajectories.transitions()``: next observations,
terminated and truncated kept apart), and takes many gradient steps on them before returning.

Algorithms never see a run directory, print nothing and draw nothing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, Generic, NamedTuple, TypeVar, cast

import numpy as np
import torch
from torch import Tensor

from fastadapt.algorithms.agent import AdaptsBy, Agent
from fastadapt.config import AlgorithmConfig, TrainConfig
from fastadapt.envs.base import TaskFamily
from fastadapt.errors import AgentError
from fastadapt.sampling.base import Sampler, SamplingPolicy
from fastadapt.types import Params

__all__ = ["AdaptsBy", "Algorithm", "AlgorithmConfig", "Iteration", "MetaTestCurves",
           "MetaTestProtocol", "on_cpu"]

C = TypeVar("C", bound=AlgorithmConfig)
"""An algorithm's config section class."""

class Iteration(NamedTuple):
    """What one training iteration reports to the trainer.

    Attributes:
        env_steps: environment steps it took.
        returns: mean episode return along the adaptation, before to after (MAML: after
            ``0..K`` inner steps; RL²: episodes ``1..n`` of a trial; at least one entry).
        metrics: the algorithm's scalars for ``metrics.jsonl`` (``kl`` is shown by the
            progress bar).
        nonfinite: the update met a NaN/inf loss or gradient and was not applied (RL²: in
            some minibatch, skipped). The trainer stops a run after
            ``run.max_nonfinite_iterations`` such iterations in a row, and writes the flag
            to ``metrics.jsonl`` as ``nonfinite`` (1.0 or 0.0), after ``metrics``.
    """

    env_steps: int
    returns: list[float]
    metrics: dict[str, float]
    nonfinite: bool


class MetaTestProtocol(NamedTuple):
    """How to meta-test (``fastadapt evaluate``).

    Attributes:
        adaptation_steps: ``K``: the curve has ``K + 1`` points (inner steps ``0..K``, or
            episodes ``1..K + 1`` of a trial).
        episodes_per_task: episodes per task and point (RL²: trials per task).
        eval_episodes_per_task: episodes per task sampled with the finally adapted policy
            (the last point); ``None``: ``episodes_per_task``.
        seed: see below.
    """

    adaptation_steps: int
    episodes_per_task: int
    eval_episodes_per_task: int | None = None
    seed: int = 0
    """Seeds the algorithm's own draws at meta-test (PEARL's latents); the sampler has its
    own seed."""


class MetaTestCurves(NamedTuple):
    """An algorithm's adaptation curves on held-out tasks (summarised by
    :mod:`fastadapt.evaluation`).

    Attributes:
        returns: mean episode return of each task at each point ``[N, K + 1]``.
        episodes_per_step: episodes of experience on the task each point adds.
        successes: fraction of each task's episodes that succeeded at each point
            ``[N, K + 1]`` (families that report success), else ``None``.
        unstable_episodes: episodes ended by a physics blow-up (MuJoCo families), else
            ``None``.
        trajectories: example positions before and after adaptation of the first tasks
            (families with :attr:`~fastadapt.envs.base.TaskFamily.position_dims`), each
            ``{"before": [[x, y], ...], "after": [...]}``, else ``None``.
        extra: further entries for ``evaluation.json`` (e.g. ``eval_episodes_per_task``).
    """

    returns: Tensor
    episodes_per_step: int
    successes: Tensor | None = None
    unstable_episodes: int | None = None
    trajectories: list[dict[str, Any]] | None = None
    extra: dict[str, Any] = {}  # noqa: RUF012 (a NamedTuple default, never mutated)


class Algorithm(ABC, Generic[C]):
    """A meta-RL algorithm, built from a task family, a config and a device.

    Subclasses (``class Reptile(Algorithm[ReptileConfig])``) set :attr:`config_class` (and
    :attr:`adapts_by`), build their policy module as :attr:`policy` in ``__init__`` (seeded by
    ``run.seed``) and implement the abstract methods; :attr:`settings` is their section.
    Parameters are ``Params`` dicts on :attr:`device`; the sampler steps the module on the CPU.

    Args:
        family: the task family (an algorithm may wrap it, e.g. the oracle's observations).
        config: the whole run config; the algorithm reads ``config.algorithm_config`` (an
            instance of :attr:`config_class`), ``config.policy`` and ``config.run.seed``.
        device: where parameters, losses and optimizer state live.

    Raises:
        ConfigError: a setting this family cannot serve (e.g. ``rl2.transition_input`` with
            continuous actions), before any file is written.
    """

    config_class: ClassVar[type[AlgorithmConfig]]
    """The dataclass of the algorithm's config section."""
    adapts_by: ClassVar[AdaptsBy] = "gradient_steps"
    """What a point of the meta-test curve is."""

    policy: SamplingPolicy
    """The policy module the sampler steps (called with explicit parameters)."""

    def __init__(self, family: TaskFamily[Any], config: TrainConfig, device: torch.device
                 ) -> None:
        self.family = family
        """The family the sampler steps (the oracle's wraps the configured one)."""
        self.config = config
        self.device = device
        self.horizon = config.env.horizon or family.horizon
        """Steps per episode."""

    @property
    def settings(self) -> C:
        """The algorithm's own config section (an instance of :attr:`config_class`).

        Raises:
            TypeError: the config holds another algorithm's section.
        """
        section = self.config.section
        if not isinstance(section, self.config_class):
            raise TypeError(f"{type(self).__name__} reads a {self.config_class.__name__} "
                            f"section, got {type(section).__name__}")
        return cast(C, section)

    @classmethod
    def updates_per_iteration(cls, section: AlgorithmConfig) -> int | None:
        """Parameter updates (optimiser steps) one training iteration takes with ``section``
        (an instance of :attr:`config_class`), for reports of a run's budget; ``None``: not
        counted."""
        return None

    def iterations(self, requested: int) -> int:
        """How many iterations a run of ``requested`` (``run.iterations``) trains: all of
        them, unless there is nothing to train (``random-init`` measures one)."""
        return requested

    def training_tasks(self, rng: np.random.Generator, count: int) -> list[Any]:
        """The ``count`` tasks of the next training iteration, drawn with the trainer's
        checkpointed ``rng``: fresh tasks of the family (an algorithm with a fixed set of
        training tasks, PEARL, returns what its :meth:`train_iteration` reads: indices)."""
        return self.family.sample_tasks(rng, count)

    def initial_parameters(self) -> Params:
        """The policy module's freshly initialised parameters, on :attr:`device` (the names,
        shapes and dtypes every loaded parameter file must match)."""
        return {n: p.detach().clone().to(self.device) for n, p in self.policy.named_parameters()}

    @abstractmethod
    def parameters(self) -> Params:
        """The current policy parameters (on :attr:`device`; the caller does not modify
        them)."""

    @abstractmethod
    def load_parameters(self, params: Params) -> None:
        """Replace the policy parameters (checked against :meth:`initial_parameters` and
        moved to :attr:`device` by the caller): a warm start, a checkpoint, an evaluation."""

    def policy_extras(self) -> dict[str, Tensor]:
        """Tensors besides the parameters that the final policy file holds and evaluation
        reads back, named ``group/name`` (Meta-SGD: its learned rates ``inner_lr/...``)."""
        return {}

    def load_policy_extras(self, tensors: dict[str, Tensor]) -> None:
        """Restore :meth:`policy_extras` (from a policy file or a checkpoint).

        Raises:
            KeyError: a tensor is missing, or (here, with no extras) there are some.
        """
        if tensors:
            raise KeyError(f"tensors {sorted(tensors)} beside the parameters")

    def state_dict(self) -> dict[str, Tensor]:
        """What a checkpoint needs besides the parameters to resume bit-identically
        (optimizer moments, random generators, adaptive coefficients)."""
        return {}

    def load_state_dict(self, tensors: dict[str, Tensor]) -> None:
        """Restore :meth:`state_dict`.

        Raises:
            KeyError, RuntimeError, ValueError: the tensors are not this algorithm's (here,
                with no state: there are some).
        """
        if tensors:
            raise KeyError(f"state {sorted(tensors)} this algorithm does not keep")

    @abstractmethod
    def train_iteration(self, sampler: Sampler, tasks: list[Any], fraction_done: float
                        ) -> Iteration:
        """Collect experience on ``tasks`` with ``sampler`` and update.

        Args:
            sampler: steps :attr:`policy` on :attr:`family` (CPU parameters).
            tasks: this iteration's training tasks (``tasks_per_iteration`` of them).
            fraction_done: iterations done / ``run.iterations``, for schedules.
        """

    def default_adaptation_steps(self) -> int:
        """The meta-test's ``K`` when ``fastadapt evaluate`` is not given one
        (``evaluate.adaptation_steps``)."""
        return self.config.evaluate.adaptation_steps

    def make_agent(self, num_envs: int, seed: int = 0) -> Agent:
        """An :class:`~fastadapt.algorithms.agent.Agent` of the current parameters, acting in
        ``num_envs`` environments of :attr:`family`'s spaces and adapting as
        :meth:`meta_test` does (``fastadapt.load_agent`` calls it for a trained run).

        Args:
            num_envs: ``N``, each env its own task.
            seed: seeds the agent's exploration noise and its own draws.

        Raises:
            AgentError: the algorithm builds no agent (a plugin that does not implement
                this method).
        """
        raise AgentError(f"{type(self).__name__} builds no agent: a plugin algorithm "
                         "implements Algorithm.make_agent (see fastadapt.algorithms.toolkit)")

    @abstractmethod
    def meta_test(self, sampler: Sampler, tasks: list[Any], protocol: MetaTestProtocol
                  ) -> MetaTestCurves:
        """Adapt to each held-out task from the current parameters, as ``protocol`` says.

        Raises:
            ConfigError: the protocol asks for what this algorithm cannot do.
        """


def on_cpu(params: Params) -> Params:
    """``params`` on the CPU, where samplers step the policy (no copy when they are)."""
    return {name: value.cpu() for name, value in params.items()}


EXAMPLE_PATHS = 4
"""Held-out tasks whose paths the meta-test records (families with positions)."""


def example_paths(family: TaskFamily[Any], tasks: int,
                  episode: Callable[[int, int], Tensor | np.ndarray]
                  ) -> list[dict[str, Any]] | None:
    """:attr:`MetaTestCurves.trajectories`: positions before and after adaptation of the
    first :data:`EXAMPLE_PATHS` of ``tasks`` tasks, or ``None`` for a family without
    :attr:`~fastadapt.envs.base.TaskFamily.position_dims`.

    ``episode(i, which)`` gives task ``i``'s observations ``[steps, O]`` (its live steps) of the
    episode before (``which`` 0) or after (1) adaptation.
    """
    dims = family.position_dims
    if dims is None:
        return None
    return [{"before": episode(i, 0)[:, list(dims)].tolist(),
             "after": episode(i, 1)[:, list(dims)].tolist()}
            for i in range(min(EXAMPLE_PATHS, tasks))]
