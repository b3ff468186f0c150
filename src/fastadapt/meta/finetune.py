"""Transfer baselines: pretrain one policy on all training tasks, fine-tune on each new task.

The three reference points of Finn et al. 2017, §5.3 (their Fig. 2 and 4):

- ``finetune``: one MLP policy pretrained on the training tasks by multi-task TRPO (MAML-TRPO
  with zero inner steps: the same surrogate, natural gradient and line search, ``J = I``);
- ``random-init``: no pretraining; the seeded initial policy;
- ``oracle``: pretrained like ``finetune`` on observations that include the task's parameters
  (:class:`~fastadapt.meta.oracle.OracleFamily`).

At meta-test all three are fine-tuned exactly as MAML adapts: on each held-out task, ``E``
episodes, then one vanilla policy-gradient step with step size ``finetune.inner_lr`` (the
inner update of :func:`fastadapt.meta.adapt.adapt`: linear baseline, GAE, per-task normalised
advantages), repeated ``K`` times (:func:`fastadapt.evaluate.meta_test`). Same episodes, same
number of gradient steps and the same update rule as MAML; only the starting point differs.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from fastadapt.errors import ConfigError, require_at_least_one
from fastadapt.meta.maml import MAMLTRPO, MAMLConfig, MetaBatch
from fastadapt.meta.trpo import TRPOConfig
from fastadapt.policies.mlp import Policy
from fastadapt.types import Params


@dataclass(frozen=True)
class FinetuneConfig:
    """Pretraining (multi-task TRPO, settings in ``trpo:``) and meta-test fine-tuning."""

    tasks_per_iteration: int = 20
    """Training tasks per pretraining iteration."""
    episodes_per_task: int = 20
    """Episodes per task in each pretraining iteration."""
    inner_lr: float = 0.1
    """Step size of each fine-tuning policy-gradient step at meta-test (MAML's inner lr)."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 1.0
    """GAE lambda (1.0: Monte-Carlo returns minus the linear baseline)."""

    def __post_init__(self) -> None:
        require_at_least_one(self, "finetune", ("tasks_per_iteration", "episodes_per_task"))
        if self.inner_lr <= 0:
            raise ConfigError(f"finetune.inner_lr must be > 0, got {self.inner_lr}")
        if not 0 < self.gamma <= 1 or not 0 <= self.gae_lambda <= 1:
            raise ConfigError("finetune.gamma must be in (0, 1] and finetune.gae_lambda in "
                              f"[0, 1], got {self.gamma} and {self.gae_lambda}")

    def adaptation_config(self) -> MAMLConfig:
        """The sampling and fine-tuning settings in the form the MAML machinery takes
        (first-order: fine-tuning never differentiates through its own steps)."""
        return MAMLConfig(
            meta_batch_size=self.tasks_per_iteration,
            episodes_per_task=self.episodes_per_task,
            adaptation_steps=1,
            inner_lr=self.inner_lr,
            first_order=True,
            gamma=self.gamma,
            gae_lambda=self.gae_lambda,
        )


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


def pretrainer(algorithm: str, policy: Policy, config: FinetuneConfig, trpo: TRPOConfig
               ) -> MAMLTRPO | NoUpdate:
    """The outer step of a transfer baseline.

    ``finetune`` and ``oracle``: multi-task TRPO, i.e. :class:`MAMLTRPO` on meta-batches
    collected with zero inner steps (its inner-loop Jacobian is then the identity).
    ``random-init``: :class:`NoUpdate`.
    """
    if algorithm == "random-init":
        return NoUpdate(config)
    return MAMLTRPO(policy, config.adaptation_config(), trpo)
