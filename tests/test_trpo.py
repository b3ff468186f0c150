"""TRPO's pieces on hand-built problems: conjugate gradient on a known SPD system, the trust-region
scaling of the natural step on a quadratic KL, the backtracking line search, config checks; and
one whole MAML-TRPO step on Navigation2D (trust region kept, NaN advantages rejected)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from meta_problems import navigation_meta_batch
from torch.testing import assert_close

from fastadapt.algorithms.common.trpo import (
    TRPOConfig,
    backtracking_line_search,
    conjugate_gradient,
    flatten,
    natural_step,
    unflatten,
)
from fastadapt.algorithms.maml.adapt import adapt_steps, expand_to_tasks, per_task_output
from fastadapt.algorithms.maml.config import MAMLConfig
from fastadapt.algorithms.maml.curvature import InnerLoopJacobian
from fastadapt.algorithms.maml.losses import mean_kl
from fastadapt.algorithms.maml.meta_batch import MetaBatch, collect_meta_batch
from fastadapt.algorithms.maml.trpo import MAMLTRPO
from fastadapt.cli import main
from fastadapt.envs.navigation import Navigation2D
from fastadapt.errors import ConfigError
from fastadapt.policies.mlp import GaussianMLPPolicy
from fastadapt.sampling.vector import VectorSampler
from fastadapt.types import Params

F64 = torch.float64


def _spd_system() -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed 5x5 symmetric positive-definite matrix (eigenvalues 1..5) and a right-hand side."""
    generator = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(5, 5, generator=generator, dtype=F64))
    matrix = q @ torch.diag(torch.arange(1.0, 6.0, dtype=F64)) @ q.T
    return matrix, torch.randn(5, generator=generator, dtype=F64)


# --- conjugate gradient -----------------------------------------------------------------------


def test_conjugate_gradient_solves_a_known_spd_system() -> None:
    matrix, b = _spd_system()
    x, _ = conjugate_gradient(lambda v: matrix @ v, b, iterations=20)
    assert_close(x, torch.linalg.solve(matrix, b), rtol=0, atol=1e-8)
    assert_close(matrix @ x, b, rtol=0, atol=1e-8)


def test_conjugate_gradient_on_a_diagonal_system_is_exact() -> None:
    diagonal, b = torch.tensor([2.0, 4.0, 8.0], dtype=F64), torch.tensor([1.0, 1.0, 1.0], dtype=F64)
    x, _ = conjugate_gradient(lambda v: diagonal * v, b, iterations=3)
    assert_close(x, torch.tensor([0.5, 0.25, 0.125], dtype=F64), rtol=0, atol=1e-12)


def test_conjugate_gradient_first_iteration_is_the_steepest_descent_step() -> None:
    matrix, b = _spd_system()
    x, _ = conjugate_gradient(lambda v: matrix @ v, b, iterations=1)
    assert_close(x, (b @ b) / (b @ matrix @ b) * b)


def test_conjugate_gradient_stops_at_zero_residual() -> None:
    calls: list[int] = []

    def matvec(v: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return v

    x, _ = conjugate_gradient(matvec, torch.zeros(4, dtype=F64), iterations=10)
    assert calls == []
    assert torch.equal(x, torch.zeros(4, dtype=F64))


# --- natural step -----------------------------------------------------------------------------


def test_natural_step_reaches_the_trust_region_boundary_of_a_quadratic_kl() -> None:
    matrix, gradient = _spd_system()  # KL(s) = 0.5 s^T A s exactly
    config = TRPOConfig(max_kl=0.01, cg_iterations=20)
    step, predicted_kl = natural_step(gradient, lambda v: matrix @ v, config)
    assert_close(0.5 * step @ matrix @ step, torch.tensor(0.01, dtype=F64))
    assert predicted_kl == pytest.approx(0.01, rel=1e-10)
    # The direction is the natural gradient A^-1 g, scaled by a positive factor.
    direction = torch.linalg.solve(matrix, gradient)
    scale = (step @ direction) / (direction @ direction)
    assert scale > 0
    assert_close(step, scale * direction)
    assert_close(scale, torch.sqrt(0.01 / (0.5 * direction @ gradient)))


# --- line search ------------------------------------------------------------------------------


def _fraction_of(candidate: torch.Tensor) -> float:
    """The line search tries ``params - fraction * step``; with params 0 and step 1 it is -x."""
    return -float(candidate[0])


def _search(evaluate, steps: int = 15, max_kl: float = 0.02):  # type: ignore[no-untyped-def]
    config = TRPOConfig(max_kl=max_kl, line_search_steps=steps, line_search_backtrack=0.5)
    params, step = torch.zeros(2, dtype=F64), torch.ones(2, dtype=F64)
    return params, backtracking_line_search(evaluate, params, step, 0.0, config)


def test_line_search_accepts_the_full_step_when_it_improves_inside_the_region() -> None:
    params, (new, backtracks, loss, kl) = _search(lambda c: (-1.0, 0.001))
    assert backtracks == 0
    assert_close(new, params - torch.ones(2, dtype=F64))
    assert (loss, kl) == (-1.0, 0.001)


def test_line_search_backtracks_out_of_a_kl_violation() -> None:
    # kl = f^2 for fraction f = 1, 1/2, 1/4, 1/8: only 1/64 <= 0.02, after three backtracks.
    trials: list[float] = []

    def evaluate(candidate: torch.Tensor) -> tuple[float, float]:
        fraction = _fraction_of(candidate)
        trials.append(fraction)
        return -fraction, fraction**2

    _, (new, backtracks, loss, kl) = _search(evaluate)
    assert trials == [1.0, 0.5, 0.25, 0.125]
    assert backtracks == 3
    assert_close(new, torch.full((2,), -0.125, dtype=F64))
    assert (loss, kl) == (-0.125, 0.125**2)


def test_line_search_backtracks_until_the_loss_improves() -> None:
    # loss = f - 0.3 beats old_loss = 0 first at f = 1/4; an equal loss is not an improvement.
    def evaluate(candidate: torch.Tensor) -> tuple[float, float]:
        fraction = _fraction_of(candidate)
        return (0.0 if fraction == 1.0 else fraction - 0.3), 0.0

    _, (new, backtracks, loss, _) = _search(evaluate)
    assert backtracks == 2
    assert loss == pytest.approx(-0.05)
    assert_close(new, torch.full((2,), -0.25, dtype=F64))


@pytest.mark.parametrize("bad", [(math.nan, 0.0), (-1.0, math.nan), (-math.inf, 0.0)])
def test_line_search_rejects_non_finite_trials(bad: tuple[float, float]) -> None:
    calls: list[int] = []

    def evaluate(candidate: torch.Tensor) -> tuple[float, float]:
        calls.append(1)
        return bad

    params, (new, backtracks, loss, kl) = _search(evaluate, steps=7)
    assert len(calls) == 7
    assert backtracks is None
    assert new is params and torch.equal(new, torch.zeros(2, dtype=F64))
    assert (loss, kl) == (0.0, 0.0)


def test_line_search_rejects_when_no_trial_improves() -> None:
    params, (new, backtracks, loss, _) = _search(lambda c: (1.0, 0.0), steps=4)
    assert backtracks is None and new is params and loss == 0.0


# --- config and flat vectors ------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_kl": 0.0},
        {"max_kl": -1e-3},
        {"cg_iterations": 0},
        {"line_search_steps": 0},
        {"line_search_backtrack": 0.0},
        {"line_search_backtrack": 1.0},
        {"fvp_subsample": 0.0},
        {"fvp_subsample": 1.5},
    ],
)
def test_trpo_config_rejects_out_of_range_values(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        TRPOConfig(**kwargs)  # type: ignore[arg-type]


def test_trpo_config_is_frozen() -> None:
    config = TRPOConfig(fvp_subsample=1.0, line_search_backtrack=0.5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.max_kl = 1.0  # type: ignore[misc]


def test_flatten_unflatten_round_trip() -> None:
    params = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.tensor([7.0, 8.0])}
    flat = flatten(params)
    assert torch.equal(flat, torch.tensor([0.0, 1, 2, 3, 4, 5, 7, 8]))
    restored = unflatten(flat, params)
    assert list(restored) == ["w", "b"]
    assert all(torch.equal(restored[n], params[n]) for n in params)


def test_conjugate_gradient_residual_gives_the_curvature_without_a_product() -> None:
    generator = torch.Generator().manual_seed(3)
    factor = torch.randn(6, 6, dtype=F64, generator=generator)
    matrix = factor @ factor.T + 6 * torch.eye(6, dtype=F64)
    b = torch.randn(6, dtype=F64, generator=generator)
    for iterations in (1, 3, 6):
        x, residual = conjugate_gradient(lambda v: matrix @ v, b, iterations=iterations)
        torch.testing.assert_close(residual, b - matrix @ x, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(x @ (b - residual), x @ matrix @ x, rtol=1e-10, atol=1e-10)


# --- one MAML-TRPO step on Navigation2D (float32) -----------------------------------------------


def test_maml_trpo_step_improves_inside_the_trust_region() -> None:
    policy, theta, meta_batch, config = navigation_meta_batch()
    before = {n: p.clone() for n, p in theta.items()}
    trpo = TRPOConfig(max_kl=1e-2)
    new_theta, metrics = MAMLTRPO(policy, config, trpo).step(theta, meta_batch)

    assert all(torch.equal(theta[n], before[n]) for n in theta)  # theta is not modified
    assert metrics["nonfinite"] == 0.0
    assert metrics["step_accepted"] == 1.0
    assert metrics["loss_after"] < metrics["loss_before"]
    assert 0.0 < metrics["kl"] <= trpo.max_kl
    assert metrics["predicted_kl"] == pytest.approx(trpo.max_kl, rel=1e-3)
    assert (flatten(new_theta) - flatten(theta)).abs().max() > 0

    # The KL between the adapted policies, recomputed from the returned parameters.
    valid = meta_batch.valid
    with torch.no_grad():
        old = adapt_steps(policy, expand_to_tasks(theta, 3), meta_batch.train, config.inner_lr)
        new = adapt_steps(policy, expand_to_tasks(new_theta, 3), meta_batch.train, config.inner_lr)
        old_out = per_task_output(policy, old, valid.observations)
        new_out = per_task_output(policy, new, valid.observations)
        kl = float(mean_kl(policy, old_out, new_out, valid.masks))
    assert kl == pytest.approx(metrics["kl"], rel=1e-4)
    assert kl <= trpo.max_kl * (1 + 1e-5)


def test_maml_trpo_step_keeps_theta_on_a_nan_advantage() -> None:
    policy, theta, meta_batch, config = navigation_meta_batch()
    advantages = meta_batch.valid.advantages.clone()
    advantages[0, 0, 0] = float("nan")
    poisoned = meta_batch._replace(valid=meta_batch.valid._replace(advantages=advantages))
    new_theta, metrics = MAMLTRPO(policy, config, TRPOConfig()).step(theta, poisoned)
    assert metrics["nonfinite"] == 1.0
    assert metrics["step_accepted"] == 0.0
    assert all(torch.equal(new_theta[n], theta[n]) for n in theta)


@pytest.mark.parametrize("adaptation_steps", [1, 2])
def test_sampler_inner_loop_serves_the_step_with_the_same_result(adaptation_steps: int) -> None:
    """The Hessian caches built while sampling (``inner_loop``) give the step that rebuilding
    them from the training batches gives, and the sampling used exactly the step's phi."""
    torch.manual_seed(0)
    family, policy = Navigation2D(), GaussianMLPPolicy(2, 2, (8, 8))
    theta = {n: p.detach().clone() for n, p in policy.named_parameters()}
    config = MAMLConfig(tasks_per_iteration=3, episodes_per_task=4, inner_lr=0.1,
                        adaptation_steps=adaptation_steps)
    tasks = family.sample_tasks(np.random.default_rng(0), 3)
    algorithm = MAMLTRPO(policy, config, TRPOConfig())

    def collect(inner_loop: bool) -> MetaBatch:
        sampler = VectorSampler(family, policy, horizon=10, seed=0)
        return collect_meta_batch(sampler, policy, theta, tasks, config, inner_loop=(
            algorithm.inner_loop(theta, len(tasks)) if inner_loop else None))

    kept, plain = collect(True), collect(False)
    assert kept.inner_loop is not None and kept.inner_loop.steps == adaptation_steps
    assert algorithm._inner_loop_of(theta, kept) is kept.inner_loop
    for a, b in zip([*kept.train, kept.valid], [*plain.train, plain.valid], strict=True):
        torch.testing.assert_close(a.observations, b.observations, rtol=1e-5, atol=1e-5)
    # the parameters that sampled the validation batch (and that the step's outer loss
    # reads) are the plain inner steps' on the same batches
    with torch.no_grad():
        plain_phi = adapt_steps(policy, expand_to_tasks(theta, 3), kept.train, config.inner_lr,
                                first_order=True)
    for name, value in plain_phi.items():
        torch.testing.assert_close(kept.inner_loop.adapted[name], value, rtol=1e-5, atol=1e-6)
    reused, reused_metrics = algorithm.step(theta, kept)
    rebuilt, rebuilt_metrics = algorithm.step(theta, kept._replace(inner_loop=None))
    assert reused_metrics["step_accepted"] == rebuilt_metrics["step_accepted"] == 1.0
    for name in theta:  # the same computation, reordered: bit-identical
        assert torch.equal(reused[name], rebuilt[name]), name
    # a loop that is not fresh, or starts elsewhere, or adapts at another rate is refused
    sampler = VectorSampler(family, policy, horizon=10, seed=0)
    with pytest.raises(ValueError, match="fresh inner_loop"):
        collect_meta_batch(sampler, policy, theta, tasks, config, inner_loop=kept.inner_loop)
    with pytest.raises(ValueError, match=r"inner_lr 0\.1, not the 0\.2"):
        collect_meta_batch(sampler, policy, theta, tasks, config, inner_lr=0.2,
                           inner_loop=algorithm.inner_loop(theta, len(tasks)))
    # a loop of other parameters or other batches is not reused
    other = {n: p.clone() for n, p in theta.items()}
    assert algorithm._inner_loop_of(other, kept) is not kept.inner_loop
    swapped = kept._replace(train=plain.train)
    assert algorithm._inner_loop_of(theta, swapped) is not kept.inner_loop


def test_training_steps_reuse_the_sampler_inner_loop(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """``fastadapt train`` hands the sampler's inner loop to the step: the Hessian caches are
    built once per meta-iteration, not once while sampling and again in the step."""
    reused: list[bool] = []
    original = MAMLTRPO._inner_loop_of

    def spy(self: MAMLTRPO, theta: Params, meta_batch: MetaBatch) -> InnerLoopJacobian:
        result = original(self, theta, meta_batch)
        reused.append(meta_batch.inner_loop is not None and result is meta_batch.inner_loop)
        return result

    monkeypatch.setattr(MAMLTRPO, "_inner_loop_of", spy)
    assert main(["train", "maml-trpo/2d-navigation", "--run-dir",
                 str(tmp_path / "run"), "--set", "maml-trpo.tasks_per_iteration=3",
                 "--set", "maml-trpo.episodes_per_task=2", "--set", "env.horizon=5",
                 "--set", "policy.hidden_sizes=[8]", "--set", "run.tensorboard=false",
                 "--set", "run.num_threads=1", "--iterations", "3", "--quiet"]) == 0
    assert reused == [True, True, True]
