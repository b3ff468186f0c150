"""Samplers: rollouts over many tasks at once, behind one interface (:class:`Sampler`).

- ``vector`` (:class:`~fastadapt.sampling.vector.VectorSampler`): in-process, every task and
  episode stepped as one array op; the default.
- ``process`` (:class:`~fastadapt.sampling.process_sampler.ProcessSampler`): tasks split across
  worker processes.
- ``ray`` (:class:`~fastadapt.sampling.ray_sampler.RaySampler`): tasks split across Ray actors
  (``pip install 'fastadapt[ray]'``).

All three return the same batch for the same seed, whatever the number of workers (bit for bit
for MLP policies; RL²'s trials up to the recurrent cell's float32 rounding, see
:mod:`fastadapt.sampling.trials`).
"""

from __future__ import annotations

from typing import Any

from fastadapt.envs.base import TaskFamily
from fastadapt.errors import ConfigError, SamplerError
from fastadapt.sampling.base import Sampler, SamplingPolicy, SeededSampler

__all__ = ["SAMPLER_KINDS", "Sampler", "SeededSampler", "make_sampler"]

SAMPLER_KINDS = ("vector", "process", "ray")


def make_sampler(
    kind: str,
    family: TaskFamily[Any],
    policy: SamplingPolicy,
    horizon: int,
    seed: int,
    workers: int = 1,
    ray_address: str | None = None,
) -> SeededSampler:
    """Build a sampler of ``kind`` (``run.sampler``); close it (``with``) when done.

    Args:
        kind: ``"vector"``, ``"process"`` or ``"ray"``.
        family, policy, horizon, seed: what to sample and the seed of its random streams.
        workers: worker processes / actors (``>= 1``; ignored by ``vector``).
        ray_address: Ray cluster to join (``ray`` only); ``None`` starts a local instance.

    Raises:
        SamplerError: unknown ``kind``, or Ray is not installed.
        ConfigError: ``workers < 1``.
    """
    if kind not in SAMPLER_KINDS:
        raise SamplerError(f"unknown sampler {kind!r}; choose one of {', '.join(SAMPLER_KINDS)}")
    if workers < 1:
        raise ConfigError(f"sampler workers must be >= 1, got {workers}")
    if kind == "process":
        from fastadapt.sampling.process_sampler import ProcessSampler

        return ProcessSampler(family, policy, horizon, seed, workers)
    if kind == "ray":
        from fastadapt.sampling.ray_sampler import RaySampler

        return RaySampler(family, policy, horizon, seed, workers, ray_address)
    from fastadapt.sampling.vector import VectorSampler

    return VectorSampler(family, policy, horizon, seed)
