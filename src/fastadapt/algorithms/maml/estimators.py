"""Meta-gradient estimators: how the inner loss is written so that differentiating *through*
the inner step gives the intended second-order term.

All inner surrogates below have the same value of the first derivative (the policy gradient
``-E[grad log pi(a|s) A]``), so the adapted parameters are the same; they differ in the
Hessian that ``d phi / d theta = I - alpha grad^2 L`` sees:

- ``maml`` (Finn et al. 2017; pytorch-maml-rl): ``L = -sum_t log pi_t A_t``. Its Hessian
  ``-sum_t grad^2 log pi_t A_t`` misses the terms from the dependence of the sampling
  distribution on ``theta``: **biased** as an estimate of ``grad^2 J`` (Rothfuss et al.
  2019, §4; Foerster et al. 2018).
- ``emaml`` (Stadie et al. 2018): ``maml``'s inner loss plus, in the outer objective, the
  score of the pre-update episodes times the post-update return (:func:`emaml_term`). It is
  the **unbiased** gradient of the *sampled-update* objective ``E_tau[J(theta + alpha
  g_hat(tau))]``, with high variance (no credit assignment to individual pre-update actions).
- ``dice`` (Foerster et al. 2018, DiCE; the baseline form of Mao et al. 2019):
  ``L = -sum_t magic(sum_{t'<=t} log pi_t') (A_t - A_{t+1})`` with ``magic(x) = exp(x -
  stop(x))``. Its Hessian ``-sum_t grad^2 log pi_t A_t - sum_{t1,t2} grad log pi_t1 grad log
  pi_t2^T A_max(t1,t2)`` is an **unbiased** estimate of ``grad^2 J`` (for a state-dependent
  baseline inside ``A``); its variance grows with the horizon.
- ``lvc`` (Rothfuss et al. 2019, ProMP's low-variance curvature): ``L = -sum_t pi_t /
  stop(pi_t) A_t = -sum_t magic(log pi_t) A_t``. Keeps only the ``t1 = t2`` terms of DiCE's
  Hessian: **biased** where cross-time terms have non-zero mean (unbiased for i.i.d. steps
  such as bandit pulls), with much lower variance than DiCE.

``magic(x)`` is written ``exp(x - x_old)`` with ``x_old = stop(x)`` on-policy, or the sampling
policy's value when the episodes are reused off-policy (importance weights).

Shapes: ``log_probs``, ``advantages``, ``masks`` are ``[..., H]`` (time last).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

Estimator = Literal["maml", "emaml", "dice", "lvc"]
ESTIMATORS: tuple[Estimator, ...] = ("maml", "emaml", "dice", "lvc")


def inner_surrogate(log_probs: Tensor, advantages: Tensor, masks: Tensor,
                    estimator: Estimator = "maml", old_log_probs: Tensor | None = None
                    ) -> Tensor:
    """The inner loss of one task, ``sum over episodes and steps / number of steps``.

    Args:
        log_probs: ``log pi(a_t|s_t)`` ``[E, H]`` (any leading shape).
        advantages: ``A_t`` ``[E, H]``, zero where masked.
        masks: ``[E, H]``.
        estimator: see the module docstring.
        old_log_probs: ``log pi_old(a_t|s_t)`` of the policy that sampled the episodes, when
            it differs from the one being adapted (the outer epochs of MAML-PPO and ProMP):
            every form is then importance-weighted, per step (``maml``, ``lvc``: ProMP's
            ``pi / pi_old``) or per trajectory prefix (``dice``). ``None``: on-policy.

    Returns:
        A scalar whose gradient is ``-sum(m w grad log pi A) / sum(m)`` for every estimator
        (``w = pi / pi_old``, 1 on-policy).
    """
    old = log_probs.detach() if old_log_probs is None else old_log_probs
    log_ratio = (log_probs - old) * masks
    weights = advantages * masks
    if estimator in ("maml", "emaml"):
        terms = log_ratio.exp().detach() * log_probs * weights
    elif estimator == "lvc":
        terms = log_ratio.exp() * weights
    elif estimator == "dice":
        # per-step "rewards" whose reward-to-go is A_t: sum_{t>=t'} (A_t - A_{t+1}) = A_t'
        increments = weights - torch.nn.functional.pad(weights[..., 1:], (0, 1))
        terms = torch.cumsum(log_ratio, dim=-1).exp() * increments * masks
    else:
        raise ValueError(f"unknown meta-gradient estimator {estimator!r}; one of {ESTIMATORS}")
    return -terms.sum() / masks.sum().clamp(min=1.0)


def emaml_term(pre_log_probs: list[Tensor], pre_masks: list[Tensor], post_returns: Tensor
               ) -> Tensor:
    """E-MAML's extra outer loss (Stadie et al. 2018, eq. 5) for a meta-batch.

    ``-mean_i (sum_k sum_e sum_t log pi_{phi_i^(k)}(a|s)) * stop(R_i - mean_j R_j)``: the
    score of task ``i``'s whole pre-update batch (sampled by ``phi_i^(k)``, ``k < K``) times its
    post-update return, with the meta-batch mean as baseline (which keeps it unbiased up to
    ``O(1/T)``).

    Args:
        pre_log_probs: per inner step ``k``, ``log pi_{phi^(k)}`` of its episodes ``[T, E, H]``
            (differentiable in ``theta`` through ``phi^(k)``).
        pre_masks: the matching masks ``[T, E, H]``.
        post_returns: mean post-update episode return of each task ``[T]`` (no gradient).

    Returns:
        A scalar to add to the outer loss.
    """
    centred = (post_returns - post_returns.mean()).detach()
    scores = [(lp * m).sum((-2, -1)) for lp, m in zip(pre_log_probs, pre_masks, strict=True)]
    return -(torch.stack(scores).sum(0) * centred).mean()
