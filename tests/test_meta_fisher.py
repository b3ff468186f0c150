"""The meta-Fisher-vector product of ``MAMLTRPO`` against double backward through a fresh inner
loop (the Hessian of the mean KL at ``theta_old``), in float64; the identity is in
``fastadapt.algorithms.maml.curvature``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from meta_problems import (
    F64,
    INNER_LR,
    E,
    Problem,
    T,
    distribution,
    reinforce_loss,
    task,
)
from torch import Tensor
from torch.distributions import kl_divergence
from torch.testing import assert_close

from fastadapt.algorithms.common.trpo import TRPOConfig
from fastadapt.algorithms.maml.adapt import adapt_steps, expand_to_tasks
from fastadapt.algorithms.maml.config import MAMLConfig
from fastadapt.algorithms.maml.curvature import InnerLoopJacobian
from fastadapt.algorithms.maml.meta_batch import MetaBatch
from fastadapt.algorithms.maml.trpo import MAMLTRPO
from fastadapt.types import Batch


def _reference_kl(problem: Problem, flat: Tensor, train: list[Batch], valid: Batch) -> Tensor:
    """``mean_i mean_steps KL(pi_{phi_i(theta_old)} || pi_{phi_i(theta)})`` through a fresh,
    differentiable inner loop; KL from ``torch.distributions``."""
    policy = problem.policy
    old = adapt_steps(policy, expand_to_tasks(problem.theta, T), train, INNER_LR)
    new = adapt_steps(policy, expand_to_tasks(problem.from_flat(flat), T), train, INNER_LR)
    per_task = []
    for i in range(T):
        old_i = {n: p[i].detach() for n, p in old.items()}
        new_i = {n: p[i] for n, p in new.items()}
        obs, masks = valid.observations[i], valid.masks[i]
        kl = kl_divergence(distribution(policy, old_i, obs), distribution(policy, new_i, obs))
        per_task.append((kl * masks).sum() / masks.sum())
    return torch.stack(per_task).mean()


def _hessian_vector_products(
    problem: Problem, vectors: list[Tensor], train: list[Batch], valid: Batch
) -> list[Tensor]:
    """Exact ``grad^2 KL(theta_old) v`` by double backward through the inner loop."""
    flat = problem.flat_theta().clone().requires_grad_(True)
    kl = _reference_kl(problem, flat, train, valid)
    assert abs(float(kl.detach())) < 1e-12  # theta_old: the KL and its gradient vanish
    (grad,) = torch.autograd.grad(kl, flat, create_graph=True)
    assert grad.abs().max() < 1e-10
    return [torch.autograd.grad(grad @ v, flat, retain_graph=True)[0] for v in vectors]


def _meta_fisher(problem: Problem, trpo: TRPOConfig) -> Callable[[Tensor], Tensor]:
    """The FVP exactly as ``MAMLTRPO.step`` builds it."""
    maml = MAMLConfig(
        tasks_per_iteration=T,
        episodes_per_task=E,
        adaptation_steps=len(problem.train),
        inner_lr=INNER_LR,
    )
    algorithm = MAMLTRPO(problem.policy, maml, trpo)
    jacobian = InnerLoopJacobian(problem.policy, problem.theta, problem.train, INNER_LR)
    meta_batch = MetaBatch(problem.train, problem.valid, [], 0)
    return algorithm._meta_fisher(problem.theta, meta_batch, jacobian)


@pytest.mark.parametrize("kind", ["gaussian", "categorical"])
@pytest.mark.parametrize("num_steps", [1, 2])
def test_meta_fisher_vector_product_equals_the_kl_hessian(
    float64: None, kind: str, num_steps: int
) -> None:
    problem = Problem(kind, num_steps)
    fvp = _meta_fisher(problem, TRPOConfig(cg_damping=0.0))
    generator = torch.Generator().manual_seed(8)
    vectors = [torch.randn(problem.flat_theta().shape, generator=generator) for _ in range(3)]
    expected = _hessian_vector_products(problem, vectors, problem.train, problem.valid)
    for v, hv in zip(vectors, expected, strict=True):
        assert_close(fvp(v), hv, rtol=1e-6, atol=1e-10)
    # Symmetric and positive semi-definite, as a Fisher must be.
    u, v = vectors[:2]
    assert_close(u @ fvp(v), v @ fvp(u), rtol=1e-10, atol=1e-12)
    assert all(float(x @ fvp(x)) > 0 for x in vectors)


def test_meta_fisher_adds_the_damping(float64: None) -> None:
    problem = Problem("gaussian", num_steps=1)
    v = torch.randn(problem.flat_theta().shape, generator=torch.Generator().manual_seed(9))
    undamped = _meta_fisher(problem, TRPOConfig(cg_damping=0.0))(v)
    assert_close(_meta_fisher(problem, TRPOConfig(cg_damping=0.1))(v), undamped + 0.1 * v)


def test_subsampled_meta_fisher_estimates_curvature_on_the_first_episodes(float64: None) -> None:
    """With ``fvp_subsample``, ``J_i`` uses inner Hessians of the first half of the episodes at
    the points of the full-data inner loop, and ``F_i`` is the KL Hessian at the full-data
    ``phi_i`` over the first half of the validation episodes (built here with explicit
    matrices from ``torch.autograd.functional``)."""
    problem = Problem("gaussian", num_steps=2)
    policy, half = problem.policy, E // 2
    fvp = _meta_fisher(problem, TRPOConfig(cg_damping=0.0, fvp_subsample=0.5))

    def first_half(batch: Batch) -> Batch:
        return Batch(*(x[:, :half] for x in batch))

    v = torch.randn(problem.flat_theta().shape, generator=torch.Generator().manual_seed(10))
    expected = torch.zeros_like(v)
    eye = torch.eye(v.numel(), dtype=F64)
    for i in range(T):
        point, jacobian = problem.flat_theta(), eye
        for batch in problem.train:
            full, sub = task(batch, i), task(first_half(batch), i)
            hessian = torch.autograd.functional.hessian(
                lambda f, b=sub: reinforce_loss(policy, problem.from_flat(f), b), point
            )
            jacobian = (eye - INNER_LR * hessian) @ jacobian
            gradient = torch.autograd.functional.jacobian(
                lambda f, b=full: reinforce_loss(policy, problem.from_flat(f), b), point
            )
            point = point - INNER_LR * gradient
        valid = task(first_half(problem.valid), i)
        old = distribution(policy, problem.from_flat(point), valid.observations)

        def kl(f: Tensor, old: Any = old, valid: Batch = valid) -> Tensor:
            new = distribution(policy, problem.from_flat(f), valid.observations)
            return (kl_divergence(old, new) * valid.masks).sum() / valid.masks.sum() / T

        fisher = torch.autograd.functional.hessian(kl, point)
        expected += jacobian.T @ fisher @ jacobian @ v
    assert_close(fvp(v), expected, rtol=1e-6, atol=1e-10)
