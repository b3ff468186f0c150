"""Summary statistics of adaptation curves, shared by ``evaluation.json`` and the plots.

Curves are per-task values ``[N, K + 1]`` (tasks x points); a summary is the mean over tasks
and the half-width of its normal 95% confidence interval, ``1.96 s / sqrt(N)`` with the
sample standard deviation ``s`` (0 for a single task).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

Z_95 = 1.96
"""The normal quantile of a two-sided 95% interval."""


def mean_ci95(per_task: Tensor | np.ndarray) -> tuple[list[float], list[float]]:
    """Mean over tasks and the normal 95% half-width of per-task values ``[N, K + 1]``, as
    two lists of ``K + 1`` floats (computed in float64)."""
    values = torch.as_tensor(per_task, dtype=torch.float64)
    num_tasks = values.shape[0]
    std = (values.std(dim=0, unbiased=True) if num_tasks > 1
           else torch.zeros(values.shape[1], dtype=values.dtype))
    return values.mean(dim=0).tolist(), (Z_95 * std / math.sqrt(num_tasks)).tolist()


def summarize_returns(per_task: Tensor) -> dict[str, list[Any]]:
    """``returns_mean``, ``returns_ci95`` (normal 95% half-width over tasks) and
    ``per_task_returns`` of per-task returns ``[N, K + 1]``."""
    mean, ci95 = mean_ci95(per_task)
    return {"returns_mean": mean, "returns_ci95": ci95, "per_task_returns": per_task.tolist()}


def summarize_successes(per_task: Tensor) -> dict[str, list[Any]]:
    """``success_rate_mean``, ``success_rate_ci95`` and ``per_task_success_rates`` of the
    fraction of each task's episodes that succeeded (at any step), ``[N, K + 1]``: entry ``k``
    is after ``k`` adaptation steps (Meta-World's success rate)."""
    mean, ci95 = mean_ci95(per_task)
    return {"success_rate_mean": mean, "success_rate_ci95": ci95,
            "per_task_success_rates": per_task.tolist()}
