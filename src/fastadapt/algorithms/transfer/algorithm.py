"""Transfer baselines: pretrain one policy on all training tasks, fine-tune on each new task.

The three reference points of Finn et al. 2017, §5.3 (their Fig. 2 and 4):

- ``finetune``: one MLP policy pretrained on the training tasks by multi-task TRPO (MAML-TRPO
  with zero inner steps: the same surrogate, natural gradient and line search, ``J = I``);
- ``random-init``: no pretraining; the seeded initial policy;
- ``oracle``: pretrained like ``finetune`` on observations that include the task's parameters
  (:class:`~fastadapt.envs.wrappers.OracleFamily`).

At meta-test all three are fine-tuned exactly as MAML adapts: on each held-out task, ``E``
episodes, then one vanilla policy-gradient step with step size ``finetune.inner_lr`` (the
inner update of :func:`fastadapt.algorithms.maml.adapt.adapt`: linear baseline, GAE, per-task
normalised advantages), repeated ``K`` times
(:meth:`~fastadapt.algorithms.maml.algorithm.GradientAdapted.meta_test`). Same episodes, same
number of gradient steps and the same update rule as MAML; only the starting point differs.
All three read the ``finetune:`` section.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from fastadapt.algorithms.maml.algorithm import GradientAdapted, OuterStep
from fastadapt.algorithms.maml.config import MAMLConfig
from fastadapt.algorithms.maml.meta_batch import MetaBatch
from fastadapt.algorithms.maml.trpo import MAMLTRPO
from fastadapt.algorithms.transfer.config import FinetuneConfig
from fastadapt.config import AlgorithmConfig, TrainConfig
from fastadapt.envs.base import TaskFamily
from fastadapt.envs.wrappers import OracleFamily
from fastadapt.errors import ConfigError
from fastadapt.types import Params

# FinetuneConfig lives in transfer/config.py; re-exported here, where it was first defined.
__all__ = ["Finetune", "FinetuneConfig", "NoUpdate", "Oracle", "RandomInit"]


class NoUpdate:
    """``random-init``'s "training": the parameters stay at their seeded initialisation."""

    def __init__(self, config: FinetuneConfig) -> None:
        self.config = config

    def step(self, theta: Params, meta_batch: MetaBatch) -> tuple[Params, dict[str, float]]:
        """Return ``theta`` unchanged with zero metrics."""
        return theta, {"kl": 0.0, "step_accepted": 0.0, "nonfinite": 0.0}

    def inner_lr(self) -> float:
        """The fine-tuning step size."""
        return self.config.inner_lr

    def inner_loop(self, theta: Params, num_tasks: int) -> None:
        """None: nothing is differentiated."""
        return None

    def state_dict(self) -> dict[str, Tensor]:
        """No state."""
        return {}

    def load_state_dict(self, tensors: dict[str, Tensor]) -> None:
        """Nothing to restore."""


class Finetune(GradientAdapted[FinetuneConfig]):
    """Pretrain by multi-task TRPO (:class:`MAMLTRPO` on meta-batches collected with zero
    inner steps: its inner-loop Jacobian is the identity); fine-tune at meta-test."""

    config_class = FinetuneConfig
    training_inner_steps = 0

    @classmethod
    def updates_per_iteration(cls, section: AlgorithmConfig) -> int | None:
        """One TRPO step per meta-batch."""
        return 1

    def adaptation(self) -> MAMLConfig:
        return self.settings.adaptation_config()

    def build_learner(self) -> OuterStep:
        return MAMLTRPO(self.policy, self.adaptation(), self.settings.trpo)


class RandomInit(Finetune):
    """No pretraining: the seeded initial policy, fine-tuned at meta-test. Training runs one
    iteration, which only measures it."""

    def __init__(self, family: TaskFamily[Any], config: TrainConfig, device: torch.device
                 ) -> None:
        if config.run.init_from is not None:
            raise ConfigError("run.init_from is not available for random-init, whose point is "
                              "a freshly initialised policy")
        super().__init__(family, config, device)

    @classmethod
    def updates_per_iteration(cls, section: AlgorithmConfig) -> int | None:
        """None: the policy is never updated."""
        return 0

    def iterations(self, requested: int) -> int:
        return 1

    def build_learner(self) -> OuterStep:
        return NoUpdate(self.settings)


class Oracle(Finetune):
    """``finetune`` on observations that include the task's parameters."""

    def __init__(self, family: TaskFamily[Any], config: TrainConfig, device: torch.device
                 ) -> None:
        super().__init__(OracleFamily(family), config, device)
