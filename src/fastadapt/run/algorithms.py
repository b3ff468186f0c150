"""Which outer update a config's ``algorithm`` runs: one factory for every MAML-style
algorithm and the transfer baselines (RL² has its own runner,
:mod:`fastadapt.run.rl2_runner`)."""

from __future__ import annotations

from typing import Protocol

from torch import Tensor

from fastadapt.meta.curvature import InnerLoopJacobian
from fastadapt.meta.finetune import pretrainer
from fastadapt.meta.maml import MAMLTRPO, MetaBatch
from fastadapt.meta.outer import GradientMAML
from fastadapt.policies.mlp import Policy
from fastadapt.run.schema import TrainConfig
from fastadapt.types import Params


class OuterAlgorithm(Protocol):
    """The outer update of a meta-iteration, and the state it carries between them."""

    def step(self, theta: Params, meta_batch: MetaBatch) -> tuple[Params, dict[str, float]]:
        """New meta-parameters and scalar metrics from one meta-batch."""
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


def make_algorithm(config: TrainConfig, policy: Policy, theta: Params) -> OuterAlgorithm:
    """The outer update of ``config.algorithm`` (not ``rl2``) starting from ``theta``."""
    name = config.algorithm
    estimator = config.maml.resolved_estimator(name)
    if name == "maml-trpo":
        return MAMLTRPO(policy, config.maml, config.trpo)
    if name == "maml-vpg":
        return GradientMAML(policy, theta, config.maml, "vpg", config.maml_vpg, estimator)
    if name == "maml-ppo":
        return GradientMAML(policy, theta, config.maml, "ppo", config.maml_ppo, estimator)
    if name == "promp":
        return GradientMAML(policy, theta, config.maml, "ppo", config.promp, estimator)
    if name == "meta-sgd":
        return GradientMAML(policy, theta, config.maml, config.meta_sgd.objective,
                            config.meta_sgd, estimator, learn_inner_lr=True)
    return pretrainer(name, policy, config.finetune, config.trpo)
