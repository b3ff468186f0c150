"""The inner loop and the meta-gradient against independent references, in float64.

- ``adapt`` (vmap over tasks) against a per-task Python loop with ``torch.autograd.grad``;
- ``InnerLoopJacobian`` products and the meta-gradient against central finite differences.

MAML-RL: Finn et al. 2017. The meta-Fisher is tested in ``test_meta_fisher.py``.
"""

from __future__ import annotations

import pytest
import torch
from meta_problems import (
    F64,
    INNER_LR,
    Problem,
    T,
    adapted_log_probs,
    central_differences,
    outer_gradient,
    reinforce_loss,
    task,
)
from torch import Tensor
from torch.testing import assert_close

from fastadapt.algorithms.common.trpo import TRPOConfig, flatten
from fastadapt.algorithms.maml.adapt import adapt, adapt_steps, expand_to_tasks
from fastadapt.algorithms.maml.config import MAMLConfig
from fastadapt.algorithms.maml.curvature import InnerLoopJacobian
from fastadapt.algorithms.maml.losses import surrogate_loss
from fastadapt.algorithms.maml.trpo import MAMLTRPO
from fastadapt.types import Params


def _loop_adapt(
    problem: Problem, theta: Params, inner_lr: float | Params, first_order: bool
) -> Params:
    """The inner loop one task at a time with ``torch.autograd.grad``: the reference."""
    per_task: list[Params] = []
    for i in range(T):
        params = dict(theta)
        for batch in problem.train:
            loss = reinforce_loss(problem.policy, params, task(batch, i))
            grads = torch.autograd.grad(loss, list(params.values()), create_graph=not first_order)
            params = {
                n: p - (inner_lr[n] if isinstance(inner_lr, dict) else inner_lr) * g
                for (n, p), g in zip(params.items(), grads, strict=True)
            }
        per_task.append(params)
    return {n: torch.stack([p[n] for p in per_task]) for n in theta}


def _meta_sgd_lr(problem: Problem) -> Params:
    """Per-parameter inner step sizes (Meta-SGD), positive and all different."""
    generator = torch.Generator().manual_seed(7)
    return {
        n: 0.1 + 0.8 * torch.rand(p.shape, generator=generator, dtype=F64)
        for n, p in problem.theta.items()
    }


def _dot(a: Params, b: Params) -> Tensor:
    return sum((a[n] * b[n]).sum() for n in a)  # type: ignore[return-value]


def _random_like(params: Params, seed: int) -> Params:
    generator = torch.Generator().manual_seed(seed)
    return {n: torch.randn(p.shape, generator=generator, dtype=F64) for n, p in params.items()}


# --- adapt: vmap over tasks == a per-task loop ------------------------------------------------


@pytest.mark.parametrize("kind", ["gaussian", "categorical"])
@pytest.mark.parametrize("num_steps", [1, 2])
@pytest.mark.parametrize("first_order", [False, True])
def test_adapt_batched_equals_per_task_loop(
    float64: None, kind: str, num_steps: int, first_order: bool
) -> None:
    problem = Problem(kind, num_steps)
    theta = {n: p.clone().requires_grad_(True) for n, p in problem.theta.items()}
    batched = adapt_steps(
        problem.policy, expand_to_tasks(theta, T), problem.train, INNER_LR, first_order
    )
    looped = _loop_adapt(problem, theta, INNER_LR, first_order)
    for name in theta:
        assert_close(batched[name], looped[name], rtol=0, atol=1e-10)
    # The graphs agree too: the gradient of a linear function of phi through both.
    weights = _random_like(batched, seed=1)
    grad_batched = torch.autograd.grad(_dot(weights, batched), list(theta.values()))
    grad_looped = torch.autograd.grad(_dot(weights, looped), list(theta.values()))
    for a, b in zip(grad_batched, grad_looped, strict=True):
        assert_close(a, b, rtol=0, atol=1e-10)


def test_adapt_with_meta_sgd_learning_rates_equals_per_task_loop(float64: None) -> None:
    problem = Problem("gaussian", num_steps=1)
    inner_lr = _meta_sgd_lr(problem)
    theta = {n: p.clone().requires_grad_(True) for n, p in problem.theta.items()}
    batched = adapt(problem.policy, expand_to_tasks(theta, T), problem.train[0], inner_lr)
    looped = _loop_adapt(problem, theta, inner_lr, first_order=False)
    for name in batched:
        assert_close(batched[name], looped[name], rtol=0, atol=1e-10)


def test_adapt_first_order_keeps_the_value_and_drops_the_hessian(float64: None) -> None:
    problem = Problem("gaussian", num_steps=1)
    theta = {n: p.clone().requires_grad_(True) for n, p in problem.theta.items()}
    exact = problem.adapted(theta, first_order=False)
    first = problem.adapted(theta, first_order=True)
    weights = _random_like(first, seed=2)
    for name in theta:  # first order computes the gradient by cached matmuls: same to rounding
        assert_close(first[name], exact[name], rtol=0, atol=1e-12)
    # d/dtheta <w, phi> = sum_i w_i for FOMAML (J = I).
    grads = torch.autograd.grad(_dot(weights, first), list(theta.values()))
    for name, g in zip(theta, grads, strict=True):
        assert_close(g, weights[name].sum(0), rtol=0, atol=1e-12)


# --- Jacobian products ------------------------------------------------------------------------


@pytest.mark.parametrize("num_steps", [1, 2])
@pytest.mark.parametrize("meta_sgd", [False, True])
def test_jacobian_vector_product_equals_finite_differences(
    float64: None, num_steps: int, meta_sgd: bool
) -> None:
    problem = Problem("gaussian", num_steps)
    inner_lr = _meta_sgd_lr(problem) if meta_sgd else INNER_LR
    jacobian = InnerLoopJacobian(problem.policy, problem.theta, problem.train, inner_lr)
    vector = _random_like(problem.theta, seed=3)
    jv = jacobian.jvp(vector)

    def phi(step: float) -> Params:
        theta = {n: p + step * vector[n] for n, p in problem.theta.items()}
        with torch.no_grad():
            return adapt_steps(problem.policy, expand_to_tasks(theta, T), problem.train, inner_lr)

    eps = 1e-6
    plus, minus = phi(eps), phi(-eps)
    assert_close(jacobian.adapted, phi(0.0), rtol=0, atol=1e-12)
    for name in jv:
        assert jv[name].shape == (T, *problem.theta[name].shape)
        assert_close(jv[name], (plus[name] - minus[name]) / (2 * eps), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("num_steps", [1, 2])
@pytest.mark.parametrize("meta_sgd", [False, True])
def test_vector_jacobian_product_is_the_transpose(
    float64: None, num_steps: int, meta_sgd: bool
) -> None:
    # <w, J v> == <J^T w, v>; with Meta-SGD J_i = I - diag(alpha) H_i is not symmetric.
    problem = Problem("categorical" if num_steps == 2 else "gaussian", num_steps)
    inner_lr = _meta_sgd_lr(problem) if meta_sgd else INNER_LR
    jacobian = InnerLoopJacobian(problem.policy, problem.theta, problem.train, inner_lr)
    for seed in range(3):
        v = _random_like(problem.theta, seed=10 + seed)
        w = _random_like(jacobian.adapted, seed=20 + seed)
        assert_close(_dot(w, jacobian.jvp(v)), _dot(jacobian.vjp(w), v), rtol=1e-12, atol=1e-12)


def test_jacobian_is_symmetric_only_with_a_scalar_learning_rate(float64: None) -> None:
    # J_0 = I - alpha H_0 is symmetric; with Meta-SGD, I - diag(alpha) H_0 is not.
    problem = Problem("gaussian", num_steps=1)
    v = _random_like(problem.theta, seed=4)
    first_task_only = {n: torch.stack([x, *[torch.zeros_like(x)] * (T - 1)]) for n, x in v.items()}
    asymmetry = {}
    for name, inner_lr in (("scalar", INNER_LR), ("meta_sgd", _meta_sgd_lr(problem))):
        jacobian = InnerLoopJacobian(problem.policy, problem.theta, problem.train, inner_lr)
        jv = flatten({n: x[0] for n, x in jacobian.jvp(v).items()})  # J_0 v
        jtv = flatten(jacobian.vjp(first_task_only))  # J_0^T v
        asymmetry[name] = float((jv - jtv).abs().max() / jv.abs().max())
    assert asymmetry["scalar"] < 1e-12
    assert asymmetry["meta_sgd"] > 1e-3


def test_first_order_jacobian_is_the_identity(float64: None) -> None:
    problem = Problem("gaussian", num_steps=2)
    jacobian = InnerLoopJacobian(
        problem.policy, problem.theta, problem.train, INNER_LR, first_order=True
    )
    v = _random_like(problem.theta, seed=5)
    w = _random_like(jacobian.adapted, seed=6)
    for name, x in jacobian.jvp(v).items():
        assert_close(x, v[name].expand(T, *v[name].shape), rtol=0, atol=0)
    for name, x in jacobian.vjp(w).items():
        assert_close(x, w[name].sum(0), rtol=0, atol=0)


# --- the meta-gradient ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["gaussian", "categorical"])
def test_outer_gradient_by_cached_matmuls_equals_autograd_through_vmap(
    float64: None, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    problem = Problem(kind, num_steps=1)
    jacobian = InnerLoopJacobian(problem.policy, problem.theta, problem.train, INNER_LR)
    maml = MAMLTRPO(problem.policy, MAMLConfig(tasks_per_iteration=T), TRPOConfig())
    products, fast_loss, fast, fast_out, _ = maml._outer_gradient(jacobian.adapted,
                                                                  problem.valid)
    assert products is not None
    monkeypatch.setattr("fastadapt.algorithms.maml.trpo.supports_fast_products",
                        lambda policy: False)
    products, loss, generic, out, _ = maml._outer_gradient(jacobian.adapted, problem.valid)
    assert products is None
    assert_close(fast_loss, loss, rtol=1e-12, atol=1e-14)
    assert_close(fast_out, out, rtol=1e-12, atol=1e-14)
    for name in generic:
        assert_close(fast[name], generic[name], rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("kind", ["gaussian", "categorical"])
@pytest.mark.parametrize("num_steps", [1, 2])
def test_meta_gradient_equals_finite_differences(float64: None, kind: str, num_steps: int) -> None:
    problem = Problem(kind, num_steps)
    old_log_probs = adapted_log_probs(problem)
    jacobian = InnerLoopJacobian(problem.policy, problem.theta, problem.train, INNER_LR)
    gradient = outer_gradient(problem, jacobian, old_log_probs)

    def outer_loss(flat: Tensor) -> Tensor:
        adapted = problem.adapted(problem.from_flat(flat))
        return surrogate_loss(problem.policy, adapted, problem.valid, old_log_probs)[0]

    expected = central_differences(outer_loss, problem.flat_theta())
    assert gradient.shape == expected.shape
    assert_close(gradient, expected, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("num_steps", [1, 2])
def test_first_order_meta_gradient_is_fomaml(float64: None, num_steps: int) -> None:
    problem = Problem("gaussian", num_steps)
    old_log_probs = adapted_log_probs(problem)
    exact = InnerLoopJacobian(problem.policy, problem.theta, problem.train, INNER_LR)
    first = InnerLoopJacobian(
        problem.policy, problem.theta, problem.train, INNER_LR, first_order=True
    )
    gradient = outer_gradient(problem, first, old_log_probs)

    # FOMAML: the inner updates are constants, phi_i(theta) = theta - (theta_0 - phi_i(theta_0)).
    offsets = {n: problem.theta[n] - exact.adapted[n] for n in problem.theta}

    def fomaml_loss(flat: Tensor) -> Tensor:
        theta = problem.from_flat(flat)
        adapted = {n: theta[n] - offsets[n] for n in theta}
        return surrogate_loss(problem.policy, adapted, problem.valid, old_log_probs)[0]

    assert_close(
        gradient, central_differences(fomaml_loss, problem.flat_theta()), rtol=1e-6, atol=1e-9
    )
    # Explicitly: sum_i grad_phi L_out_i at phi_i, with L_out = mean_i L_out_i.
    leaf = {n: p.detach().requires_grad_(True) for n, p in exact.adapted.items()}
    loss, _ = surrogate_loss(problem.policy, leaf, problem.valid, old_log_probs)
    per_task = torch.autograd.grad(loss, list(leaf.values()))
    assert_close(gradient, flatten({n: g.sum(0) for n, g in zip(leaf, per_task, strict=True)}))
    # ... and it is not the exact meta-gradient.
    second = outer_gradient(problem, exact, old_log_probs)
    assert (gradient - second).norm() > 1e-2 * second.norm()
