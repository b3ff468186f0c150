"""Reptile for RL (Nichol, Achiam & Schulman 2018, "On First-Order Meta-Learning Algorithms",
Algorithm 2 with a batch of tasks), as a fastadapt algorithm.

One iteration: on each of ``T`` tasks, ``k`` inner policy-gradient steps from ``theta`` (each
on ``E`` fresh episodes of the current policy, MAML's inner step), giving ``phi_i``; then
``theta <- theta + epsilon (mean_i phi_i - theta)``. No second derivatives, no outer loss. At
meta-test it adapts as MAML does: inner steps from the learned ``theta``.

An algorithm is a :class:`fastadapt.Algorithm` with a config section (a frozen dataclass
deriving from :class:`fastadapt.AlgorithmConfig`, here through the inner step's settings of
the MAML family, whose ``section`` is its YAML key); it builds its policy from ``(family,
config, device)``, trains one iteration given a sampler, meta-tests, and builds the agent
``fastadapt.load_agent`` returns. The trainer does the rest (run directory, checkpoints,
resume, logs). The MAML pieces it uses come from
:mod:`fastadapt.algorithms.toolkit`, the building blocks fastadapt keeps stable for plugins.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

import fastadapt
from fastadapt.algorithms.toolkit import (
    Agent,
    GradientAgent,
    InnerStepConfig,
    MAMLConfig,
    Policy,
    adapt_steps,
    collect_meta_batch,
    expand_to_tasks,
    make_policy,
    require,
)


@dataclass(frozen=True)
class ReptileConfig(InnerStepConfig):
    """The ``reptile:`` section (``tasks_per_iteration``, ``episodes_per_task``, ``inner_lr``,
    ``gamma`` and ``gae_lambda`` come from the base classes)."""

    section: ClassVar[str] = "reptile"
    inner_steps: int = 3
    """Inner policy-gradient steps per task (``k``)."""
    outer_step_size: float = 0.5
    """``epsilon``: how far ``theta`` moves towards the mean adapted parameters."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.inner_steps >= 1, "inner_steps", f"must be >= 1, got {self.inner_steps}")
        require(0 < self.outer_step_size <= 1, "outer_step_size",
                f"must be in (0, 1], got {self.outer_step_size}")

    def adaptation(self, episodes_per_task: int | None = None) -> MAMLConfig:
        """The inner loop in the form fastadapt's MAML sampling takes (first-order)."""
        return MAMLConfig(tasks_per_iteration=self.tasks_per_iteration,
                          episodes_per_task=episodes_per_task or self.episodes_per_task,
                          adaptation_steps=self.inner_steps, inner_lr=self.inner_lr,
                          first_order=True, gamma=self.gamma, gae_lambda=self.gae_lambda)


class Reptile(fastadapt.Algorithm[ReptileConfig]):
    """Reptile (Nichol et al. 2018): move the initialisation towards the adapted policies."""

    config_class = ReptileConfig
    adapts_by = "gradient_steps"

    def __init__(self, family: fastadapt.TaskFamily[Any], config: fastadapt.TrainConfig,
                 device: torch.device) -> None:
        super().__init__(family, config, device)
        torch.manual_seed(config.run.seed)
        self.policy: Policy = make_policy(int(np.prod(family.observation_space.shape)),
                                          family.action_space, config.policy.hidden_sizes,
                                          config.policy.activation, config.policy.init_std)
        self.theta = self.initial_parameters()

    def parameters(self) -> dict[str, torch.Tensor]:
        return self.theta

    def load_parameters(self, params: dict[str, torch.Tensor]) -> None:
        self.theta = params

    def train_iteration(self, sampler: Any, tasks: list[Any], fraction_done: float
                        ) -> fastadapt.Iteration:
        settings = self.settings
        batch = collect_meta_batch(sampler, self.policy, self.theta, tasks, settings.adaptation())
        adapted = adapt_steps(self.policy, expand_to_tasks(self.theta, len(tasks)), batch.train,
                              settings.inner_lr, first_order=True)
        step = {name: adapted[name].mean(0) - value for name, value in self.theta.items()}
        finite = all(bool(torch.isfinite(s).all()) for s in step.values())
        if finite:
            self.theta = {name: value + settings.outer_step_size * step[name]
                          for name, value in self.theta.items()}
        norm = float(torch.cat([s.reshape(-1) for s in step.values()]).norm())
        return fastadapt.Iteration(batch.env_steps, batch.returns,
                                   {"step_norm": norm, "kl": 0.0}, nonfinite=not finite)

    def make_agent(self, num_envs: int, seed: int = 0) -> Agent:
        """The agent ``fastadapt.load_agent`` returns: MAML's inner steps from ``theta``."""
        settings = self.settings
        return GradientAgent(self.policy, self.theta, settings.adaptation(), settings.inner_lr,
                             num_envs, self.family.observation_space, self.family.action_space,
                             self.device, seed)

    def meta_test(self, sampler: Any, tasks: list[Any], protocol: fastadapt.MetaTestProtocol
                  ) -> fastadapt.MetaTestCurves:
        batch = collect_meta_batch(sampler, self.policy, self.theta, tasks,
                                   self.settings.adaptation(protocol.episodes_per_task),
                                   protocol.adaptation_steps,
                                   valid_episodes_per_task=protocol.eval_episodes_per_task)
        return fastadapt.MetaTestCurves(torch.stack(batch.task_returns, dim=1).double().cpu(),
                                        protocol.episodes_per_task)


# Registers the algorithm when the module is imported (--plugin, plugins:).
fastadapt.register_algorithm("reptile", Reptile)
