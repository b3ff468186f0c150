"""The MAML family as :class:`~fastadapt.algorithms.base.Algorithm` s: MAML-TRPO, MAML-VPG,
MAML-PPO, ProMP and Meta-SGD (Finn et al. 2017; Rothfuss et al. 2019; Li et al. 2017).

All share one iteration (:func:`~fastadapt.algorithms.maml.meta_batch.collect_meta_batch`,
then the outer step of their section) and one meta-test: on each held-out task, ``E`` episodes,
one inner policy-gradient step, repeated ``K`` times (Finn et al. 2017, §5.3). They differ in
the outer step: TRPO (:class:`~fastadapt.algorithms.maml.trpo.MAMLTRPO`) or Adam on a
first-order objective (:class:`~fastadapt.algorithms.maml.gradient.GradientMAML`). The
transfer baselines (:mod:`fastadapt.algorithms.transfer`) subclass :class:`GradientAdapted`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar, Protocol, TypeVar

import numpy as np
import torch
from torch import Tensor

from fastadapt.algorithms.agent import Agent
from fastadapt.algorithms.base import (
    Algorithm,
    C,
    Iteration,
    MetaTestCurves,
    MetaTestProtocol,
    example_paths,
)
from fastadapt.algorithms.maml.agent import GradientAgent
from fastadapt.algorithms.maml.config import (
    MAMLConfig,
    MAMLPPOConfig,
    MAMLTRPOConfig,
    MAMLVPGConfig,
    MetaSGDConfig,
    ProMPConfig,
)
from fastadapt.algorithms.maml.curvature import InnerLoopJacobian
from fastadapt.algorithms.maml.gradient import GradientMAML
from fastadapt.algorithms.maml.meta_batch import MetaBatch, collect_meta_batch
from fastadapt.algorithms.maml.trpo import MAMLTRPO
from fastadapt.config import AlgorithmConfig, TrainConfig
from fastadapt.envs.base import TaskFamily
from fastadapt.policies.mlp import Policy, make_policy
from fastadapt.sampling.base import Sampler
from fastadapt.sampling.success import SuccessRecorder
from fastadapt.types import Params

INNER_LR_GROUP = "inner_lr/"
"""Prefix of Meta-SGD's learned rates in policy files and checkpoints."""


class OuterStep(Protocol):
    """The learner of a gradient-adapted algorithm: the outer update of a meta-iteration, and
    the state it carries between them."""

    def step(self, theta: Params, meta_batch: MetaBatch) -> tuple[Params, dict[str, float]]:
        """New meta-parameters and scalar metrics from one meta-batch; the metrics hold
        ``nonfinite`` (1.0: a NaN/inf loss or gradient, ``theta`` returned unchanged)."""
        ...

    def inner_lr(self) -> float | Params:
        """The inner step size(s) to adapt with when sampling and evaluating."""
        ...

    def inner_loop(self, theta: Params, num_tasks: int) -> InnerLoopJacobian | None:
        """An inner loop for :func:`collect_meta_batch` whose caches :meth:`step` reuses
        (MAML-TRPO's Hessian products), or ``None`` to adapt with plain gradients."""
        ...

    def state_dict(self) -> dict[str, Tensor]:
        """Tensors a checkpoint must hold besides ``theta`` (optimizer moments, ...)."""
        ...

    def load_state_dict(self, tensors: dict[str, Tensor]) -> None:
        """Restore :meth:`state_dict`."""
        ...


class GradientAdapted(Algorithm[C]):
    """An MLP policy adapted at meta-test by MAML's inner policy-gradient steps.

    Subclasses give the sampling and adaptation settings (:meth:`adaptation`), the inner steps
    of a training iteration (:attr:`training_inner_steps`) and the learner, their outer step
    (:meth:`build_learner`).
    """

    training_inner_steps: ClassVar[int | None] = None
    """Inner steps per training iteration; ``None`` takes the section's ``adaptation_steps``
    (pretraining takes 0)."""

    def __init__(self, family: TaskFamily[Any], config: TrainConfig, device: torch.device
                 ) -> None:
        super().__init__(family, config, device)
        torch.manual_seed(config.run.seed)
        obs_dim = int(np.prod(self.family.observation_space.shape))
        policy = config.policy
        self.policy: Policy = make_policy(obs_dim, self.family.action_space,
                                          policy.hidden_sizes, policy.activation,
                                          policy.init_std)
        self.theta = self.initial_parameters()
        self.learner = self.build_learner()
        """The outer update and its state (optimizer moments, ...)."""

    def adaptation(self) -> MAMLConfig:
        """How episodes are sampled and adapted."""
        raise NotImplementedError

    def build_learner(self) -> OuterStep:
        """The outer update, starting from :attr:`theta`."""
        raise NotImplementedError

    def inner_lr(self) -> float | Params:
        """The inner step size(s) of sampling and meta-test (Meta-SGD: learned)."""
        return self.learner.inner_lr()

    def parameters(self) -> Params:
        return self.theta

    def load_parameters(self, params: Params) -> None:
        self.theta = params

    def state_dict(self) -> dict[str, Tensor]:
        return self.learner.state_dict()

    def load_state_dict(self, tensors: dict[str, Tensor]) -> None:
        self.learner.load_state_dict(tensors)

    def make_agent(self, num_envs: int, seed: int = 0) -> Agent:
        """A :class:`~fastadapt.algorithms.maml.agent.GradientAgent`: inner steps from
        :attr:`theta` with the meta-test's step size."""
        return GradientAgent(self.policy, self.theta, self.adaptation(), self.inner_lr(),
                             num_envs, self.family.observation_space, self.family.action_space,
                             self.device, seed)

    def train_iteration(self, sampler: Sampler, tasks: list[Any], fraction_done: float
                        ) -> Iteration:
        recorder = SuccessRecorder(sampler)  # success rates of families that report them
        meta_batch = collect_meta_batch(
            recorder, self.policy, self.theta, tasks, self.adaptation(),
            self.training_inner_steps, self.inner_lr(),
            inner_loop=self.learner.inner_loop(self.theta, len(tasks)),
        )
        self.theta, metrics = self.learner.step(self.theta, meta_batch)
        nonfinite = bool(metrics.pop("nonfinite"))
        return Iteration(meta_batch.env_steps, meta_batch.returns,
                         {**metrics, **recorder.before_after()}, nonfinite)

    def meta_test(self, sampler: Sampler, tasks: list[Any], protocol: MetaTestProtocol
                  ) -> MetaTestCurves:
        """For each task: ``E`` episodes, an inner step on them, ``K`` times, then
        ``eval_episodes_per_task`` episodes with the adapted policy (Finn et al. 2017, §5.3).
        Every sampler gives the same batches for a seed, so the curves do not depend on it."""
        settings = replace(self.adaptation(), episodes_per_task=protocol.episodes_per_task)
        last = protocol.eval_episodes_per_task or protocol.episodes_per_task
        recorder = SuccessRecorder(sampler)
        meta_batch = collect_meta_batch(recorder, self.policy, self.theta, tasks, settings,
                                        protocol.adaptation_steps, self.inner_lr(), last)
        rates = recorder.task_rates
        return MetaTestCurves(
            returns=torch.stack(meta_batch.task_returns, dim=1).double().cpu(),  # [N, K + 1]
            episodes_per_step=protocol.episodes_per_task,
            successes=torch.stack(rates, dim=1).double().cpu() if rates else None,
            unstable_episodes=recorder.unstable_episodes,
            trajectories=self._example_paths(meta_batch),
            extra={"eval_episodes_per_task": last},
        )

    def _example_paths(self, meta_batch: MetaBatch) -> list[dict[str, Any]] | None:
        """First episode of the first tasks, before (step 0) and after (step K) adaptation."""
        steps = [*meta_batch.train, meta_batch.valid]
        batches = (steps[0], steps[-1])

        def episode(i: int, which: int) -> Tensor:
            batch = batches[which]
            return batch.observations[i, 0, :int(batch.masks[i, 0].sum())]

        return example_paths(self.family, batches[0].masks.shape[0], episode)


M = TypeVar("M", bound=MAMLConfig)
V = TypeVar("V", bound=MAMLVPGConfig)


class MAMLAlgorithm(GradientAdapted[M]):
    """The MAML family: the section is the inner loop's settings."""

    def adaptation(self) -> MAMLConfig:
        return self.settings


class MAMLTRPOAlgorithm(MAMLAlgorithm[MAMLTRPOConfig]):
    """MAML-TRPO (Finn et al. 2017): exact meta-gradient, natural step, line search."""

    config_class = MAMLTRPOConfig

    @classmethod
    def updates_per_iteration(cls, section: AlgorithmConfig) -> int | None:
        """One natural-gradient step per meta-batch."""
        return 1

    def build_learner(self) -> OuterStep:
        return MAMLTRPO(self.policy, self.settings, self.settings.trpo)


class GradientMAMLAlgorithm(MAMLAlgorithm[V]):
    """MAML with an Adam outer step on a first-order objective (its section says which)."""

    @classmethod
    def updates_per_iteration(cls, section: AlgorithmConfig) -> int | None:
        """The outer Adam steps per meta-batch."""
        assert isinstance(section, MAMLVPGConfig)
        return section.outer_epochs

    def build_learner(self) -> OuterStep:
        return GradientMAML(self.policy, self.theta, self.settings)


class MAMLVPG(GradientMAMLAlgorithm[MAMLVPGConfig]):
    """MAML-VPG: one vanilla policy-gradient step through the inner loop per meta-batch."""

    config_class = MAMLVPGConfig


class MAMLPPO(GradientMAMLAlgorithm[MAMLPPOConfig]):
    """MAML-PPO: PPO's clipped surrogate of the post-update ratio."""

    config_class = MAMLPPOConfig


class ProMP(GradientMAMLAlgorithm[ProMPConfig]):
    """ProMP (Rothfuss et al. 2019): LVC inner estimator and a KL penalty on the pre-update
    policies."""

    config_class = ProMPConfig


class MetaSGD(GradientMAMLAlgorithm[MetaSGDConfig]):
    """Meta-SGD (Li et al. 2017): per-parameter inner rates learned with ``theta``; the rates
    belong to the result (policy file and checkpoints, ``inner_lr/<name>``)."""

    config_class = MetaSGDConfig

    def policy_extras(self) -> dict[str, Tensor]:
        rates = self.inner_lr()
        assert isinstance(rates, dict)
        return {INNER_LR_GROUP + name: lr for name, lr in rates.items()}

    def load_policy_extras(self, tensors: dict[str, Tensor]) -> None:
        assert isinstance(self.learner, GradientMAML)
        self.learner.load_inner_lrs({name: tensors[INNER_LR_GROUP + name].to(self.device)
                                     for name in self.theta})
