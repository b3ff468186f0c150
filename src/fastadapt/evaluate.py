"""The meta-test protocol: adaptation curves on the fixed held-out tasks.

For each of ``N`` held-out tasks (``family.test_tasks(N)``, the same for every run and every
algorithm): sample ``E`` episodes with ``theta``, take an inner step on them, sample ``E``
episodes with the adapted policy, and so on for ``K`` steps (Finn et al. 2017, §5.3).
``returns_mean[k]`` is the mean over tasks of the mean episode return after ``k`` steps;
``returns_ci95[k]`` is the half-width of its normal 95% confidence interval over tasks.
Families that report success (Meta-World) add ``success_rate_mean[k]`` and
``success_rate_ci95[k]``: the fraction of episodes that succeeded at any step, same protocol.
The transfer baselines (``finetune``, ``random-init``, ``oracle``) are fine-tuned by the same
steps with ``finetune.inner_lr``; RL² reports the ``k``-th episode of a trial instead
(:func:`fastadapt.run.rl2_runner.meta_test_rl2`). ``episodes_per_step`` is how many episodes
of experience on the task each step adds (the x-axis of ``fastadapt compare``).
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from fastadapt.errors import ConfigError
from fastadapt.meta.maml import MetaBatch, collect_meta_batch
from fastadapt.run.runtime import configure_process
from fastadapt.run.train import (
    Experiment,
    build_experiment,
    load_inner_lr,
    load_policy_params,
    load_run_config,
    sampling_config,
)
from fastadapt.sampling import make_sampler
from fastadapt.sampling.success import SuccessRecorder
from fastadapt.types import Params

EVALUATION_FILE = "evaluation.json"
_TRAJECTORY_TASKS = 4


def meta_test(
    experiment: Experiment,
    theta: Params,
    num_tasks: int,
    adaptation_steps: int,
    episodes_per_task: int,
    seed: int,
    inner_lr: float | Params | None = None,
    eval_episodes_per_task: int | None = None,
) -> dict[str, Any]:
    """Adaptation curve of ``theta`` on ``num_tasks`` held-out tasks.

    The episodes are sampled by the config's ``run.sampler`` (``run.workers`` processes or Ray
    actors): every sampler returns the same batches for a seed, so the result does not depend
    on it, only the wall time does.

    Args:
        inner_lr: the inner step size(s); ``None`` takes the config's (Meta-SGD passes its
            learned per-parameter rates).
        eval_episodes_per_task: episodes per task sampled with the finally adapted policy
            (the last point of the curve); ``None`` takes ``episodes_per_task``.

    Returns:
        A JSON-serialisable dict with ``num_tasks``, ``adaptation_steps``,
        ``episodes_per_task``, ``eval_episodes_per_task``, ``returns_mean`` and
        ``returns_ci95`` (``K + 1`` entries),
        ``per_task_returns`` (``N x (K + 1)``), the tasks, for 2D navigation example
        trajectories before and after adaptation, for families that report success
        ``success_rate_mean``, ``success_rate_ci95`` and ``per_task_success_rates``, and for
        MuJoCo families ``unstable_episodes`` (episodes ended by a physics blow-up).
    """
    family = experiment.family
    tasks = family.test_tasks(num_tasks)
    eval_episodes = (episodes_per_task if eval_episodes_per_task is None
                     else eval_episodes_per_task)
    maml = replace(
        sampling_config(experiment.config), meta_batch_size=num_tasks,
        episodes_per_task=episodes_per_task,
    )
    run = experiment.config.run  # run.sampler: all samplers give the same batches
    with make_sampler(run.sampler, family, experiment.policy, experiment.horizon, seed,
                      run.workers, run.ray_address) as sampler:
        recorder = SuccessRecorder(sampler)
        meta_batch = collect_meta_batch(
            recorder, experiment.policy, theta, tasks, maml, adaptation_steps, inner_lr,
            eval_episodes,
        )
    per_task = torch.stack(meta_batch.task_returns, dim=1).double()  # [N, K + 1]
    result: dict[str, Any] = {
        "env": family.name,
        "num_tasks": num_tasks,
        "adaptation_steps": adaptation_steps,
        "episodes_per_task": episodes_per_task,
        "eval_episodes_per_task": eval_episodes,
        "episodes_per_step": episodes_per_task,
        "seed": seed,
        **summarize_returns(per_task),
        "tasks": [family.task_to_dict(task) for task in tasks],
    }
    if recorder.task_rates:  # families that report success (Meta-World)
        result.update(summarize_successes(torch.stack(recorder.task_rates, dim=1).double()))
    if recorder.unstable_episodes is not None:  # MuJoCo families
        result["unstable_episodes"] = recorder.unstable_episodes
    if family.name == "Navigation2D":
        result["trajectories"] = _navigation_trajectories(meta_batch, result["tasks"])
    return result


def _mean_ci95(per_task: Tensor) -> tuple[list[float], list[float]]:
    """Mean over tasks and the normal 95% half-width ``1.96 s / sqrt(N)`` of ``[N, K + 1]``."""
    num_tasks = per_task.shape[0]
    std = per_task.std(dim=0, unbiased=True) if num_tasks > 1 else torch.zeros(per_task.shape[1])
    return per_task.mean(dim=0).tolist(), (1.96 * std / math.sqrt(num_tasks)).tolist()


def summarize_returns(per_task: Tensor) -> dict[str, list[Any]]:
    """``returns_mean``, ``returns_ci95`` (normal 95% half-width over tasks) and
    ``per_task_returns`` of per-task returns ``[N, K + 1]``."""
    mean, ci95 = _mean_ci95(per_task)
    return {"returns_mean": mean, "returns_ci95": ci95, "per_task_returns": per_task.tolist()}


def summarize_successes(per_task: Tensor) -> dict[str, list[Any]]:
    """``success_rate_mean``, ``success_rate_ci95`` and ``per_task_success_rates`` of the
    fraction of each task's episodes that succeeded (at any step), ``[N, K + 1]``: entry ``k``
    is after ``k`` adaptation steps (Meta-World's success rate)."""
    mean, ci95 = _mean_ci95(per_task)
    return {"success_rate_mean": mean, "success_rate_ci95": ci95,
            "per_task_success_rates": per_task.tolist()}


def _navigation_trajectories(meta_batch: MetaBatch, tasks: list[dict[str, Any]]
                             ) -> list[dict[str, Any]]:
    """First episode of the first tasks, before (step 0) and after (step K) adaptation."""
    batches = [*meta_batch.train, meta_batch.valid]
    examples = []
    for i, task in enumerate(tasks[:_TRAJECTORY_TASKS]):
        paths = []
        for batch in (batches[0], batches[-1]):
            steps = int(batch.masks[i, 0].sum())
            paths.append(batch.observations[i, 0, :steps, :2].tolist())  # oracle: + goal
        examples.append({"task": task, "before": paths[0], "after": paths[1]})
    return examples


def evaluate_run(
    run_dir: Path,
    num_tasks: int | None = None,
    adaptation_steps: int | None = None,
    episodes_per_task: int | None = None,
    seed: int = 0,
    eval_episodes_per_task: int | None = None,
    sampler: str | None = None,
    workers: int | str | None = None,
) -> Path:
    """Meta-test a run's final parameters; writes and returns ``run_dir/evaluation.json``.

    Unset arguments take the run config's ``evaluate`` section (RL²: ``adaptation_steps``
    defaults to ``rl2.episodes_per_trial - 1``, see :func:`~fastadapt.run.rl2_runner.
    evaluate_rl2`); ``eval_episodes_per_task`` (episodes sampled with the finally adapted
    policy) defaults to the episodes per step. ``sampler`` / ``workers`` replace the run's
    ``run.sampler`` / ``run.workers`` for this evaluation (the result is the same; only the
    wall time changes). The result also records the run's ``algorithm``.

    Raises:
        ConfigError: ``eval_episodes_per_task`` is below 1, or given for an RL² run (whose
            trials have no separately sampled adapted policy); an invalid ``sampler`` or
            ``workers``, or a sampler other than ``vector`` for RL².
    """
    overrides = [f"run.{key}={value}" for key, value in
                 (("sampler", sampler), ("workers", workers)) if value is not None]
    config = load_run_config(run_dir, overrides)
    configure_process(config.run.num_threads, config.run.retain_freed_memory)
    defaults = config.evaluate
    tasks = num_tasks or defaults.num_tasks
    episodes = episodes_per_task or defaults.episodes_per_task
    _check_eval_episodes(eval_episodes_per_task, config.algorithm)
    if config.algorithm == "rl2":
        from fastadapt.run.rl2_runner import evaluate_rl2

        result = evaluate_rl2(config, run_dir, tasks, adaptation_steps, episodes, seed)
    else:
        experiment = build_experiment(config)
        theta = load_policy_params(run_dir, experiment)
        steps = defaults.adaptation_steps if adaptation_steps is None else adaptation_steps
        inner_lr = load_inner_lr(run_dir, experiment.initial_params())
        result = meta_test(experiment, theta, tasks, steps, episodes, seed, inner_lr,
                           eval_episodes_per_task)
    result = {"algorithm": config.algorithm, **result}
    path = run_dir / EVALUATION_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(path)
    return path


def _check_eval_episodes(eval_episodes_per_task: int | None, algorithm: str) -> None:
    """Refuse an evaluation-episode count below 1, or any for RL² (see :func:`evaluate_run`)."""
    if eval_episodes_per_task is None:
        return
    if eval_episodes_per_task < 1:
        raise ConfigError(f"eval episodes must be >= 1, got {eval_episodes_per_task}")
    if algorithm == "rl2":
        raise ConfigError("--eval-episodes applies to gradient-adapted runs; an RL² trial "
                          "adapts within its episodes (use --adaptation-steps and --episodes)")
