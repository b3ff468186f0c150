"""Exceptions raised by fastadapt.

Every error a user can cause (bad config, unknown env, missing run directory, corrupt
checkpoint, diverging loss) is a :class:`FastAdaptError`. The CLI prints its message on one
line and exits with a non-zero code; library users catch it like any exception.
"""

from __future__ import annotations


class FastAdaptError(Exception):
    """Base class of the errors a user can cause; the message names the cause."""


class ConfigError(FastAdaptError):
    """A configuration key, type or value is wrong."""


def require_at_least_one(config: object, section: str, keys: tuple[str, ...]) -> None:
    """Range check of count-like config fields (tasks, episodes, iterations, ...).

    Raises:
        ConfigError: naming ``section.key`` and its value, for the first key below 1.
    """
    for key in keys:
        value = getattr(config, key)
        if value < 1:
            raise ConfigError(f"{section}.{key} must be >= 1, got {value}")


class UnknownEnvError(FastAdaptError):
    """An environment / task-family name is not registered."""


class TaskError(FastAdaptError):
    """A task value is outside its family's task space."""


class CheckpointError(FastAdaptError):
    """A checkpoint or run directory is missing, corrupt or does not match the config."""


class NonFiniteError(FastAdaptError):
    """The loss or the gradient stayed NaN/inf; the last good checkpoint is kept."""


class SamplerError(FastAdaptError):
    """A sampler cannot be built (unknown kind, missing Ray) or cannot finish a batch."""


class WorkerError(SamplerError):
    """A sampler worker raised; the message names the worker and the original exception."""


class WorkerDiedError(SamplerError):
    """A sampler worker process died (e.g. killed) and could not be restarted."""
