"""TRPO's natural-gradient step: conjugate gradient and a KL-constrained line search.

Schulman et al. 2015, Appendix C; the defaults of pytorch-maml-rl (10 CG iterations, damping
1e-5, 15 backtracking steps x 0.8). Vectors are flat ``[P]`` tensors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from fastadapt.errors import require, require_at_least_one
from fastadapt.types import Params


@dataclass(frozen=True)
class TRPOConfig:
    """Outer-loop TRPO settings."""

    max_kl: float = 1e-2
    """Trust region: largest mean KL(pi_old || pi_new) over tasks and states."""
    cg_iterations: int = 10
    """Conjugate-gradient iterations per meta-iteration."""
    cg_damping: float = 1e-5
    """Added to the Fisher: ``(F + damping I) x = g``."""
    line_search_steps: int = 15
    """Backtracking steps before the update is rejected."""
    line_search_backtrack: float = 0.8
    """Step-size factor between line-search steps."""
    fvp_subsample: float = 1.0
    """Fraction of each task's episodes used in Fisher-vector products (1.0 = exact; rllab uses
    0.1-0.2). The gradient and the line search always use all episodes."""

    def __post_init__(self) -> None:
        require(self.max_kl > 0, "max_kl", f"must be > 0, got {self.max_kl}")
        require(self.cg_damping >= 0, "cg_damping", f"must be >= 0, got {self.cg_damping}")
        require_at_least_one(self, ("cg_iterations", "line_search_steps"))
        require(0 < self.line_search_backtrack < 1, "line_search_backtrack",
                f"must be in (0, 1), got {self.line_search_backtrack}")
        require(0 < self.fvp_subsample <= 1, "fvp_subsample",
                f"must be in (0, 1], got {self.fvp_subsample}")


def flatten(params: Params) -> Tensor:
    """Concatenate parameters into one vector ``[P]``."""
    return torch.cat([p.reshape(-1) for p in params.values()])


def unflatten(vector: Tensor, like: Params) -> Params:
    """Split ``vector [P]`` into tensors shaped like ``like``."""
    out: Params = {}
    offset = 0
    for name, p in like.items():
        out[name] = vector[offset : offset + p.numel()].view_as(p)
        offset += p.numel()
    return out


def conjugate_gradient(
    matvec: Callable[[Tensor], Tensor], b: Tensor, iterations: int, tol: float = 1e-10
) -> tuple[Tensor, Tensor]:
    """Approximately solve ``A x = b`` for symmetric positive-definite ``A`` given ``A v``.

    Args:
        matvec: ``v [P] -> A v [P]``.
        b: right-hand side ``[P]``.
        iterations: at most this many products.
        tol: stop once the squared residual norm is below it.

    Returns:
        ``(x [P], residual r = b - A x [P])``. Since ``A x = b - r``, ``x^T A x = x^T (b - r)``
        comes without another product.
    """
    x = torch.zeros_like(b)
    r = b.clone()
    p = b.clone()
    r_dot = r @ r
    for _ in range(iterations):
        if r_dot < tol:
            break
        ap = matvec(p)
        alpha = r_dot / (p @ ap)
        x += alpha * p
        r -= alpha * ap
        new_r_dot = r @ r
        p = r + (new_r_dot / r_dot) * p
        r_dot = new_r_dot
    return x, r


def natural_step(
    gradient: Tensor, fvp: Callable[[Tensor], Tensor], config: TRPOConfig
) -> tuple[Tensor, float]:
    """The full TRPO step ``s = sqrt(2 delta / x^T F x) x`` with ``x = F^-1 g`` (by CG).

    Args:
        gradient: loss gradient ``g [P]`` (the step is *subtracted* from the parameters).
        fvp: damped Fisher-vector product ``v -> (F + damping I) v``.

    Returns:
        ``(step [P], predicted KL of the full step)``.
    """
    direction, residual = conjugate_gradient(fvp, gradient, config.cg_iterations)
    shs = 0.5 * (direction @ (gradient - residual))  # = x^T F x / 2, no extra product
    scale = torch.sqrt(config.max_kl / shs.clamp(min=1e-30))
    return direction * scale, float(shs * scale**2)


def backtracking_line_search(
    evaluate: Callable[[Tensor], tuple[float, float]],
    params: Tensor,
    step: Tensor,
    old_loss: float,
    config: TRPOConfig,
) -> tuple[Tensor, int | None, float, float]:
    """Shrink the step until the loss improves inside the trust region.

    Args:
        evaluate: ``flat params -> (loss, mean KL)``.
        params: current parameters ``[P]``.
        step: full step ``[P]``, subtracted from ``params``.
        old_loss: loss at ``params``.

    Returns:
        ``(new params, number of backtracks, loss, kl)`` of the accepted trial, or
        ``(params, None, old_loss, 0.0)`` if every trial failed (non-finite values count as
        failures, so a NaN never reaches the parameters).
    """
    fraction = 1.0
    for backtracks in range(config.line_search_steps):
        candidate = params - fraction * step
        loss, kl = evaluate(candidate)
        finite = torch.isfinite(torch.tensor([loss, kl])).all()
        if finite and loss < old_loss and kl <= config.max_kl:
            return candidate, backtracks, loss, kl
        fraction *= config.line_search_backtrack
    return params, None, old_loss, 0.0
