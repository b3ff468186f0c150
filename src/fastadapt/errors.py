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


class FieldError(ConfigError):
    """A config field's value is out of range; raised by a config dataclass's
    ``__post_init__`` with the field's own name, and prefixed with the dotted path of its
    section as the config is built (``max_kl`` -> ``maml-trpo.trpo.max_kl``).

    Args:
        key: the field's name (or dotted path, once prefixed).
        problem: what is wrong, e.g. ``must be > 0, got -1``.
    """

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key} {problem}")
        self.key, self.problem = key, problem

    def within(self, section: str) -> FieldError:
        """The same error with ``section.`` before the key."""
        return FieldError(f"{section}.{self.key}" if section else self.key, self.problem)


def require_at_least_one(config: object, keys: tuple[str, ...]) -> None:
    """Range check of count-like config fields (tasks, episodes, iterations, ...).

    Raises:
        FieldError: naming the first key below 1 and its value.
    """
    for key in keys:
        value = getattr(config, key)
        if value < 1:
            raise FieldError(key, f"must be >= 1, got {value}")


def require(condition: bool, key: str, problem: str) -> None:
    """Raise :class:`FieldError` ``(key, problem)`` unless ``condition``."""
    if not condition:
        raise FieldError(key, problem)


class UnknownEnvError(FastAdaptError):
    """An environment / task-family name is not registered."""


class FamilyError(FastAdaptError):
    """A task family breaks its contract (e.g. float64 observations); the message names the
    family and the method."""


class PluginError(FastAdaptError):
    """A plugin cannot be imported, or registers a name that is taken."""


class TaskError(FastAdaptError):
    """A task value is outside its family's task space."""


class CheckpointError(FastAdaptError):
    """A checkpoint or run directory is missing, corrupt or does not match the config."""


class RunLockedError(CheckpointError):
    """Another process writes to the run directory (``train``, ``evaluate``, ``sweep``); the
    message names its pid."""


class StorageError(CheckpointError):
    """A file of a run cannot be written (a full disk, a read-only directory); the message
    names the file and what it holds. The files written before it are kept."""

    @classmethod
    def of(cls, err: OSError, target: str) -> StorageError:
        """The one line for ``err`` while writing ``target`` (``"the checkpoint file X"``)."""
        reason = err.strerror or str(err) or type(err).__name__
        return cls(f"cannot write {target}: {reason}")


class NonFiniteError(FastAdaptError):
    """The loss or the gradient stayed NaN/inf; the last good checkpoint is kept."""


class AgentError(FastAdaptError):
    """An agent was given input it cannot act on (observations of the wrong shape, adapt()
    with nothing observed, a run it cannot serve)."""


class SamplerError(FastAdaptError):
    """A sampler cannot be built (unknown kind, missing Ray) or cannot finish a batch."""


class WorkerError(SamplerError):
    """A sampler worker raised; the message names the worker and the original exception."""


class WorkerDiedError(SamplerError):
    """A sampler worker process died (e.g. killed) and could not be restarted."""


class SweepError(FastAdaptError):
    """Runs of a sweep failed, or Ray Tune is missing; the message names them."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread by the ``fastadapt`` command's handler: a run ends as
    on Ctrl-C (samplers close their workers, checkpoints stay), with exit code 143."""


class OutputError(FastAdaptError):
    """The command's standard output cannot be written (a full disk or device, a closed
    descriptor); the message gives the reason."""
