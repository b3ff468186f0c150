"""The configuration of a training run: what a YAML config holds, as typed, frozen dataclasses.

A config names its ``algorithm`` and holds that algorithm's own section (keyed by the section's
name, e.g. ``maml-trpo:``; the transfer baselines share ``finetune:``) beside four sections
every run has: ``env``, ``policy``, ``run`` and ``evaluate``. Every key carries its unit
(tasks, episodes, steps, iterations). Unknown keys, wrong types and out-of-range values raise
:class:`fastadapt.errors.ConfigError` naming the dotted key (:mod:`fastadapt.run.config_loading`
reads the files).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from fastadapt.errors import ConfigError, require, require_at_least_one
from fastadapt.quoting import shorten

__all__ = ["AlgorithmConfig", "EnvConfig", "EvalConfig", "PolicyConfig", "RunConfig",
           "TrainConfig"]


@dataclass(frozen=True)
class AlgorithmConfig:
    """The base of every algorithm's config section.

    ``section`` (a class attribute) is the section's key in a YAML config, usually the
    algorithm's name; algorithms that share settings share a section (the transfer baselines
    read ``finetune:``).
    """

    section: ClassVar[str] = ""
    tasks_per_iteration: int = 20
    """Training tasks sampled per iteration (the meta-batch)."""

    def __post_init__(self) -> None:
        require_at_least_one(self, ("tasks_per_iteration",))

    def network_widths(self, policy: PolicyConfig) -> dict[str, tuple[int, ...]]:
        """The hidden layer widths of each network the algorithm trains (observations in,
        actions out), by the config key that sets them, for the memory check made before
        anything is built (:mod:`fastadapt.algorithms.memory`).

        Args:
            policy: the run's ``policy`` section.

        Returns:
            The MLP policy's ``policy.hidden_sizes``; a section that builds networks of its
            own (a recurrent policy, critics) returns their widths under its own keys.
        """
        return {"policy.hidden_sizes": policy.hidden_sizes}

    def tasks_held(self) -> tuple[str, int]:
        """The tasks a training run holds at once and the key that sets them, for the memory
        check made before anything is built: ``tasks_per_iteration`` unless a section holds
        more (PEARL's ``train_tasks``, each with replay buffers)."""
        return f"{self.section}.tasks_per_iteration", self.tasks_per_iteration

    def episodes_held_per_task(self) -> int:
        """Episodes of each task that one training iteration holds in memory at once (all its
        adaptation steps), for the memory check made before anything is built
        (:mod:`fastadapt.algorithms.memory`); 1 unless a section says more."""
        return 1


@dataclass(frozen=True)
class EnvConfig:
    """Which task family to meta-train on."""

    name: str = "Navigation2D"
    """Registered family name (``fastadapt envs`` lists them)."""
    horizon: int | None = None
    """Steps per episode; ``None`` takes the family's default."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the family, e.g. ``{num_arms: 5, num_pulls: 10}`` for Bandit."""

    def __post_init__(self) -> None:
        require(self.horizon is None or self.horizon >= 1, "horizon",
                f"must be >= 1, got {self.horizon}")


@dataclass(frozen=True)
class PolicyConfig:
    """The MLP policy network (RL² sizes its recurrent policy in its own section and reads
    ``init_std`` only)."""

    hidden_sizes: tuple[int, ...] = (64, 64)
    """Units per hidden layer."""
    activation: Literal["tanh", "relu"] = "tanh"
    """Hidden nonlinearity."""
    init_std: float = 1.0
    """Initial action standard deviation (Gaussian policies)."""

    def __post_init__(self) -> None:
        require(all(size >= 1 for size in self.hidden_sizes), "hidden_sizes",
                f"must be positive, got {shorten(list(self.hidden_sizes))}")
        require(self.init_std > 0, "init_std", f"must be > 0, got {self.init_std}")


MAX_WORKERS = 1024
"""Upper bound of ``run.workers`` (a typo guard, not a resource limit)."""


@dataclass(frozen=True)
class RunConfig:
    """Length, seeding, resources and outputs of a run."""

    iterations: int = 50
    """Meta-iterations (outer updates)."""
    seed: int = 1
    """Seeds the task sampler, the envs, the actions and the initial policy."""
    device: str = "cpu"
    """Where the learner's parameters, losses, optimizer state and buffers live: ``cpu``,
    ``cuda``, ``cuda:N``, ``mps`` or ``auto`` (CUDA, else MPS, else the CPU). Sampling stays
    on the CPU; checkpoints load on any device."""
    num_threads: int = 2
    """torch intra-op threads (the machine's cores; 1 when several processes share them)."""
    retain_freed_memory: bool = True
    """Keep freed memory in the process instead of unmapping large blocks on every free
    (glibc only; see :mod:`fastadapt.backends.process_setup`)."""
    checkpoint_every: int = 10
    """Iterations between checkpoints (the last iteration is always saved)."""
    keep_checkpoints: int = 3
    """Checkpoints kept under ``checkpoints/``."""
    max_nonfinite_iterations: int = 3
    """Consecutive iterations with a NaN/inf loss or gradient before the run stops."""
    tensorboard: bool = True
    """Write TensorBoard events next to ``metrics.jsonl``."""
    wandb: str | None = None
    """A Weights & Biases project to mirror the iteration records to (``null``: off; needs
    ``fastadapt[wandb]``; ``WANDB_MODE=offline`` logs without an account). See
    :mod:`fastadapt.run.wandb_sink`."""
    sampler: Literal["vector", "process", "ray"] = "vector"
    """Who steps the envs: ``vector`` (in-process, one array op for all tasks), ``process``
    (``run.workers`` worker processes) or ``ray`` (``run.workers`` Ray actors; needs
    ``fastadapt[ray]``). All give the same batches for the same seed (RL²'s trials up to the
    recurrent cell's float32 rounding)."""
    workers: int = 2
    """Worker processes or Ray actors of the ``process``/``ray`` samplers (1 to
    ``MAX_WORKERS``; each runs one torch thread); ignored by ``vector``."""
    ray_address: str | None = None
    """Ray cluster to join (``"auto"``, ``"host:port"``); ``null`` starts a local Ray instance
    on 127.0.0.1 with the dashboard off."""
    init_from: str | None = None
    """A run directory whose final policy parameters (``policy.safetensors``, else its latest
    checkpoint) start this run instead of a fresh initialisation: a warm start, e.g. RL²
    retrained with other settings. Names and shapes must match this config's policy. Only the
    parameters carry over: the optimiser, the iteration count, the random streams and
    Meta-SGD's learned inner rates (back to its ``inner_lr``) start afresh, and a resumed run
    continues from its own checkpoint (from ``init_from`` again if it stopped before its
    first)."""

    def __post_init__(self) -> None:
        counts = ("iterations", "num_threads", "checkpoint_every", "keep_checkpoints",
                  "max_nonfinite_iterations")
        require_at_least_one(self, counts)
        require(self.seed >= 0, "seed", f"must be >= 0, got {self.seed}")
        require(1 <= self.workers <= MAX_WORKERS, "workers",
                f"must be in [1, {MAX_WORKERS}], got {self.workers}")
        require(self.ray_address is None or bool(self.ray_address.strip()), "ray_address",
                "must be null or a non-empty address")
        require(self.wandb is None or bool(self.wandb.strip()), "wandb",
                "must be null or a W&B project name")
        require(bool(self.device.strip()), "device", "must name a device, e.g. cpu or cuda")


@dataclass(frozen=True)
class EvalConfig:
    """Defaults of ``fastadapt evaluate`` (the meta-test protocol)."""

    num_tasks: int = 40
    """Held-out tasks."""
    adaptation_steps: int = 3
    """Inner gradient steps measured (returns are reported after 0..K steps). RL² ignores
    it: its points are the ``rl2.episodes_per_trial`` episodes of a trial."""
    episodes_per_task: int = 20
    """Episodes sampled per task at each adaptation step (RL²: trials per task)."""

    def __post_init__(self) -> None:
        require_at_least_one(self, ("num_tasks", "episodes_per_task"))
        require(self.adaptation_steps >= 0, "adaptation_steps",
                f"must be >= 0, got {self.adaptation_steps}")


@dataclass(frozen=True)
class TrainConfig:
    """A whole run: ``fastadapt train CONFIG``.

    ``algorithm_config`` is the algorithm's own section (an instance of its registered
    config class, see :func:`fastadapt.register_algorithm`); ``None`` stands for its defaults
    and is filled in when the run starts.
    """

    algorithm: str = "maml-trpo"
    """The registered algorithm (``fastadapt algorithms`` lists them): ``maml-trpo``,
    ``maml-vpg``, ``maml-ppo``, ``promp``, ``meta-sgd``, ``rl2``, ``finetune``,
    ``random-init``, ``oracle``, or a plugin's."""
    env: EnvConfig = field(default_factory=EnvConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    algorithm_config: AlgorithmConfig | None = None
    run: RunConfig = field(default_factory=RunConfig)
    evaluate: EvalConfig = field(default_factory=EvalConfig)
    plugins: tuple[str, ...] = ()
    """Modules imported before the run is built (``--plugin``), for families and algorithms
    that are not installed as entry points (``fastadapt.families``,
    ``fastadapt.algorithms``)."""

    def __post_init__(self) -> None:
        if not self.algorithm.strip():
            raise ConfigError("algorithm must name a registered algorithm")

    @property
    def section(self) -> AlgorithmConfig:
        """The algorithm's section.

        Raises:
            ConfigError: it was left unset (``None``) and not yet filled in.
        """
        if self.algorithm_config is None:
            raise ConfigError(f"the config of algorithm {self.algorithm!r} has no section yet")
        return self.algorithm_config
