"""The sampler interface, and what every sampler shares: its seed, call counter and lifecycle.

A sampler steps a policy it is given, with explicit parameters:
``sample(params, tasks, episodes_per_task) -> Trajectories`` for an MLP policy with per-task
parameters ``[T, ...]``, and ``sample_trials(params, tasks, trials_per_task, episodes_per_trial)
-> Trials`` for a recurrent policy that keeps its hidden state across the episodes of a trial.
It is a context manager whose ``close()`` releases every worker it started, with
``state_dict()`` / ``load_state_dict()`` for checkpoints. Its random state is the pair (seed,
number of sampling calls so far): see :mod:`fastadapt.sampling.rollout`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Any, Protocol

from fastadapt.closing import Closeable
from fastadapt.errors import CheckpointError, ConfigError
from fastadapt.policies.mlp import Policy
from fastadapt.policies.recurrent import RecurrentPolicy
from fastadapt.policies.squashed import SquashedGaussianPolicy
from fastadapt.types import Params, Trajectories, Trials

EpisodePolicy = Policy | SquashedGaussianPolicy
"""A policy that samples episodes with per-task parameters: an MLP policy, or SAC's
tanh-squashed Gaussian (PEARL's, its latent folded into the parameters)."""

SamplingPolicy = EpisodePolicy | RecurrentPolicy
"""What a sampler steps: an episode policy (episodes) or a recurrent one (trials)."""


class EpisodeSampler(Protocol):
    """Anything that samples episodes: a sampler, or a wrapper of one (e.g.
    :class:`~fastadapt.sampling.success.SuccessRecorder`)."""

    def sample(self, params: Params, tasks: list[Any], episodes_per_task: int) -> Trajectories:
        """Episodes ``[T, E, H, ...]`` of ``tasks`` with per-task ``params [T, ...]``."""
        ...


class Sampler(Protocol):
    """What training and evaluation need from a sampler (all kinds implement it)."""

    def sample(self, params: Params, tasks: list[Any], episodes_per_task: int) -> Trajectories:
        """Episodes ``[T, E, H, ...]`` of ``tasks`` with per-task ``params [T, ...]``."""
        ...

    def sample_trials(self, params: Params, tasks: list[Any], trials_per_task: int,
                      episodes_per_trial: int) -> Trials:
        """Trials ``[T, B, L, ...]`` of ``tasks`` with a recurrent policy's shared ``params``."""
        ...

    def state_dict(self) -> dict[str, int]:
        """The random state, JSON-serialisable."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state_dict`."""
        ...

    def close(self) -> None:
        """Release workers; idempotent."""
        ...

    def __enter__(self) -> Sampler: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


def check_sampler_state(state: Any) -> dict[str, int]:
    """``{"seed": s, "calls": c}`` from a checkpoint, checked.

    Raises:
        CheckpointError: ``state`` lacks ``seed``/``calls`` or they are not integers >= 0.
    """
    values = [state.get(key) if isinstance(state, dict) else None for key in ("seed", "calls")]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        raise CheckpointError(f"invalid sampler state {state!r}: want integers seed, calls >= 0")
    return {"seed": int(state["seed"]), "calls": int(state["calls"])}


class SeededSampler(Closeable, ABC):
    """Seed, call counter, checkpoint state and context-manager plumbing of every sampler.

    Args:
        seed: seeds every random stream (``>= 0``).
    """

    def __init__(self, seed: int) -> None:
        if seed < 0:
            raise ConfigError(f"sampler seed must be >= 0, got {seed}")
        self.seed = seed
        self.calls = 0
        """Number of :meth:`next_call` so far: the ``c`` of the per-task streams."""

    @abstractmethod
    def sample(self, params: Params, tasks: list[Any], episodes_per_task: int) -> Trajectories:
        """Episodes ``[T, E, H, ...]`` of ``tasks`` with per-task ``params [T, ...]``."""

    @abstractmethod
    def sample_trials(self, params: Params, tasks: list[Any], trials_per_task: int,
                      episodes_per_trial: int) -> Trials:
        """Trials ``[T, B, L, ...]`` of ``tasks`` with a recurrent policy's shared ``params``
        (see :func:`~fastadapt.sampling.trials.trial_rollout`)."""

    def next_call(self, params: Params, tasks: list[Any], per_task: bool = True) -> int:
        """The counter value of this sampling call (then increments it).

        Args:
            per_task: ``params`` carry a leading ``[T]`` axis (checked); ``False`` for a
                recurrent policy's shared parameters.

        Raises:
            ValueError: the parameters' leading ``[T]`` axis does not match ``len(tasks)``.
        """
        sizes = {name: value.shape[0] if value.dim() else 0 for name, value in params.items()}
        if per_task and any(size != len(tasks) for size in sizes.values()):
            raise ValueError(
                f"sample got parameters for {sorted(set(sizes.values()))} tasks, but "
                f"{len(tasks)} tasks (per-task parameters need a leading [T] axis)"
            )
        call = self.calls
        self.calls += 1
        return call

    def state_dict(self) -> dict[str, int]:
        """``{"seed": s, "calls": c}``: everything that decides the next batches' randomness."""
        return {"seed": self.seed, "calls": self.calls}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict` (of this or any other sampler kind).

        Raises:
            CheckpointError: ``state`` lacks ``seed``/``calls`` or they are not integers >= 0.
        """
        checked = check_sampler_state(state)
        self.seed, self.calls = checked["seed"], checked["calls"]

    def close(self) -> None:
        """Release workers (nothing to release here)."""
