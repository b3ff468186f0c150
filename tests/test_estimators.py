"""Meta-gradient estimators against their definitions, on a problem whose expectations are
computed exactly by enumerating every trajectory.

The MDP: states {0, 1}, actions {0, 1}, ``s' = a`` (the action moves the agent), start in 0,
horizon 2, rewards ``R[s, a]``; a linear softmax policy on the one-hot state (6 parameters).
``J(theta)`` = expected return per step, computed exactly over the 4 action sequences.
Batches use the reward-to-go as advantage (no baseline), so every estimator's sample mean has
a known limit:

- the inner loss's Hessian: ``dice`` is unbiased for ``-grad^2 J``; ``maml`` and ``lvc`` are
  not (here the first action changes the second state, so LVC's dropped cross-time terms
  matter); on i.i.d. steps (a stateless bandit) ``lvc`` is unbiased too;
- the meta-gradient of the expected-update objective ``J(theta + alpha grad J(theta))``;
- E-MAML: the gradient of the sampled-update objective ``E_tau[J(theta + alpha g(tau))]``.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import Tensor
from torch.func import functional_call, grad, hessian

from fastadapt.algorithms.common.trpo import flatten, unflatten
from fastadapt.algorithms.maml.adapt import adapt, expand_to_tasks, inner_loss, per_task_output
from fastadapt.algorithms.maml.estimators import ESTIMATORS, emaml_term
from fastadapt.policies.mlp import CategoricalMLPPolicy
from fastadapt.types import Batch, Params

HORIZON = 2
ALPHA = 0.5
REWARDS = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)  # R[s, a]
EYE = torch.eye(2, dtype=torch.float64)
SEQUENCES = torch.tensor(list(itertools.product(range(2), repeat=HORIZON)))  # [4, H] actions
STATES = torch.stack([torch.zeros(4, dtype=torch.long), SEQUENCES[:, 0]], 1)  # [4, H]
RETURNS = REWARDS[STATES, SEQUENCES].sum(-1)  # [4]


pytestmark = pytest.mark.usefixtures("float64")


def _problem() -> tuple[CategoricalMLPPolicy, Params]:
    torch.manual_seed(0)
    policy = CategoricalMLPPolicy(2, 2, hidden_sizes=()).double()
    theta = {n: torch.randn_like(p) * 0.5 for n, p in policy.named_parameters()}
    return policy, theta


def exact_return(policy: CategoricalMLPPolicy, params: Params) -> Tensor:
    """``J(params_i)`` for per-task ``params [T, ...]``: ``[T]``, exact over all sequences."""
    tasks = next(iter(params.values())).shape[0]
    out = per_task_output(policy, params, EYE[STATES].expand(tasks, 4, HORIZON, 2))
    log_p = policy.log_prob(out, SEQUENCES.expand(tasks, 4, HORIZON)).sum(-1)
    return (log_p.exp() * RETURNS).sum(-1) / HORIZON


def sample(policy: CategoricalMLPPolicy, theta: Params, episodes: int, seed: int) -> Batch:
    """``episodes`` episodes ``[E, H, ...]`` with reward-to-go advantages."""
    generator = torch.Generator().manual_seed(seed)
    obs = torch.zeros(episodes, HORIZON, 2)
    actions = torch.zeros(episodes, HORIZON, dtype=torch.long)
    rewards = torch.zeros(episodes, HORIZON)
    state = torch.zeros(episodes, dtype=torch.long)
    for t in range(HORIZON):
        logits = functional_call(policy, theta, (EYE[state],))
        action = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator)[:, 0]
        obs[:, t], actions[:, t], rewards[:, t] = EYE[state], action, REWARDS[state, action]
        state = action
    to_go = rewards.flip(-1).cumsum(-1).flip(-1)
    return Batch(obs, actions, torch.ones(episodes, HORIZON), to_go)


def _estimated_hessian(policy: CategoricalMLPPolicy, theta: Params, batch: Batch,
                       estimator: str) -> Tensor:
    return hessian(lambda v: inner_loss(policy, unflatten(v, theta), batch, estimator))(
        flatten(theta))  # type: ignore[arg-type]


def _relative_error(estimate: Tensor, exact: Tensor) -> float:
    return float((estimate - exact).norm() / exact.norm())


def test_every_estimator_has_the_policy_gradient_as_first_derivative() -> None:
    policy, theta = _problem()
    batch = sample(policy, theta, 64, seed=1)
    gradients = [grad(lambda v, e=e: inner_loss(policy, unflatten(v, theta), batch, e))(
        flatten(theta)) for e in ESTIMATORS]
    for g in gradients[1:]:
        torch.testing.assert_close(g, gradients[0])


def test_off_policy_inner_gradient_is_importance_weighted() -> None:
    """Episodes of ``theta_old`` reused at ``theta`` (MAML-PPO / ProMP epochs): every form's
    gradient is ``-mean_steps(pi_theta / pi_old * A * grad log pi_theta)``, per-step weights
    for ``maml``/``lvc``, and DiCE's prefix weights give the same expectation."""
    policy, theta_old = _problem()
    batch = sample(policy, theta_old, 8, seed=2)
    generator = torch.Generator().manual_seed(4)
    theta = {n: p + 0.3 * torch.randn(p.shape, generator=generator)
             for n, p in theta_old.items()}

    def log_probs(params: Params) -> Tensor:
        return policy.log_prob(functional_call(policy, params, (batch.observations,)),
                               batch.actions)

    old = log_probs(theta_old)
    weights = (log_probs(theta) - old).exp()  # [E, H]
    scores = torch.func.jacrev(lambda v: log_probs(unflatten(v, theta)))(flatten(theta))
    expected = -(weights * batch.advantages)[..., None].mul(scores).sum((0, 1)) / batch.masks.sum()
    for estimator in ("maml", "lvc"):
        gradient = grad(lambda v, e=estimator: inner_loss(policy, unflatten(v, theta), batch, e,
                                                          old))(flatten(theta))
        torch.testing.assert_close(gradient, expected)
    on_policy = grad(lambda v: inner_loss(policy, unflatten(v, theta), batch, "maml"))(
        flatten(theta))
    assert (on_policy - expected).abs().max() > 1e-3  # the weights matter


def test_dice_hessian_is_unbiased_and_converges_while_maml_and_lvc_are_biased() -> None:
    policy, theta = _problem()
    exact = -hessian(lambda v: exact_return(policy, expand_to_tasks(unflatten(v, theta), 1))[0])(
        flatten(theta))
    errors: dict[tuple[str, int], float] = {}
    for estimator in ("maml", "lvc", "dice"):
        for episodes in (1_000, 100_000):
            hessians = [_estimated_hessian(policy, theta, sample(policy, theta, episodes, s),
                                           estimator) for s in range(4)]
            errors[estimator, episodes] = sum(
                _relative_error(h, exact) for h in hessians) / len(hessians)
    assert errors["dice", 100_000] < 0.03
    assert errors["dice", 100_000] < errors["dice", 1_000] / 3  # error ~ 1/sqrt(samples)
    assert errors["maml", 100_000] > 1.0  # misses E[grad log pi grad log pi^T R] entirely
    assert errors["lvc", 100_000] > 0.5  # misses the cross-time terms


def test_lvc_is_unbiased_when_steps_are_iid() -> None:
    """A stateless bandit (constant observation): no cross-time terms, LVC == DiCE in mean."""
    policy, theta = _problem()
    means = torch.tensor([0.2, 0.9])
    log_pi = torch.log_softmax(functional_call(policy, theta, (EYE[0],)), -1)

    def bandit_return(v: Tensor) -> Tensor:
        logits = functional_call(policy, unflatten(v, theta), (EYE[0],))
        return (torch.softmax(logits, -1) * means).sum()

    exact = -hessian(bandit_return)(flatten(theta))
    episodes = 200_000
    generator = torch.Generator().manual_seed(3)
    actions = torch.multinomial(log_pi.exp(), episodes * HORIZON, replacement=True,
                                generator=generator).view(episodes, HORIZON)
    to_go = means[actions].flip(-1).cumsum(-1).flip(-1)
    batch = Batch(EYE[0].expand(episodes, HORIZON, 2), actions, torch.ones(episodes, HORIZON),
                  to_go)
    # the inner loss averages over steps; the bandit's J is per pull: same normalisation
    assert _relative_error(_estimated_hessian(policy, theta, batch, "lvc"), exact) < 0.03
    assert _relative_error(_estimated_hessian(policy, theta, batch, "maml"), exact) > 0.5


def test_meta_gradient_through_adapt_matches_the_exact_expected_update_objective() -> None:
    """``d/dtheta J(theta + alpha grad J(theta))`` by the library's ``adapt`` on a large
    sampled batch (outer return exact): DiCE converges to it, MAML's estimator does not."""
    policy, theta = _problem()

    def objective(v: Tensor) -> Tensor:
        def j(w: Tensor) -> Tensor:
            return exact_return(policy, expand_to_tasks(unflatten(w, theta), 1))[0]
        return j(v + ALPHA * grad(j)(v))

    exact = grad(objective)(flatten(theta))
    batch = sample(policy, theta, 200_000, seed=5)
    batch = Batch(*(x[None] for x in batch))
    errors = {}
    for estimator in ("maml", "lvc", "dice"):
        leaf = {n: p.clone().requires_grad_(True) for n, p in theta.items()}
        adapted = adapt(policy, expand_to_tasks(leaf, 1), batch, ALPHA, False, estimator)
        gradient = torch.autograd.grad(exact_return(policy, adapted).sum(), list(leaf.values()))
        errors[estimator] = _relative_error(torch.cat([g.reshape(-1) for g in gradient]), exact)
    assert errors["dice"] < 0.02
    assert errors["maml"] > 0.2
    assert errors["lvc"] > 0.1


def _sampled_update_objective(policy: CategoricalMLPPolicy, theta: Params, episodes: int
                              ) -> Tensor:
    """Exact ``grad E_tau[J(theta + alpha g_maml(tau))]`` over every inner batch ``tau``."""
    leaf = {n: p.clone().requires_grad_(True) for n, p in theta.items()}
    shared = expand_to_tasks(leaf, 1)
    total = torch.zeros(())
    for combo in itertools.product(range(4), repeat=episodes):
        index = torch.tensor(combo)
        obs, actions = EYE[STATES[index]][None], SEQUENCES[index][None]
        rewards = REWARDS[STATES[index], SEQUENCES[index]]
        batch = Batch(obs, actions, torch.ones(1, episodes, HORIZON),
                      rewards.flip(-1).cumsum(-1).flip(-1)[None])
        log_p = policy.log_prob(per_task_output(policy, shared, obs), actions).sum()
        adapted = adapt(policy, shared, batch, ALPHA, False, "maml")
        total = total + log_p.exp() * exact_return(policy, adapted)[0]
    gradient = torch.autograd.grad(total, list(leaf.values()))
    return torch.cat([g.reshape(-1) for g in gradient])


def test_emaml_is_unbiased_for_the_sampled_update_objective() -> None:
    """With 2 episodes per inner batch (16 possible batches), E-MAML's estimate averaged over
    ``M`` independent inner batches converges to the exact gradient; MAML's does not."""
    policy, theta = _problem()
    episodes = 2
    exact = _sampled_update_objective(policy, theta, episodes)
    def error(estimator: str, tasks: int, seed: int) -> float:
        flat = sample(policy, theta, tasks * episodes, seed=seed)
        batch = Batch(*(x.reshape(tasks, episodes, *x.shape[1:]) for x in flat))
        leaf = {n: p.clone().requires_grad_(True) for n, p in theta.items()}
        shared = expand_to_tasks(leaf, tasks)
        post = exact_return(policy, adapt(policy, shared, batch, ALPHA, False, estimator))
        loss = -post.mean()
        if estimator == "emaml":
            out = per_task_output(policy, shared, batch.observations)
            pre = policy.log_prob(out, batch.actions)
            loss = loss + emaml_term([pre], [batch.masks], post.detach())
        gradient = torch.autograd.grad(loss, list(leaf.values()))
        return _relative_error(-torch.cat([g.reshape(-1) for g in gradient]), exact)

    errors = {
        (estimator, tasks): sum(error(estimator, tasks, s) for s in seeds) / len(seeds)
        for estimator, tasks, seeds in (("maml", 200_000, (0,)), ("emaml", 5_000, range(6)),
                                        ("emaml", 200_000, (0, 1)))
    }
    assert errors["emaml", 200_000] < 0.006
    assert errors["emaml", 200_000] < errors["emaml", 5_000]  # the error shrinks with samples
    assert errors["maml", 200_000] > 0.1


def test_unknown_estimator_is_a_clear_error() -> None:
    policy, theta = _problem()
    batch = sample(policy, theta, 4, seed=0)
    with pytest.raises(ValueError, match="unknown meta-gradient estimator 'reinforce'"):
        inner_loss(policy, theta, batch, "reinforce")  # type: ignore[arg-type]
