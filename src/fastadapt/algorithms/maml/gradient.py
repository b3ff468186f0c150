"""First-order outer optimizers of MAML: MAML-VPG, MAML-PPO, ProMP and Meta-SGD.

MAML-TRPO (:mod:`fastadapt.algorithms.maml.trpo`) takes one natural-gradient step with a line
search.
These take ``epochs`` Adam steps on a differentiable outer objective of one meta-batch,
re-running the inner loop ``phi_i^(k)(theta)`` (with its second-order graph, unless
``first_order``) from the current ``theta`` at every step:

- **MAML-VPG**: ``L = -E_valid[pi_phi / pi_phi_old * A]``, one step per meta-batch (its
  gradient at ``theta_old`` is the vanilla policy gradient through the inner loop).
- **MAML-PPO**: PPO's clipped surrogate of the post-update ratio (Schulman et al. 2017, eq. 7)
  for ``epochs`` steps.
- **ProMP** (Rothfuss et al. 2019, eq. 12): MAML-PPO with the LVC inner estimator plus
  ``eta * sum_k KL(pi_{phi_old^(k)} || pi_{phi^(k)})`` on each inner step's own episodes,
  which keeps the *pre-update* policies close to where they sampled; ``eta`` adapts to
  ``target_inner_kl`` when ``adaptive_kl_coef``.
- **Meta-SGD** (Li et al. 2017): per-parameter inner learning rates ``alpha`` (shaped like
  ``theta``, initialised to ``inner_lr``) learned jointly with ``theta`` by MAML-PPO or
  MAML-VPG; ``phi_i = theta - alpha * grad L_i``.

The meta-gradient estimator (``estimator``) shapes the inner loss's second derivative
(:mod:`fastadapt.algorithms.maml.estimators`); ``emaml`` also adds E-MAML's score term to the
outer loss.
Objectives are means over each task's unmasked steps, then over tasks.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from fastadapt.algorithms.common.adam import adam_state_tensors, load_adam_state
from fastadapt.algorithms.maml.adapt import adapt, adapt_steps, expand_to_tasks
from fastadapt.algorithms.maml.config import (
    MAMLPPOConfig,
    MAMLVPGConfig,
    MetaSGDConfig,
    ProMPConfig,
)
from fastadapt.algorithms.maml.estimators import emaml_term
from fastadapt.algorithms.maml.losses import masked_task_mean, mean_kl
from fastadapt.algorithms.maml.meta_batch import MetaBatch
from fastadapt.policies.functional import per_task_output
from fastadapt.policies.mlp import Policy
from fastadapt.types import Params


class Reference(NamedTuple):
    """The policies that sampled a meta-batch (at ``theta_old``), ``[T, E, H, D]`` outputs.

    Attributes:
        pre_outputs: per inner step ``k``, ``pi_{phi_old^(k)}`` on that step's episodes.
        pre_log_probs: per inner step ``k``, ``log pi_{phi_old^(k)}(a|s)`` of its actions
            ``[T, E, H]`` (the importance weights' denominators).
        post_outputs: ``pi_{phi_old^(K)}`` on the validation episodes.
        post_log_probs: ``log pi_{phi_old^(K)}(a|s)`` of the validation actions ``[T, E, H]``.
    """

    pre_outputs: list[Tensor]
    pre_log_probs: list[Tensor]
    post_outputs: Tensor
    post_log_probs: Tensor


def adapted_kl_coef(coef: Tensor, inner_kl: float, target: float) -> Tensor:
    """ProMP's adaptive penalty: halve ``eta`` below ``target / 1.5``, double it above
    ``1.5 target`` (as PPO's adaptive KL penalty, Schulman et al. 2017, §4)."""
    if inner_kl < target / 1.5:
        return coef / 2
    if inner_kl > target * 1.5:
        return coef * 2
    return coef


class GradientMAML:
    """The outer update of MAML-VPG / MAML-PPO / ProMP / Meta-SGD on one :class:`MetaBatch`.

    Stateful: Adam's moments, Meta-SGD's learned rates and ProMP's ``eta`` persist across
    meta-iterations; :meth:`state_dict` / :meth:`load_state_dict` checkpoint them.

    Args:
        policy: the policy module.
        theta: initial meta-parameters (shapes of the learned rates and Adam's moments).
        config: the algorithm's section (:class:`MAMLVPGConfig` or a subclass): the inner
            loop, the outer objective (``vpg`` or ``ppo``, clipped), the meta-gradient
            estimator; a :class:`MetaSGDConfig` learns the inner rates.
    """

    def __init__(self, policy: Policy, theta: Params, config: MAMLVPGConfig) -> None:
        self.policy, self.maml, self.objective = policy, config, config.outer_objective
        self.estimator = config.resolved_estimator
        self.epochs = config.outer_epochs
        self.clip_ratio = (config.clip_ratio if isinstance(config, MAMLPPOConfig)
                           and self.objective == "ppo" else None)
        self.max_grad_norm = config.max_grad_norm
        self.promp = config if isinstance(config, ProMPConfig) else None
        self.kl_coef = torch.tensor(self.promp.init_kl_coef if self.promp else 0.0,
                                    dtype=torch.float64)
        self._theta = {n: p.detach().clone().requires_grad_(True) for n, p in theta.items()}
        self.inner_lrs: Params | None = None
        leaves = list(self._theta.values())
        if isinstance(config, MetaSGDConfig):
            self.inner_lrs = {n: torch.full_like(p, config.inner_lr).requires_grad_(True)
                              for n, p in theta.items()}
            leaves += list(self.inner_lrs.values())
        self.optimizer = torch.optim.Adam(leaves, lr=config.learning_rate)

    def _leaf_names(self) -> list[str]:
        names = list(self._theta)
        return names + [f"inner_lr/{n}" for n in self.inner_lrs or {}]

    def state_dict(self) -> dict[str, Tensor]:
        """Adam's moments (``adam/<leaf>/<key>``) and ProMP's ``kl_coef``: with the parameters
        and the learned rates (:meth:`inner_lr`), what a checkpoint needs to resume
        bit-identically."""
        return {"kl_coef": self.kl_coef.clone(),
                **adam_state_tensors(self.optimizer, self._leaf_names())}

    def load_state_dict(self, tensors: dict[str, Tensor]) -> None:
        """Restore :meth:`state_dict`'s output.

        Raises:
            KeyError: a tensor is missing (the checkpoint is of another algorithm).
        """
        self.kl_coef = tensors["kl_coef"].clone()
        load_adam_state(self.optimizer, self._leaf_names(), tensors)

    def load_inner_lrs(self, rates: Params) -> None:
        """Set Meta-SGD's learned rates (in place: Adam keeps its leaves).

        Raises:
            KeyError: a rate is missing.
        """
        with torch.no_grad():
            for name, lr in (self.inner_lrs or {}).items():
                lr.copy_(rates[name])

    def inner_loop(self, theta: Params, num_tasks: int) -> None:
        """None: the outer loss differentiates through its own inner loop."""
        return None

    def inner_lr(self) -> float | Params:
        """The inner step size the samplers and evaluation adapt with (learned for Meta-SGD)."""
        if self.inner_lrs is None:
            return self.maml.inner_lr
        return {n: lr.detach() for n, lr in self.inner_lrs.items()}

    def reference(self, theta: Params, meta_batch: MetaBatch) -> Reference:
        """The pre- and post-update policies of ``theta`` on ``meta_batch`` (no graph)."""
        with torch.no_grad():
            params = expand_to_tasks(theta, meta_batch.valid.masks.shape[0])
            pre, pre_log_probs = [], []
            for batch in meta_batch.train:
                pre.append(per_task_output(self.policy, params, batch.observations))
                pre_log_probs.append(self.policy.log_prob(pre[-1], batch.actions))
                params = adapt(self.policy, params, batch, self.inner_lr(), first_order=True)
            post = per_task_output(self.policy, params, meta_batch.valid.observations)
        return Reference(pre, pre_log_probs, post,
                         self.policy.log_prob(post, meta_batch.valid.actions))

    def outer_loss(self, theta: Params, inner_lr: float | Params, meta_batch: MetaBatch,
                   reference: Reference) -> tuple[Tensor, dict[str, Tensor]]:
        """The outer objective as a function of explicit ``theta`` and inner rates.

        Runs the inner loop from ``theta`` (second-order unless ``first_order``; the
        inner episodes importance-weighted by ``pi_phi^(k) / pi_phi_old^(k)``, as ProMP's
        inner objective, 1 at the first epoch), then
        ``-mean_tasks masked_mean(min(r A, clip(r) A))`` with ``r = pi_phi / pi_phi_old`` on
        the validation episodes (no clipping for VPG), plus E-MAML's term and ProMP's
        ``eta * mean_k KL(pi_{phi_old^(k)} || pi_{phi^(k)})`` when they apply.

        Returns:
            ``(loss, stats)``: a differentiable scalar and detached ``surrogate``
            (``inner_kl`` for ProMP).
        """
        policy, maml = self.policy, self.maml
        params = expand_to_tasks(theta, meta_batch.valid.masks.shape[0])
        pre_log_probs, inner_kls = [], []
        for batch, old_out, old_log_probs in zip(meta_batch.train, reference.pre_outputs,
                                                 reference.pre_log_probs, strict=True):
            if self.promp is not None or self.estimator == "emaml":
                out = per_task_output(policy, params, batch.observations)
                pre_log_probs.append(policy.log_prob(out, batch.actions))
                inner_kls.append(mean_kl(policy, old_out, out, batch.masks))
            params = adapt(policy, params, batch, inner_lr, maml.first_order, self.estimator,
                           old_log_probs)
        valid = meta_batch.valid
        out = per_task_output(policy, params, valid.observations)
        ratio = (policy.log_prob(out, valid.actions) - reference.post_log_probs).exp()
        surrogate = ratio * valid.advantages
        if self.clip_ratio is not None:
            clipped = ratio.clamp(1.0 - self.clip_ratio, 1.0 + self.clip_ratio)
            surrogate = torch.minimum(surrogate, clipped * valid.advantages)
        loss = -masked_task_mean(surrogate, valid.masks)
        stats = {"surrogate": loss.detach()}
        if self.estimator == "emaml":
            masks = [b.masks for b in meta_batch.train]
            loss = loss + emaml_term(pre_log_probs, masks, meta_batch.task_returns[-1])
        if self.promp is not None:
            inner_kl = torch.stack(inner_kls).mean()
            loss = loss + float(self.kl_coef) * inner_kl
            stats["inner_kl"] = inner_kl.detach()
        return loss, stats

    def _clip_and_check(self) -> tuple[bool, float]:
        """Clip the gradients to ``max_grad_norm`` (if set); returns ``(finite, norm before)``
        (a non-finite gradient is left for the caller to discard)."""
        leaves = [p for group in self.optimizer.param_groups for p in group["params"]]
        limit = math.inf if self.max_grad_norm is None else self.max_grad_norm
        norm = torch.nn.utils.clip_grad_norm_(leaves, limit)  # inf: measures, scales by 1
        return bool(torch.isfinite(norm)), float(norm)

    def step(self, theta: Params, meta_batch: MetaBatch) -> tuple[Params, dict[str, float]]:
        """``epochs`` outer Adam steps from ``theta`` on ``meta_batch``.

        Returns:
            ``(new theta, metrics)``; a non-finite loss or gradient stops the update and
            returns ``theta`` unchanged with ``metrics["nonfinite"] == 1``.
        """
        with torch.no_grad():
            for name, leaf in self._theta.items():
                leaf.copy_(theta[name])
        reference = self.reference(theta, meta_batch)
        lrs: float | Params = self.inner_lrs if self.inner_lrs is not None else self.maml.inner_lr
        metrics: dict[str, float] = {}
        for epoch in range(self.epochs):
            self.optimizer.zero_grad(set_to_none=True)
            with torch.enable_grad():
                loss, stats = self.outer_loss(self._theta, lrs, meta_batch, reference)
                loss.backward()  # type: ignore[no-untyped-call]
            finite, grad_norm = self._clip_and_check()
            if epoch == 0:
                metrics.update(loss_before=float(loss.detach()), grad_norm=grad_norm)
            if not finite or not torch.isfinite(loss):
                self.optimizer.zero_grad(set_to_none=True)
                return theta, {**metrics, "step_accepted": 0.0, "nonfinite": 1.0, "kl": 0.0}
            self.optimizer.step()
            metrics.update(loss_last_epoch=float(loss.detach()),
                           **{k: float(v) for k, v in stats.items()})
        new_theta = {n: p.detach().clone() for n, p in self._theta.items()}
        metrics.update(self._after_step(new_theta, meta_batch, reference.post_outputs, metrics))
        return new_theta, metrics

    @torch.no_grad()
    def _after_step(self, new_theta: Params, meta_batch: MetaBatch, old_out: Tensor,
                    metrics: dict[str, float]) -> dict[str, float]:
        """KL of the post-update policies old -> new; ProMP's adaptive ``eta``."""
        valid = meta_batch.valid
        params = expand_to_tasks(new_theta, valid.masks.shape[0])
        adapted = adapt_steps(self.policy, params, meta_batch.train, self.inner_lr(), True)
        new_out = per_task_output(self.policy, adapted, valid.observations)
        extra = {"kl": float(mean_kl(self.policy, old_out, new_out, valid.masks)),
                 "step_accepted": 1.0, "nonfinite": 0.0}
        if self.promp is not None:
            extra["kl_coef"] = float(self.kl_coef)
            if self.promp.adaptive_kl_coef and "inner_kl" in metrics:
                self.kl_coef = adapted_kl_coef(self.kl_coef, metrics["inner_kl"],
                                               self.promp.target_inner_kl)
        if self.inner_lrs is not None:
            flat = torch.cat([lr.detach().reshape(-1) for lr in self.inner_lrs.values()])
            extra.update(inner_lr_mean=float(flat.mean()), inner_lr_std=float(flat.std()))
        return extra
