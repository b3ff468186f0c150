"""The meta-gradient and the meta-Fisher against independent references, in float64.

- ``adapt`` (vmap over tasks) against a per-task Python loop with ``torch.autograd.grad``;
- ``InnerLoopJacobian`` products and the meta-gradient against central finite differences;
- the meta-Fisher-vector product of ``MAMLTRPO`` against double backward through a fresh inner
  loop (the Hessian of the mean KL at ``theta_old``);
- one ``MAMLTRPO.step`` on Navigation2D.

MAML-RL: Finn et al. 2017; the meta-Fisher identity is in ``fastadapt.meta.curvature``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor, nn
from torch.distributions import Categorical, Independent, Normal, kl_divergence
from torch.func import functional_call, vmap
from torch.testing import assert_close

from fastadapt.meta.adapt import adapt, adapt_steps, expand_to_tasks, per_task_output
from fastadapt.meta.curvature import InnerLoopJacobian
from fastadapt.meta.losses import surrogate_loss
from fastadapt.meta.maml import MAMLTRPO, MAMLConfig, MetaBatch
from fastadapt.meta.trpo import TRPOConfig, flatten, unflatten
from fastadapt.policies.mlp import CategoricalMLPPolicy, GaussianMLPPolicy
from fastadapt.types import Batch, Params

F64 = torch.float64
T, E, H, OBS, A = 3, 4, 5, 2, 2  # tasks, episodes, horizon, observation and action sizes
# (the categorical policy has A + 1 actions)
HIDDEN = (8, 8)
INNER_LR = 0.1  # the second-order term moves the meta-gradient by 8-76%; 0.5 blows up log_std


# --- problems -------------------------------------------------------------------------------


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


def _task(batch: Batch, i: int) -> Batch:
    return Batch(*(x[i] for x in batch))


def _distribution(policy: nn.Module, params: Params, obs: Tensor) -> Categorical | Independent:  # type: ignore[type-arg]
    """The policy's action distribution built with ``torch.distributions`` (independent of the
    policy's own ``log_prob``/``kl``)."""
    out = functional_call(policy, params, (obs,))
    if isinstance(policy, CategoricalMLPPolicy):
        return Categorical(logits=out)
    mean, log_std = out[..., :A], out[..., A:]
    return Independent(Normal(mean, log_std.exp()), 1)


def _reinforce_loss(policy: nn.Module, params: Params, batch: Batch) -> Tensor:
    """One task's ``-sum(m log pi(a|s) A) / sum(m)``, written from the definition."""
    distribution = _distribution(policy, params, batch.observations)
    log_probs: Tensor = distribution.log_prob(batch.actions)  # type: ignore[no-untyped-call]
    return -(log_probs * batch.advantages * batch.masks).sum() / batch.masks.sum()


def _loop_adapt(
    problem: Problem, theta: Params, inner_lr: float | Params, first_order: bool
) -> Params:
    """The inner loop one task at a time with ``torch.autograd.grad``: the reference."""
    per_task: list[Params] = []
    for i in range(T):
        params = dict(theta)
        for batch in problem.train:
            loss = _reinforce_loss(problem.policy, params, _task(batch, i))
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


def _central_differences(f: Callable[[Tensor], Tensor], x: Tensor, eps: float = 1e-6) -> Tensor:
    """``d f / d x_j`` for every coordinate ``j`` by central differences, ``f: [P] -> scalar``.

    The ``2P`` evaluations run as one ``vmap`` over the shifted points (same values as a loop,
    60x faster).
    """
    shifts = eps * torch.eye(x.numel(), dtype=x.dtype)
    with torch.no_grad():
        values = vmap(f)(torch.cat([x + shifts, x - shifts]))
    return (values[: x.numel()] - values[x.numel() :]) / (2 * eps)


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


def _outer_gradient(problem: Problem, jacobian: InnerLoopJacobian, old_log_probs: Tensor) -> Tensor:
    """The meta-gradient as ``MAMLTRPO.step`` computes it: grad of the surrogate at the adapted
    parameters (``old_log_probs`` are theirs: the step takes them from the same forward pass),
    pulled back with ``InnerLoopJacobian.vjp`` (which sums over tasks)."""
    maml = MAMLTRPO(problem.policy, MAMLConfig(meta_batch_size=T), TRPOConfig())
    outer = maml._outer_gradient(jacobian.adapted, problem.valid)
    assert_close(problem.policy.log_prob(outer.out, problem.valid.actions), old_log_probs)
    assert_close(outer.log_probs, old_log_probs)
    return flatten(jacobian.vjp(outer.grads))


@pytest.mark.parametrize("kind", ["gaussian", "categorical"])
def test_outer_gradient_by_cached_matmuls_equals_autograd_through_vmap(
    float64: None, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    problem = Problem(kind, num_steps=1)
    jacobian = InnerLoopJacobian(problem.policy, problem.theta, problem.train, INNER_LR)
    maml = MAMLTRPO(problem.policy, MAMLConfig(meta_batch_size=T), TRPOConfig())
    products, fast_loss, fast, fast_out, _ = maml._outer_gradient(jacobian.adapted,
                                                                  problem.valid)
    assert products is not None
    monkeypatch.setattr("fastadapt.meta.maml.supports_fast_products", lambda policy: False)
    products, loss, generic, out, _ = maml._outer_gradient(jacobian.adapted, problem.valid)
    assert products is None
    assert_close(fast_loss, loss, rtol=1e-12, atol=1e-14)
    assert_close(fast_out, out, rtol=1e-12, atol=1e-14)
    for name in generic:
        assert_close(fast[name], generic[name], rtol=1e-10, atol=1e-13)


def _old_log_probs(problem: Problem) -> Tensor:
    with torch.no_grad():
        adapted = problem.adapted(problem.theta)
        out = per_task_output(problem.policy, adapted, problem.valid.observations)
        return problem.policy.log_prob(out, problem.valid.actions)


@pytest.mark.parametrize("kind", ["gaussian", "categorical"])
@pytest.mark.parametrize("num_steps", [1, 2])
def test_meta_gradient_equals_finite_differences(float64: None, kind: str, num_steps: int) -> None:
    problem = Problem(kind, num_steps)
    old_log_probs = _old_log_probs(problem)
    jacobian = InnerLoopJacobian(problem.policy, problem.theta, problem.train, INNER_LR)
    gradient = _outer_gradient(problem, jacobian, old_log_probs)

    def outer_loss(flat: Tensor) -> Tensor:
        adapted = problem.adapted(problem.from_flat(flat))
        return surrogate_loss(problem.policy, adapted, problem.valid, old_log_probs)[0]

    expected = _central_differences(outer_loss, problem.flat_theta())
    assert gradient.shape == expected.shape
    assert_close(gradient, expected, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("num_steps", [1, 2])
def test_first_order_meta_gradient_is_fomaml(float64: None, num_steps: int) -> None:
    problem = Problem("gaussian", num_steps)
    old_log_probs = _old_log_probs(problem)
    exact = InnerLoopJacobian(problem.policy, problem.theta, problem.train, INNER_LR)
    first = InnerLoopJacobian(
        problem.policy, problem.theta, problem.train, INNER_LR, first_order=True
    )
    gradient = _outer_gradient(problem, first, old_log_probs)

    # FOMAML: the inner updates are constants, phi_i(theta) = theta - (theta_0 - phi_i(theta_0)).
    offsets = {n: problem.theta[n] - exact.adapted[n] for n in problem.theta}

    def fomaml_loss(flat: Tensor) -> Tensor:
        theta = problem.from_flat(flat)
        adapted = {n: theta[n] - offsets[n] for n in theta}
        return surrogate_loss(problem.policy, adapted, problem.valid, old_log_probs)[0]

    assert_close(
        gradient, _central_differences(fomaml_loss, problem.flat_theta()), rtol=1e-6, atol=1e-9
    )
    # Explicitly: sum_i grad_phi L_out_i at phi_i, with L_out = mean_i L_out_i.
    leaf = {n: p.detach().requires_grad_(True) for n, p in exact.adapted.items()}
    loss, _ = surrogate_loss(problem.policy, leaf, problem.valid, old_log_probs)
    per_task = torch.autograd.grad(loss, list(leaf.values()))
    assert_close(gradient, flatten({n: g.sum(0) for n, g in zip(leaf, per_task, strict=True)}))
    # ... and it is not the exact meta-gradient.
    second = _outer_gradient(problem, exact, old_log_probs)
    assert (gradient - second).norm() > 1e-2 * second.norm()


# --- the meta-Fisher --------------------------------------------------------------------------


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
        kl = kl_divergence(_distribution(policy, old_i, obs), _distribution(policy, new_i, obs))
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
        meta_batch_size=T,
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
            full, sub = _task(batch, i), _task(first_half(batch), i)
            hessian = torch.autograd.functional.hessian(
                lambda f, b=sub: _reinforce_loss(policy, problem.from_flat(f), b), point
            )
            jacobian = (eye - INNER_LR * hessian) @ jacobian
            gradient = torch.autograd.functional.jacobian(
                lambda f, b=full: _reinforce_loss(policy, problem.from_flat(f), b), point
            )
            point = point - INNER_LR * gradient
        valid = _task(first_half(problem.valid), i)
        old = _distribution(policy, problem.from_flat(point), valid.observations)

        def kl(f: Tensor, old: Any = old, valid: Batch = valid) -> Tensor:
            new = _distribution(policy, problem.from_flat(f), valid.observations)
            return (kl_divergence(old, new) * valid.masks).sum() / valid.masks.sum() / T

        fisher = torch.autograd.functional.hessian(kl, point)
        expected += jacobian.T @ fisher @ jacobian @ v
    assert_close(fvp(v), expected, rtol=1e-6, atol=1e-10)
