"""The configuration of a training run: what a YAML file under ``configs/`` holds.

Every key carries its unit (tasks, episodes, steps, iterations). Unknown keys, wrong types and
out-of-range values raise :class:`fastadapt.errors.ConfigError` naming the dotted key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from fastadapt.errors import ConfigError, require_at_least_one
from fastadapt.meta.finetune import FinetuneConfig
from fastadapt.meta.maml import MAMLConfig
from fastadapt.meta.outer import MAMLPPOConfig, MAMLVPGConfig, MetaSGDConfig, ProMPConfig
from fastadapt.meta.ppo import PPOConfig
from fastadapt.meta.rl2 import RL2Config
from fastadapt.meta.trpo import TRPOConfig


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
        if self.horizon is not None and self.horizon < 1:
            raise ConfigError(f"env.horizon must be >= 1, got {self.horizon}")


@dataclass(frozen=True)
class PolicyConfig:
    """The policy network."""

    hidden_sizes: tuple[int, ...] = (64, 64)
    """Units per hidden layer."""
    activation: Literal["tanh", "relu"] = "tanh"
    """Hidden nonlinearity."""
    init_std: float = 1.0
    """Initial action standard deviation (Gaussian policies)."""

    def __post_init__(self) -> None:
        if any(size < 1 for size in self.hidden_sizes):
            raise ConfigError(f"policy.hidden_sizes must be positive, got {self.hidden_sizes}")
        if self.init_std <= 0:
            raise ConfigError(f"policy.init_std must be > 0, got {self.init_std}")


MAX_WORKERS = 1024
"""Upper bound of ``run.workers`` (a typo guard, not a resource limit)."""


@dataclass(frozen=True)
class RunConfig:
    """Length, seeding, resources and outputs of a run."""

    iterations: int = 50
    """Meta-iterations (outer updates)."""
    seed: int = 1
    """Seeds the task sampler, the envs, the actions and the initial policy."""
    num_threads: int = 2
    """torch intra-op threads (the machine's cores; 1 when several processes share them)."""
    retain_freed_memory: bool = True
    """Keep freed memory in the process instead of unmapping large blocks on every free (glibc
    only; ~1.6x faster exact MAML-TRPO steps, see :mod:`fastadapt.run.runtime`)."""
    checkpoint_every: int = 10
    """Iterations between checkpoints (the last iteration is always saved)."""
    keep_checkpoints: int = 3
    """Checkpoints kept under ``checkpoints/``."""
    max_nonfinite_iterations: int = 3
    """Consecutive iterations with a NaN/inf loss or gradient before the run stops."""
    tensorboard: bool = True
    """Write TensorBoard events next to ``metrics.jsonl``."""
    sampler: Literal["vector", "process", "ray"] = "vector"
    """Who steps the envs: ``vector`` (in-process, one array op for all tasks), ``process``
    (``run.workers`` worker processes) or ``ray`` (``run.workers`` Ray actors; needs
    ``fastadapt[ray]``). All give the same batches (RL²: trials) for the same seed."""
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
    Meta-SGD's learned inner rates (back to ``maml.inner_lr``) start afresh, and a resumed run
    continues from its own checkpoint (from ``init_from`` again if it stopped before its
    first)."""

    def __post_init__(self) -> None:
        counts = ("iterations", "num_threads", "checkpoint_every", "keep_checkpoints")
        require_at_least_one(self, "run", counts)
        if self.seed < 0:
            raise ConfigError(f"run.seed must be >= 0, got {self.seed}")
        if not 1 <= self.workers <= MAX_WORKERS:
            raise ConfigError(f"run.workers must be in [1, {MAX_WORKERS}], got {self.workers}")
        if self.ray_address is not None and not self.ray_address.strip():
            raise ConfigError("run.ray_address must be null or a non-empty address")


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


@dataclass(frozen=True)
class TrainConfig:
    """A whole run: ``fastadapt train CONFIG.yaml``."""

    algorithm: Literal["maml-trpo", "maml-vpg", "maml-ppo", "promp", "meta-sgd", "rl2",
                       "finetune", "random-init", "oracle"] = "maml-trpo"
    """The meta-learning algorithm, and which sections it reads:

    - ``maml-trpo``: MAML with TRPO (``maml:``, ``trpo:``, ``policy:``);
    - ``maml-vpg``, ``maml-ppo``, ``promp``, ``meta-sgd``: MAML with a first-order outer
      optimizer (``maml:``, ``policy:`` and the section of the same name with ``_`` for
      ``-``; see :mod:`fastadapt.meta.outer`);
    - ``rl2``: RL², a GRU policy trained with PPO over trials (``rl2:``, ``ppo:``; of
      ``policy:`` only ``init_std``);
    - ``finetune``: one policy pretrained on all training tasks by multi-task TRPO, fine-tuned
      on each held-out task at meta-test (``finetune:``, ``trpo:``, ``policy:``);
    - ``random-init``: the same fine-tuning from the seeded initial policy (no pretraining:
      ``train`` runs one iteration that only measures the initial policy);
    - ``oracle``: ``finetune`` on observations that include the task's parameters.
    """
    env: EnvConfig = field(default_factory=EnvConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    maml: MAMLConfig = field(default_factory=MAMLConfig)
    trpo: TRPOConfig = field(default_factory=TRPOConfig)
    maml_vpg: MAMLVPGConfig = field(default_factory=MAMLVPGConfig)
    maml_ppo: MAMLPPOConfig = field(default_factory=MAMLPPOConfig)
    promp: ProMPConfig = field(default_factory=ProMPConfig)
    meta_sgd: MetaSGDConfig = field(default_factory=MetaSGDConfig)
    rl2: RL2Config = field(default_factory=RL2Config)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    run: RunConfig = field(default_factory=RunConfig)
    evaluate: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        if self.algorithm == "random-init" and self.run.init_from is not None:
            raise ConfigError("run.init_from is not available for random-init, whose point is "
                              "a freshly initialised policy")

    def check_new_run(self) -> None:
        """Checks made before a new run starts (not on resume: a saved config may hold an
        older version's defaults).

        Raises:
            ConfigError: ``rl2:`` or ``ppo:`` differs from its defaults while the algorithm is
                not ``rl2``, which would ignore it.
        """
        if self.algorithm == "rl2":
            return
        for section, default in (("rl2", RL2Config()), ("ppo", PPOConfig())):
            if getattr(self, section) != default:
                hint = " (MAML-PPO's settings are under maml_ppo:)" if section == "ppo" else ""
                raise ConfigError(
                    f"config section '{section}' is RL²'s and algorithm {self.algorithm!r} "
                    f"does not read it: remove it{hint}"
                )

    @property
    def is_maml(self) -> bool:
        """Whether the algorithm meta-learns an initialisation with MAML's inner loop."""
        return self.algorithm in MAML_ALGORITHMS


MAML_ALGORITHMS = ("maml-trpo", "maml-vpg", "maml-ppo", "promp", "meta-sgd")
