"""MAML-VPG, MAML-PPO, ProMP and Meta-SGD (``fastadapt.algorithms.maml.gradient``) against
independent references: the VPG meta-gradient against MAML-TRPO's (cached Jacobian products),
Meta-SGD's rate gradient against finite differences, the ProMP objective against
``torch.distributions``, hand-computed E-MAML term and KL-penalty schedule; then steps,
checkpoints and bad input."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

import pytest
import torch
from meta_problems import (
    INNER_LR,
    Problem,
    T,
    adapted_log_probs,
    central_differences,
    distribution,
    navigation_meta_batch,
    outer_gradient,
)
from torch import Tensor
from torch.distributions import kl_divergence
from torch.testing import assert_close

from fastadapt.algorithms.common.trpo import TRPOConfig, flatten, unflatten
from fastadapt.algorithms.maml.adapt import adapt_steps, expand_to_tasks
from fastadapt.algorithms.maml.config import (
    MAMLConfig,
    MAMLPPOConfig,
    MAMLTRPOConfig,
    MAMLVPGConfig,
    MetaSGDConfig,
    ProMPConfig,
)
from fastadapt.algorithms.maml.curvature import InnerLoopJacobian
from fastadapt.algorithms.maml.estimators import emaml_term
from fastadapt.algorithms.maml.gradient import GradientMAML, adapted_kl_coef
from fastadapt.algorithms.maml.meta_batch import MetaBatch
from fastadapt.algorithms.maml.trpo import MAMLTRPO
from fastadapt.errors import ConfigError
from fastadapt.run.config_loading import load_train_config
from fastadapt.types import Params

C = TypeVar("C", bound=MAMLVPGConfig)


def _meta_batch(problem: Problem) -> MetaBatch:
    returns = [torch.zeros(T) for _ in range(len(problem.train) + 1)]
    return MetaBatch(problem.train, problem.valid, returns, 0)


def _maml(section: type[C], num_steps: int, **kwargs: Any) -> C:
    """``section`` with the small problems' inner loop (``kwargs``: its other keys)."""
    return section(tasks_per_iteration=T, adaptation_steps=num_steps, inner_lr=INNER_LR,
                   **kwargs)


def _like(section: type[C], maml: MAMLConfig, **kwargs: Any) -> C:
    """``section`` with ``maml``'s inner-loop keys (``kwargs``: its other keys)."""
    inner = {f.name: getattr(maml, f.name) for f in dataclasses.fields(MAMLConfig)}
    return section(**{**inner, **kwargs})


def _gradient(loss: Tensor, params: Params) -> Tensor:
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(params.values()))])


@pytest.mark.parametrize("kind", ["gaussian", "categorical"])
@pytest.mark.parametrize("num_steps", [1, 2])
def test_vpg_meta_gradient_equals_the_trpo_meta_gradient(float64: None, kind: str,
                                                         num_steps: int) -> None:
    """Autograd through ``torch.func`` (GradientMAML) == cached Jacobian products (MAMLTRPO)."""
    problem = Problem(kind, num_steps)
    meta_batch = _meta_batch(problem)
    learner = GradientMAML(problem.policy, problem.theta,
                           _maml(MAMLVPGConfig, num_steps, estimator="maml"))
    leaf = {n: p.clone().requires_grad_(True) for n, p in problem.theta.items()}
    loss, _ = learner.outer_loss(leaf, INNER_LR, meta_batch,
                                 learner.reference(problem.theta, meta_batch))
    jacobian = InnerLoopJacobian(problem.policy, problem.theta, problem.train, INNER_LR)
    expected = outer_gradient(problem, jacobian, adapted_log_probs(problem))
    assert_close(_gradient(loss, leaf), expected, rtol=1e-9, atol=1e-12)


def test_meta_sgd_rate_gradient_equals_finite_differences(float64: None) -> None:
    problem = Problem("gaussian", 2)
    meta_batch = _meta_batch(problem)
    # lvc: its surrogate is differentiated as written (the maml form stops the gradient of the
    # importance weights the rates introduce at step 2, by design), so FD is its reference
    learner = GradientMAML(problem.policy, problem.theta,
                           _maml(MetaSGDConfig, 2, objective="vpg", estimator="lvc"))
    reference = learner.reference(problem.theta, meta_batch)
    generator = torch.Generator().manual_seed(3)
    rates = {n: 0.05 + 0.1 * torch.rand(p.shape, generator=generator, dtype=torch.float64)
             for n, p in problem.theta.items()}

    def loss_of_rates(flat: Tensor) -> Tensor:
        return learner.outer_loss(problem.theta, unflatten(flat, rates), meta_batch,
                                  reference)[0]

    leaf = {n: r.clone().requires_grad_(True) for n, r in rates.items()}
    gradient = _gradient(learner.outer_loss(problem.theta, leaf, meta_batch, reference)[0],
                         leaf)
    expected = central_differences(loss_of_rates, flatten(rates))
    assert gradient.abs().max() > 1e-4  # the rates do move the outer loss
    assert_close(gradient, expected, rtol=1e-5, atol=1e-7)  # FD truncation ~3e-8 here


def test_promp_objective_equals_its_definition(float64: None) -> None:
    """Clipped surrogate + eta * mean_k KL(pi_old^(k) || pi^(k)), away from theta_old."""
    problem = Problem("gaussian", 2)
    meta_batch = _meta_batch(problem)
    config = _maml(ProMPConfig, 2, clip_ratio=0.2, init_kl_coef=0.3, estimator="lvc")
    learner = GradientMAML(problem.policy, problem.theta, config)
    reference = learner.reference(problem.theta, meta_batch)
    generator = torch.Generator().manual_seed(5)
    moved = {n: p + 0.05 * torch.randn(p.shape, generator=generator, dtype=torch.float64)
             for n, p in problem.theta.items()}
    loss, stats = learner.outer_loss(moved, INNER_LR, meta_batch, reference)

    policy = problem.policy
    old = [expand_to_tasks(problem.theta, T)]
    for batch in problem.train:
        old.append(adapt_steps(policy, old[-1], [batch], INNER_LR))
    # the moved inner steps reuse theta_old's episodes, weighted by pi_new / pi_old
    new: list[Params] = [{n: p.clone() for n, p in expand_to_tasks(moved, T).items()}]
    for k, batch in enumerate(problem.train):
        step: dict[str, list[Tensor]] = {n: [] for n in moved}
        for i in range(T):
            params = {n: p[i].detach().requires_grad_(True) for n, p in new[k].items()}
            old_i = {n: p[i] for n, p in old[k].items()}
            obs, actions = batch.observations[i], batch.actions[i]
            ratio = (distribution(policy, params, obs).log_prob(actions)
                     - distribution(policy, old_i, obs).log_prob(actions)).exp()
            inner = -(ratio * batch.advantages[i] * batch.masks[i]).sum() / batch.masks[i].sum()
            grads = torch.autograd.grad(inner, list(params.values()))
            for (n, p), g in zip(params.items(), grads, strict=True):
                step[n].append(p.detach() - INNER_LR * g)
        new.append({n: torch.stack(v) for n, v in step.items()})
    valid = problem.valid
    per_task = []
    for i in range(T):
        params_new = {n: p[i] for n, p in new[-1].items()}
        params_old = {n: p[i] for n, p in old[-1].items()}
        log_new = distribution(policy, params_new, valid.observations[i]).log_prob(
            valid.actions[i])
        log_old = distribution(policy, params_old, valid.observations[i]).log_prob(
            valid.actions[i])
        ratio = (log_new - log_old).exp()
        adv, mask = valid.advantages[i], valid.masks[i]
        objective = torch.minimum(ratio * adv, ratio.clamp(0.8, 1.2) * adv)
        per_task.append((objective * mask).sum() / mask.sum())
    kls = []
    for k, batch in enumerate(problem.train):
        task_kls = []
        for i in range(T):
            p_old = distribution(policy, {n: p[i] for n, p in old[k].items()},
                                  batch.observations[i])
            p_new = distribution(policy, {n: p[i] for n, p in new[k].items()},
                                  batch.observations[i])
            kl = kl_divergence(p_old, p_new)
            task_kls.append((kl * batch.masks[i]).sum() / batch.masks[i].sum())
        kls.append(torch.stack(task_kls).mean())
    inner_kl = torch.stack(kls).mean()
    assert inner_kl > 1e-4  # step 0 compares theta_old with moved theta
    assert_close(loss, -torch.stack(per_task).mean() + 0.3 * inner_kl)
    assert float(stats["inner_kl"]) == pytest.approx(float(inner_kl))


def test_emaml_term_hand_computed() -> None:
    log_probs = [torch.tensor([[[-1.0, -2.0]], [[-0.5, -9.0]]])]  # [T=2, E=1, H=2]
    masks = [torch.tensor([[[1.0, 1.0]], [[1.0, 0.0]]])]
    post_returns = torch.tensor([3.0, 1.0])  # centred: [1, -1]
    # scores: task 0: -3, task 1: -0.5 (the masked step is ignored)
    expected = -((-3.0 * 1.0) + (-0.5 * -1.0)) / 2
    assert float(emaml_term(log_probs, masks, post_returns)) == pytest.approx(expected)


def test_adaptive_kl_coefficient_halves_and_doubles_around_the_target() -> None:
    coef = torch.tensor(1.0)
    assert float(adapted_kl_coef(coef, 0.005, 0.01)) == 0.5  # < 0.01 / 1.5
    assert float(adapted_kl_coef(coef, 0.02, 0.01)) == 2.0  # > 0.015
    assert float(adapted_kl_coef(coef, 0.01, 0.01)) == 1.0


@pytest.mark.parametrize("algorithm", ["maml-ppo", "promp", "meta-sgd"])
def test_step_improves_and_resumes_bit_identically_from_its_state(algorithm: str) -> None:
    policy, theta, meta_batch, config = navigation_meta_batch()

    def learner() -> GradientMAML:
        if algorithm == "meta-sgd":
            return GradientMAML(policy, theta, _like(MetaSGDConfig, config, objective="ppo",
                                                     estimator="maml"))
        section = (_like(ProMPConfig, config, adaptive_kl_coef=True, estimator="lvc")
                   if algorithm == "promp" else _like(MAMLPPOConfig, config, estimator="maml"))
        return GradientMAML(policy, theta, section)

    first = learner()
    theta1, metrics = first.step(theta, meta_batch)
    assert metrics["nonfinite"] == 0.0 and metrics["step_accepted"] == 1.0
    assert metrics["loss_last_epoch"] < metrics["loss_before"]
    assert 0.0 < metrics["kl"] < 0.2
    state = first.state_dict()  # Adam moments, eta after one step
    rates = first.inner_lr()  # Meta-SGD's rates: copied, as the next step moves them in place
    rates = {n: r.clone() for n, r in rates.items()} if isinstance(rates, dict) else rates
    expected, _ = first.step(theta1, meta_batch)

    restored = learner()
    restored.load_state_dict(state)
    if isinstance(rates, dict):
        restored.load_inner_lrs(rates)
    resumed, _ = restored.step(theta1, meta_batch)
    for name in theta:
        assert torch.equal(resumed[name], expected[name]), name


def test_meta_sgd_learns_its_rates_and_adapts_with_them() -> None:
    policy, theta, meta_batch, config = navigation_meta_batch()
    learner = GradientMAML(policy, theta, _like(MetaSGDConfig, config, objective="ppo",
                                                learning_rate=0.01, estimator="maml"))
    assert learner.inner_lr() != config.inner_lr
    _, metrics = learner.step(theta, meta_batch)
    rates = learner.inner_lr()
    assert isinstance(rates, dict)
    assert metrics["inner_lr_std"] > 0  # rates moved, each parameter its own way
    assert {n: r.shape for n, r in rates.items()} == {n: p.shape for n, p in theta.items()}


def test_nonfinite_advantage_keeps_theta_and_says_so() -> None:
    policy, theta, meta_batch, config = navigation_meta_batch()
    advantages = meta_batch.valid.advantages.clone()
    advantages[0, 0, 0] = float("nan")
    poisoned = meta_batch._replace(valid=meta_batch.valid._replace(advantages=advantages))
    learner = GradientMAML(policy, theta, _like(MAMLPPOConfig, config, estimator="maml"))
    new_theta, metrics = learner.step(theta, poisoned)
    assert metrics["nonfinite"] == 1.0 and metrics["step_accepted"] == 0.0
    assert all(torch.equal(new_theta[n], theta[n]) for n in theta)


def test_emaml_with_trpo_and_bad_sections_are_config_errors() -> None:
    policy, _, _, _ = navigation_meta_batch()
    with pytest.raises(ConfigError, match="emaml"):
        MAMLTRPO(policy, MAMLTRPOConfig(estimator="emaml"), TRPOConfig())
    # the section's range errors name the dotted key as the config is built
    with pytest.raises(ConfigError, match=r"promp\.clip_ratio"):
        load_train_config("promp/2d-navigation", ["promp.clip_ratio=1.5"])
    with pytest.raises(ConfigError, match=r"maml-vpg\.learning_rate"):
        load_train_config("maml-vpg/2d-navigation", ["maml-vpg.learning_rate=0.0"])
