"""The config sections of the MAML family: one per algorithm, sharing the inner-loop settings.

Defaults of the inner loop: pytorch-maml-rl's 2d-navigation; of the first-order outer
optimizers: ProMP's run scripts (Rothfuss et al. 2019).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from fastadapt.algorithms.common.trpo import TRPOConfig
from fastadapt.algorithms.maml.estimators import Estimator
from fastadapt.config import AlgorithmConfig
from fastadapt.errors import require, require_at_least_one

Objective = Literal["vpg", "ppo"]
"""A first-order outer objective: the vanilla policy gradient or PPO's clipped surrogate."""


@dataclass(frozen=True)
class InnerStepConfig(AlgorithmConfig):
    """Episodes and the inner policy-gradient step (Finn et al. 2017, eq. 1): what the MAML
    family adapts with, and what the transfer baselines fine-tune with at meta-test."""

    episodes_per_task: int = 20
    """Episodes sampled per task for each inner step and for the validation batch."""
    inner_lr: float = 0.1
    """Inner step size alpha (> 0)."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 1.0
    """GAE lambda (1.0: Monte-Carlo returns minus the linear baseline)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require_at_least_one(self, ("episodes_per_task",))
        require(self.inner_lr > 0, "inner_lr", f"must be > 0, got {self.inner_lr}")
        require(0 < self.gamma <= 1, "gamma", f"must be in (0, 1], got {self.gamma}")
        require(0 <= self.gae_lambda <= 1, "gae_lambda",
                f"must be in [0, 1], got {self.gae_lambda}")

    def episodes_held_per_task(self) -> int:
        """One batch of ``episodes_per_task`` episodes per task."""
        return self.episodes_per_task


@dataclass(frozen=True)
class MAMLConfig(InnerStepConfig):
    """Inner loop and data settings of MAML-RL (Finn et al. 2017, Algorithm 3)."""

    default_estimator: ClassVar[Estimator] = "maml"
    adaptation_steps: int = 1
    """Inner gradient steps during meta-training."""
    first_order: bool = False
    """Drop second-order terms (FOMAML)."""
    estimator: Estimator | None = None
    """Meta-gradient estimator (:mod:`fastadapt.algorithms.maml.estimators`): ``maml``
    (Finn et al.), ``emaml`` (Stadie et al.), ``dice`` (Foerster et al.) or ``lvc`` (Rothfuss
    et al.); ``null`` takes the algorithm's own (``lvc`` for ProMP, ``maml`` otherwise)."""

    @property
    def resolved_estimator(self) -> Estimator:
        """``estimator``, or the algorithm's default when unset."""
        return self.estimator if self.estimator is not None else self.default_estimator

    def __post_init__(self) -> None:
        super().__post_init__()
        require_at_least_one(self, ("adaptation_steps",))

    def episodes_held_per_task(self) -> int:
        """The batches of every inner step and the validation batch, kept for the
        meta-gradient."""
        return self.episodes_per_task * (self.adaptation_steps + 1)


@dataclass(frozen=True)
class MAMLTRPOConfig(MAMLConfig):
    """MAML-TRPO: one natural-gradient step with a KL-constrained line search per iteration."""

    section: ClassVar[str] = "maml-trpo"
    trpo: TRPOConfig = field(default_factory=TRPOConfig)
    """The outer TRPO step."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.resolved_estimator != "emaml", "estimator",
                "emaml adds a score term to a differentiable outer loss; use it with "
                "maml-vpg, maml-ppo, promp or meta-sgd (maml-trpo takes maml, dice, lvc)")


@dataclass(frozen=True)
class MAMLVPGConfig(MAMLConfig):
    """MAML with a vanilla policy-gradient outer step (Adam)."""

    section: ClassVar[str] = "maml-vpg"
    learning_rate: float = 1e-3
    """Adam step size of the outer update."""
    max_grad_norm: float | None = None
    """Clip the meta-gradient to this global norm (``null``: no clipping)."""

    @property
    def outer_objective(self) -> Objective:
        """The outer objective."""
        return "vpg"

    @property
    def outer_epochs(self) -> int:
        """Outer Adam steps per meta-batch."""
        return 1

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.learning_rate > 0, "learning_rate", f"must be > 0, got {self.learning_rate}")
        require(self.max_grad_norm is None or self.max_grad_norm > 0, "max_grad_norm",
                f"must be > 0 or null, got {self.max_grad_norm}")


@dataclass(frozen=True)
class MAMLPPOConfig(MAMLVPGConfig):
    """MAML with PPO's clipped surrogate as the outer objective."""

    section: ClassVar[str] = "maml-ppo"
    epochs: int = 5
    """Outer Adam steps per meta-batch (ProMP's ``num_promp_steps``)."""
    clip_ratio: float = 0.3
    """``eps``: the post-update probability ratio is clipped to ``[1 - eps, 1 + eps]``."""

    @property
    def outer_objective(self) -> Objective:
        return "ppo"

    @property
    def outer_epochs(self) -> int:
        return self.epochs if self.outer_objective == "ppo" else 1

    def __post_init__(self) -> None:
        super().__post_init__()
        require_at_least_one(self, ("epochs",))
        require(0 < self.clip_ratio < 1, "clip_ratio", f"must be in (0, 1), got {self.clip_ratio}")


@dataclass(frozen=True)
class ProMPConfig(MAMLPPOConfig):
    """ProMP (Rothfuss et al. 2019): MAML-PPO + KL penalty on the pre-update policies."""

    section: ClassVar[str] = "promp"
    default_estimator: ClassVar[Estimator] = "lvc"
    init_kl_coef: float = 5e-4
    """Initial ``eta``, the weight of the pre-update KL penalty."""
    target_inner_kl: float = 1e-2
    """With ``adaptive_kl_coef``: ``eta`` halves below ``target / 1.5``, doubles above
    ``1.5 target``."""
    adaptive_kl_coef: bool = False
    """Adapt ``eta`` after every meta-batch (ProMP's ``adaptive_inner_kl_penalty``)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.init_kl_coef >= 0, "init_kl_coef", f"must be >= 0, got {self.init_kl_coef}")
        require(self.target_inner_kl > 0, "target_inner_kl",
                f"must be > 0, got {self.target_inner_kl}")


@dataclass(frozen=True)
class MetaSGDConfig(MAMLPPOConfig):
    """Meta-SGD (Li et al. 2017): learned per-parameter inner learning rates, initialised to
    ``inner_lr``."""

    section: ClassVar[str] = "meta-sgd"
    objective: Objective = "ppo"
    """Outer objective: MAML-PPO's clipped surrogate (``epochs`` steps) or MAML-VPG's (one)."""

    @property
    def outer_objective(self) -> Objective:
        return self.objective
