"""Small float64 MAML problems shared by the meta-gradient and meta-Fisher tests: a policy,
perturbed meta-parameters, K training batches and a validation batch, plus a REINFORCE loss and
action distributions written from ``torch.distributions`` (independent of the policies' own
``log_prob``/``kl``); and the float32 Navigation2D meta-batch of the TRPO and outer-loop tests.
Test modules import these from here, never from each other."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Categorical, Independent, Normal
from torch.func import functional_call, vmap
from torch.testing import assert_close

from fastadapt.algorithms.common.trpo import TRPOConfig, flatten, unflatten
from fastadapt.algorithms.maml.adapt import adapt_steps, expand_to_tasks, per_task_output
from fastadapt.algorithms.maml.config import MAMLConfig
from fastadapt.algorithms.maml.curvature import InnerLoopJacobian
from fastadapt.algorithms.maml.meta_batch import MetaBatch, collect_meta_batch
from fastadapt.algorithms.maml.trpo import MAMLTRPO
from fastadapt.envs.navigation import Navigation2D
from fastadapt.policies.mlp import CategoricalMLPPolicy, GaussianMLPPolicy
from fastadapt.sampling.vector import VectorSampler
from fastadapt.types import Batch, Params

F64 = torch.float64
T, E, H, OBS, A = 3, 4, 5, 2, 2  # tasks, episodes, horizon, observation and action sizes
# (the categorical policy has A + 1 actions)
HIDDEN = (8, 8)
INNER_LR = 0.1  # the second-order term moves the meta-gradient by 8-76%; 0.5 blows up log_std


class Problem:
    """A float64 policy, perturbed meta-parameters theta, K training batches and a valid batch."""

    def __init__(self, kind: str, num_steps: int, seed: int = 0) -> None:
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        self.discrete = kind == "categorical"
        policy: nn.Module
        if self.discrete:
            policy = CategoricalMLPPolicy(OBS, A + 1, HIDDEN)
        else:
            policy = GaussianMLPPolicy(OBS, A, HIDDEN, init_std=0.7)
        self.policy = policy.double()
        self.theta: Params = {
            n: (p + 0.3 * torch.randn(p.shape, generator=generator, dtype=F64)).detach()
            for n, p in self.policy.named_parameters()
        }
        self.train = [self._batch(generator) for _ in range(num_steps)]
        self.valid = self._batch(generator)

    def _batch(self, generator: torch.Generator) -> Batch:
        observations = torch.randn(T, E, H, OBS, generator=generator, dtype=F64)
        if self.discrete:
            actions = torch.randint(0, A + 1, (T, E, H), generator=generator)
        else:
            actions = torch.randn(T, E, H, A, generator=generator, dtype=F64)
        lengths = torch.randint(1, H + 1, (T, E), generator=generator)
        masks = (torch.arange(H) < lengths.unsqueeze(-1)).to(F64)
        advantages = torch.randn(T, E, H, generator=generator, dtype=F64) * masks
        return Batch(observations, actions, masks, advantages)

    def adapted(self, theta: Params, first_order: bool = False) -> Params:
        return adapt_steps(
            self.policy, expand_to_tasks(theta, T), self.train, INNER_LR, first_order
        )

    def flat_theta(self) -> Tensor:
        return flatten(self.theta)

    def from_flat(self, flat: Tensor) -> Params:
        return unflatten(flat, self.theta)


def task(batch: Batch, i: int) -> Batch:
    return Batch(*(x[i] for x in batch))


def distribution(policy: nn.Module, params: Params, obs: Tensor) -> Categorical | Independent:  # type: ignore[type-arg]
    """The policy's action distribution built with ``torch.distributions`` (independent of the
    policy's own ``log_prob``/``kl``)."""
    out = functional_call(policy, params, (obs,))
    if isinstance(policy, CategoricalMLPPolicy):
        return Categorical(logits=out)
    mean, log_std = out[..., :A], out[..., A:]
    return Independent(Normal(mean, log_std.exp()), 1)


def reinforce_loss(policy: nn.Module, params: Params, batch: Batch) -> Tensor:
    """One task's ``-sum(m log pi(a|s) A) / sum(m)``, written from the definition."""
    actions = distribution(policy, params, batch.observations)
    log_probs: Tensor = actions.log_prob(batch.actions)  # type: ignore[no-untyped-call]
    return -(log_probs * batch.advantages * batch.masks).sum() / batch.masks.sum()


def central_differences(f: Callable[[Tensor], Tensor], x: Tensor, eps: float = 1e-6) -> Tensor:
    """``d f / d x_j`` for every coordinate ``j`` by central differences, ``f: [P] -> scalar``.

    The ``2P`` evaluations run as one ``vmap`` over the shifted points (same values as a loop,
    60x faster).
    """
    shifts = eps * torch.eye(x.numel(), dtype=x.dtype)
    with torch.no_grad():
        values = vmap(f)(torch.cat([x + shifts, x - shifts]))
    return (values[: x.numel()] - values[x.numel() :]) / (2 * eps)


def adapted_log_probs(problem: Problem) -> Tensor:
    """``[T, E, H]`` log-probabilities of the validation actions under the adapted policies."""
    with torch.no_grad():
        adapted = problem.adapted(problem.theta)
        out = per_task_output(problem.policy, adapted, problem.valid.observations)
        return problem.policy.log_prob(out, problem.valid.actions)


def outer_gradient(problem: Problem, jacobian: InnerLoopJacobian, old_log_probs: Tensor) -> Tensor:
    """The meta-gradient as ``MAMLTRPO.step`` computes it: grad of the surrogate at the adapted
    parameters (``old_log_probs`` are theirs: the step takes them from the same forward pass),
    pulled back with ``InnerLoopJacobian.vjp`` (which sums over tasks)."""
    maml = MAMLTRPO(problem.policy, MAMLConfig(tasks_per_iteration=T), TRPOConfig())
    outer = maml._outer_gradient(jacobian.adapted, problem.valid)
    assert_close(problem.policy.log_prob(outer.out, problem.valid.actions), old_log_probs)
    assert_close(outer.log_probs, old_log_probs)
    return flatten(jacobian.vjp(outer.grads))


def navigation_meta_batch() -> tuple[GaussianMLPPolicy, Params, MetaBatch, MAMLConfig]:
    """A float32 MAML-TRPO meta-batch on Navigation2D: 3 tasks x 4 episodes of 10 steps."""
    torch.manual_seed(0)
    family = Navigation2D()
    policy = GaussianMLPPolicy(2, 2, (8, 8))
    theta = {n: p.detach().clone() for n, p in policy.named_parameters()}
    config = MAMLConfig(tasks_per_iteration=3, episodes_per_task=4, gamma=0.99, inner_lr=0.1)
    tasks = family.sample_tasks(np.random.default_rng(0), 3)
    sampler = VectorSampler(family, policy, horizon=10, seed=0)
    return policy, theta, collect_meta_batch(sampler, policy, theta, tasks, config), config
