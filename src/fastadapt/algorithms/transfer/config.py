"""The ``finetune:`` section, read by the three transfer baselines (``finetune``,
``random-init``, ``oracle``; :mod:`fastadapt.algorithms.transfer.algorithm`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from fastadapt.algorithms.common.trpo import TRPOConfig
from fastadapt.algorithms.maml.config import InnerStepConfig, MAMLConfig

__all__ = ["FinetuneConfig"]


@dataclass(frozen=True)
class FinetuneConfig(InnerStepConfig):
    """Pretraining (multi-task TRPO, settings in ``trpo:``; ``episodes_per_task`` per task and
    pretraining iteration) and meta-test fine-tuning (``inner_lr``: MAML's inner step)."""

    section: ClassVar[str] = "finetune"
    trpo: TRPOConfig = field(default_factory=TRPOConfig)
    """The pretraining optimizer (MAML-TRPO's step with zero inner steps)."""

    def adaptation_config(self) -> MAMLConfig:
        """The sampling and fine-tuning settings in the form the MAML machinery takes
        (first-order: fine-tuning never differentiates through its own steps)."""
        return MAMLConfig(
            tasks_per_iteration=self.tasks_per_iteration,
            episodes_per_task=self.episodes_per_task,
            adaptation_steps=1,
            inner_lr=self.inner_lr,
            first_order=True,
            gamma=self.gamma,
            gae_lambda=self.gae_lambda,
        )
