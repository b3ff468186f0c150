"""MAML for RL with TRPO as the outer optimizer (Finn et al. 2017, Algorithm 3).

One meta-iteration:

1. sample ``T`` training tasks; for ``k = 0..K-1`` sample ``E`` episodes per task with
   ``phi^(k)`` (``phi^(0) = theta``) and take an inner step ``phi^(k+1) = adapt(phi^(k))``;
2. sample ``E`` validation episodes with ``phi^(K)``;
3. TRPO on ``theta`` for the post-adaptation surrogate, differentiating through the inner
   steps: gradient ``sum_i J_i^T grad_phi L_i``, natural direction by CG on the exact
   meta-Fisher ``sum_i J_i^T F_i J_i`` (see :mod:`fastadapt.meta.curvature`), KL-constrained
   backtracking line search that re-runs the inner loop at each trial.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import torch
from torch import Tensor

from fastadapt.errors import ConfigError, require_at_least_one
from fastadapt.meta.adapt import adapt, adapt_steps, expand_to_tasks, per_task_output
from fastadapt.meta.curvature import InnerLoopJacobian, KLHessian, subsample_episodes
from fastadapt.meta.estimators import Estimator
from fastadapt.meta.losses import mean_kl, surrogate_loss
from fastadapt.meta.mlp_products import MLPProducts, mlp_forward, supports_fast_products
from fastadapt.meta.trpo import (
    TRPOConfig,
    backtracking_line_search,
    flatten,
    natural_step,
    unflatten,
)
from fastadapt.policies.mlp import Policy
from fastadapt.returns import process_trajectories
from fastadapt.types import Batch, Params, Trajectories


@dataclass(frozen=True)
class MAMLConfig:
    """Inner loop and data settings of MAML-RL (defaults: pytorch-maml-rl 2d-navigation)."""

    meta_batch_size: int = 20
    """Tasks per meta-iteration."""
    episodes_per_task: int = 20
    """Episodes sampled per task for each inner step and for the validation batch."""
    adaptation_steps: int = 1
    """Inner gradient steps during meta-training."""
    inner_lr: float = 0.1
    """Inner step size alpha."""
    first_order: bool = False
    """Drop second-order terms (FOMAML)."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 1.0
    """GAE lambda (1.0: Monte-Carlo returns minus the linear baseline)."""
    estimator: Estimator | None = None
    """Meta-gradient estimator (:mod:`fastadapt.meta.estimators`): ``maml`` (Finn et al.),
    ``emaml`` (Stadie et al.), ``dice`` (Foerster et al.) or ``lvc`` (Rothfuss et al.);
    ``null`` takes the algorithm's own (``lvc`` for ProMP, ``maml`` otherwise)."""

    def resolved_estimator(self, algorithm: str) -> Estimator:
        """``estimator``, or the default of ``algorithm`` when unset."""
        if self.estimator is not None:
            return self.estimator
        return "lvc" if algorithm == "promp" else "maml"

    def __post_init__(self) -> None:
        counts = ("meta_batch_size", "episodes_per_task", "adaptation_steps")
        require_at_least_one(self, "maml", counts)
        if not 0 < self.gamma <= 1 or not 0 <= self.gae_lambda <= 1:
            raise ConfigError("maml.gamma must be in (0, 1] and maml.gae_lambda in [0, 1]")


class Sampler(Protocol):
    """The sampler interface (see :mod:`fastadapt.sampling.vector`)."""

    def sample(self, params: Params, tasks: list[Any], episodes_per_task: int) -> Trajectories:
        ...


class MetaBatch(NamedTuple):
    """Episodes of one meta-iteration.

    Attributes:
        train: the ``K`` inner-step batches ``[T, E, H, ...]``, step ``k`` sampled by ``phi^(k)``.
        valid: validation batch sampled by ``phi^(K)``.
        task_returns: mean episode return of each task in each of the ``K + 1`` batches
            (before -> after adaptation), ``K + 1`` tensors ``[T]``.
        env_steps: environment steps taken.
    """

    train: list[Batch]
    valid: Batch
    task_returns: list[Tensor]
    env_steps: int
    inner_loop: InnerLoopJacobian | None = None
    """The inner loop that adapted the sampling policies, when the caller passed one in
    (its Hessian caches then serve the outer step)."""

    @property
    def returns(self) -> list[float]:
        """Mean episode return over tasks after ``0..K`` inner steps."""
        return [float(r.mean()) for r in self.task_returns]


@torch.no_grad()
def collect_meta_batch(
    sampler: Sampler,
    policy: Policy,
    theta: Params,
    tasks: list[Any],
    config: MAMLConfig,
    adaptation_steps: int | None = None,
    inner_lr: float | Params | None = None,
    valid_episodes_per_task: int | None = None,
    inner_loop: InnerLoopJacobian | None = None,
) -> MetaBatch:
    """Sample the inner-step batches and the validation batch of ``tasks`` (no graph kept).

    Args:
        adaptation_steps: overrides ``config.adaptation_steps`` (evaluation uses more).
        inner_lr: overrides ``config.inner_lr`` (Meta-SGD's learned per-parameter rates).
        valid_episodes_per_task: episodes per task of the validation batch (sampled with the
            finally adapted policy); ``None`` takes ``config.episodes_per_task`` like the
            inner-step batches. Meta-World's protocol evaluates 3 episodes after adapting on 10.
        inner_loop: a fresh :class:`InnerLoopJacobian` at ``theta`` (from
            :meth:`MAMLTRPO.inner_loop`) that takes the inner steps instead of :func:`adapt`,
            so the outer step reuses the products it cached; returned in the meta-batch.

    Raises:
        ValueError: ``inner_loop`` has taken steps already or starts from other parameters.
    """
    steps = config.adaptation_steps if adaptation_steps is None else adaptation_steps
    lr = config.inner_lr if inner_lr is None else inner_lr
    valid_episodes = (config.episodes_per_task if valid_episodes_per_task is None
                      else valid_episodes_per_task)
    if inner_loop is not None and (inner_loop.steps or inner_loop.theta is not theta):
        raise ValueError("collect_meta_batch needs a fresh inner_loop built at theta")
    if inner_loop is not None and not _same_rate(inner_loop.inner_lr, lr):
        raise ValueError(f"inner_loop adapts with inner_lr {inner_loop.inner_lr!r}, "
                         f"not the {lr!r} asked for")
    params = expand_to_tasks(theta, len(tasks))
    batches: list[Batch] = []
    task_returns: list[Tensor] = []
    env_steps = 0
    for k in range(steps + 1):
        episodes = valid_episodes if k == steps else config.episodes_per_task
        trajectories = sampler.sample(params, tasks, episodes)
        env_steps += trajectories.num_env_steps
        task_returns.append(trajectories.episode_returns().mean(dim=1))
        batch = process_trajectories(trajectories, config.gamma, config.gae_lambda)
        batches.append(batch)
        if k < steps:
            params = (adapt(policy, params, batch, lr, first_order=True) if inner_loop is None
                      else inner_loop.extend(batch))
    return MetaBatch(batches[:-1], batches[-1], task_returns, env_steps, inner_loop)


def _same_rate(a: float | Params, b: float | Params) -> bool:
    """Equal float step sizes, or the very same per-parameter rates (Meta-SGD)."""
    if isinstance(a, dict) or isinstance(b, dict):
        return a is b
    return a == b


class OuterGradient(NamedTuple):
    """The post-adaptation surrogate at ``phi_old`` and what the TRPO step reuses of it.

    Attributes:
        products: the cached forward pass on the validation batch (MLP policies), else ``None``.
        loss: the surrogate (a scalar, detached).
        grads: ``d loss / d phi`` per task ``[T, ...]``.
        out: distribution parameters of ``phi_old`` ``[T, E, H, D]`` (detached).
        log_probs: ``log pi_phi_old(a|s)`` of the validation actions ``[T, E, H]``.
    """

    products: MLPProducts | None
    loss: Tensor
    grads: Params
    out: Tensor
    log_probs: Tensor


class MAMLTRPO:
    """The MAML-TRPO meta-update ``theta -> theta'`` on one :class:`MetaBatch`."""

    def __init__(self, policy: Policy, maml: MAMLConfig, trpo: TRPOConfig) -> None:
        self.policy = policy
        self.maml = maml
        self.trpo = trpo
        self.estimator = maml.resolved_estimator("maml-trpo")
        if self.estimator == "emaml":
            raise ConfigError(
                "maml.estimator: emaml adds a score term to a differentiable outer loss; use "
                "it with maml-vpg, maml-ppo, promp or meta-sgd (maml-trpo takes maml, dice, lvc)"
            )

    def inner_lr(self) -> float:
        """The inner step size the samplers and evaluation adapt with."""
        return self.maml.inner_lr

    def state_dict(self) -> dict[str, Tensor]:
        """TRPO keeps no state between meta-iterations."""
        return {}

    def load_state_dict(self, tensors: dict[str, Tensor]) -> None:
        """Nothing to restore (see :meth:`state_dict`)."""

    def inner_loop(self, theta: Params, num_tasks: int) -> InnerLoopJacobian:
        """A fresh inner loop at ``theta`` for :func:`collect_meta_batch`: the sampler's inner
        steps then build the Hessian caches that :meth:`step` needs, once."""
        return InnerLoopJacobian(self.policy, theta, [], self.maml.inner_lr,
                                 self.maml.first_order, num_tasks=num_tasks,
                                 estimator=self.estimator)

    def _inner_loop_of(self, theta: Params, meta_batch: MetaBatch) -> InnerLoopJacobian:
        """The meta-batch's own inner loop if it is this step's (same ``theta``, steps and
        settings), else one rebuilt from its training batches."""
        kept = meta_batch.inner_loop
        if (kept is not None and kept.theta is theta and kept.steps == len(meta_batch.train)
                and all(a is b for a, b in zip(kept.batches, meta_batch.train, strict=True))
                and _same_rate(kept.inner_lr, self.maml.inner_lr)
                and kept.first_order == self.maml.first_order
                and kept.estimator == self.estimator and kept.hessian_fraction == 1.0):
            return kept
        return InnerLoopJacobian(
            self.policy, theta, meta_batch.train, self.maml.inner_lr, self.maml.first_order,
            num_tasks=meta_batch.valid.masks.shape[0], estimator=self.estimator,
        )

    def _meta_fisher(self, theta: Params, meta_batch: MetaBatch, jacobian: InnerLoopJacobian,
                     products: MLPProducts | None = None) -> Callable[[Tensor], Tensor]:
        """Damped meta-Fisher-vector product ``v -> (sum_i J_i^T F_i J_i + d I) v``.

        With ``trpo.fvp_subsample < 1`` the inner Hessians in ``J_i`` and the Fisher ``F_i``
        (still at the adapted ``phi_i``) are estimated on that fraction of the episodes.
        ``products``: the forward pass on the whole validation batch, reused when exact.
        """
        fraction = self.trpo.fvp_subsample
        jacobian = jacobian.subsampled(fraction)
        valid = subsample_episodes(meta_batch.valid, fraction)
        fisher = KLHessian(self.policy, jacobian.adapted, valid,
                           products if fraction >= 1.0 else None)

        def fvp(vector: Tensor) -> Tensor:
            per_task = fisher(jacobian.jvp(unflatten(vector, theta)))
            return flatten(jacobian.vjp(per_task)) + self.trpo.cg_damping * vector

        return fvp

    def _outer_gradient(self, adapted: Params, valid: Batch) -> OuterGradient:
        """Surrogate loss at ``phi_old = adapted`` and its gradient in ``phi`` per task.

        MLP policies take one cached forward pass (:class:`MLPProducts`, which the exact
        Fisher reuses) and one backward pass; others autograd through ``vmap``.
        """
        policy = self.policy
        products = None
        with torch.enable_grad():
            if supports_fast_products(policy):
                products = MLPProducts(policy, adapted, valid.observations, second_order=False)
                out = products.out.view(*valid.masks.shape, -1).requires_grad_(True)
                params: Params = {}  # the surrogate reads `out`
            else:
                params = {n: p.detach().requires_grad_(True) for n, p in adapted.items()}
                out = per_task_output(policy, params, valid.observations)
            old_out = out.detach()  # the sampling policy pi_phi_old: one forward for both
            old_log_probs = policy.log_prob(old_out, valid.actions)
            loss, _ = surrogate_loss(policy, params, valid, old_log_probs, out)
            if products is not None:
                (d_out,) = torch.autograd.grad(loss, out)
                grads = products.vjp(d_out.reshape(products.out.shape))
            else:
                grads = dict(zip(params, torch.autograd.grad(loss, list(params.values())),
                                 strict=True))
        return OuterGradient(products, loss.detach(), grads, old_out, old_log_probs)

    def step(self, theta: Params, meta_batch: MetaBatch) -> tuple[Params, dict[str, float]]:
        """One TRPO meta-update.

        Args:
            theta: meta-parameters (shared shapes; not modified).
            meta_batch: episodes from :func:`collect_meta_batch` with ``theta``.

        Returns:
            ``(new theta, metrics)``. If the gradient is not finite or the line search finds
            no acceptable step, ``theta`` is returned unchanged and ``metrics["step_accepted"]
            == 0`` (``metrics["nonfinite"] == 1`` for a non-finite gradient).
        """
        policy, valid = self.policy, meta_batch.valid
        jacobian = self._inner_loop_of(theta, meta_batch)
        products, loss, outer_grads, old_out, old_log_probs = self._outer_gradient(
            jacobian.adapted, valid
        )
        gradient = flatten(jacobian.vjp(outer_grads))
        metrics = {"loss_before": float(loss.detach()), "grad_norm": float(gradient.norm())}
        if not torch.isfinite(gradient).all() or not torch.isfinite(loss):
            return theta, {**metrics, "step_accepted": 0.0, "nonfinite": 1.0, "kl": 0.0}

        fvp = self._meta_fisher(theta, meta_batch, jacobian, products)
        full_step, predicted_kl = natural_step(gradient, fvp, self.trpo)

        @torch.no_grad()
        def evaluate(candidate: Tensor) -> tuple[float, float]:
            params = expand_to_tasks(unflatten(candidate, theta), valid.masks.shape[0])
            adapted = adapt_steps(policy, params, meta_batch.train, self.maml.inner_lr, True)
            out = (mlp_forward(policy, adapted, valid.observations)  # batched matmuls, no vmap
                   if supports_fast_products(policy) else None)
            new_loss, new_out = surrogate_loss(policy, adapted, valid, old_log_probs, out)
            return float(new_loss), float(mean_kl(policy, old_out, new_out, valid.masks))

        new_flat, backtracks, new_loss, kl = backtracking_line_search(
            evaluate, flatten(theta).detach(), full_step, float(loss.detach()), self.trpo
        )
        metrics.update(
            loss_after=new_loss,
            kl=kl,
            predicted_kl=predicted_kl,
            step_accepted=float(backtracks is not None),
            backtracks=float(-1 if backtracks is None else backtracks),
            nonfinite=0.0,
        )
        new_theta = {n: p.detach().clone() for n, p in unflatten(new_flat, theta).items()}
        return new_theta, metrics
