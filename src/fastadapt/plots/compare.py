"""``fastadapt compare``: the adaptation curves of several runs in one figure and a table,
and (``--x env-steps``) return per env step against meta-training env steps."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fastadapt.errors import CheckpointError, ConfigError
from fastadapt.evaluation.evaluation_file import CURVE_NEEDS
from fastadapt.evaluation.grouping import row_labels
from fastadapt.evaluation.statistics import mean_ci95
from fastadapt.files import check_distinct
from fastadapt.plots.common import load_evaluation, plt, write_figure
from fastadapt.run.facts import read_facts
from fastadapt.run.logging import read_metrics
from fastadapt.run.rundir import EVALUATION_FILE

COMPARE_FILE = "compare.png"


@dataclass
class CurveGroup:
    """The evaluations of the runs of one row (the seeds of one method, or the runs the user
    labelled alike: :func:`~fastadapt.evaluation.grouping.row_labels`) evaluated with one
    protocol, pooled.

    Attributes:
        algorithm: the algorithm (of the row's first run).
        name: the row's label (the algorithm, a sweep's name, the algorithm with the settings
            that differ, or the user's ``--label``).
        per_task: returns ``[R * N, K + 1]``: every run's per-task returns, stacked.
        experience: episodes of experience on the task before each point ``[K + 1]``
            (MAML and fine-tuning: ``k * episodes_per_task``; RL²: ``k``).
    """

    algorithm: str
    env: str
    runs: list[str]
    experience: list[int]
    per_task: np.ndarray
    seconds: list[float]
    """Each run's median seconds per training iteration (``metrics.jsonl``; NaN if absent)."""
    name: str = ""

    @property
    def seconds_per_iteration(self) -> float:
        """Mean over the pooled runs of their median seconds per iteration."""
        return round(float(np.mean(self.seconds)), 3)

    @property
    def label(self) -> str:
        """The row's name (and the number of runs pooled when more than one)."""
        runs, name = len(self.runs), self.name or self.algorithm
        return name if runs == 1 else f"{name} ({runs} runs)"

    def mean_ci(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and normal 95% half-width over the pooled (run, task) pairs, ``[K + 1]`` each."""
        mean, ci = mean_ci95(self.per_task)
        return np.asarray(mean), np.asarray(ci)


def group_runs(run_dirs: list[Path], labels: Sequence[str] = ()) -> list[CurveGroup]:
    """Read the runs' ``evaluation.json`` and pool those of one row (see
    :func:`~fastadapt.evaluation.grouping.row_labels`: the seeds of one method, or the runs
    ``labels`` names alike) with the same number of points and episodes per point, in
    first-seen order.

    Args:
        run_dirs: the evaluated runs.
        labels: the rows' names, one per run in order (``compare --label``); none: by the
            runs' configs.

    Raises:
        CheckpointError: a run has no ``evaluation.json``, or one that cannot be read or is
            not what an evaluation holds.
        ConfigError: the runs were evaluated on different task families, or a run is given
            twice (by one path or two: a symlink, a trailing slash); ``labels`` not one per
            run; a run's ``config.yaml`` cannot be read.
    """
    check_distinct(run_dirs, member=EVALUATION_FILE)
    evaluations = [load_evaluation(run_dir, CURVE_NEEDS) for run_dir in run_dirs]
    envs = {evaluation["env"] for evaluation in evaluations}
    if len(envs) > 1:
        listed = ", ".join(f"{run} ({evaluation['env']})"
                           for run, evaluation in zip(run_dirs, evaluations, strict=True))
        raise ConfigError(f"compare needs runs of one task family, got {listed}")
    names = row_labels(run_dirs, [evaluation["algorithm"] for evaluation in evaluations], labels)
    groups: dict[tuple[str, str, int, int], CurveGroup] = {}
    for run_dir, evaluation, name in zip(run_dirs, evaluations, names, strict=True):
        per_step = int(evaluation.get("episodes_per_step", evaluation["episodes_per_task"]))
        points = len(evaluation["returns_mean"])
        key = (name, evaluation["env"], points, per_step)
        per_task = np.asarray(evaluation["per_task_returns"], dtype=np.float64)
        seconds = _median_iteration_seconds(run_dir)
        if key in groups:
            group = groups[key]
            group.runs.append(str(run_dir))
            group.per_task = np.concatenate([group.per_task, per_task])
            group.seconds.append(seconds)
        else:
            experience = [k * per_step for k in range(points)]
            groups[key] = CurveGroup(evaluation["algorithm"], key[1], [str(run_dir)],
                                     experience, per_task, [seconds], name)
    return list(groups.values())


def _median_iteration_seconds(run_dir: Path) -> float:
    seconds = [m["seconds"] for m in read_metrics(run_dir) if "seconds" in m]
    return float(np.median(seconds)) if seconds else float("nan")


def comparison_table(groups: list[CurveGroup]) -> str:
    """A markdown table: the row's name (column ``algorithm``), env, runs, return before
    adaptation, after the last point
    and after the first step (RL²: episode) when they differ (mean ± 95% CI over run x task
    pairs), the episodes of experience the last point took, and the median seconds per
    training iteration (mean over runs)."""
    lines = [
        "| algorithm | env | runs | return before | return after | after 1 step "
        "| episodes used | s / iteration |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for group in groups:
        mean, ci = group.mean_ci()
        first = f"{mean[1]:.2f} ± {ci[1]:.2f}" if len(mean) > 1 else "-"
        lines.append(
            f"| {group.name or group.algorithm} | {group.env} | {len(group.runs)} "
            f"| {mean[0]:.2f} ± {ci[0]:.2f} | {mean[-1]:.2f} ± {ci[-1]:.2f} | {first} "
            f"| {group.experience[-1]} | {group.seconds_per_iteration:.2f} |"
        )
    return "\n".join(lines)


def plot_comparison(groups: list[CurveGroup], output: Path) -> Path:
    """Adaptation curves (return vs. episodes of experience on the new task) with 95% CI."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for group in groups:
        mean, ci = group.mean_ci()
        ax.errorbar(group.experience, mean, yerr=ci, marker="o", capsize=3,
                    label=f"{group.label}, {group.env}")
    ax.set_xscale("symlog", linthresh=1)
    ax.set(title="meta-test on held-out tasks (95% CI)",
           xlabel="episodes of experience on the new task", ylabel="mean episode return")
    return write_figure(fig, ax, output, "comparison figure")


def compare_runs(run_dirs: list[Path], output: Path, labels: Sequence[str] = ()
                 ) -> tuple[Path, str]:
    """``fastadapt compare``: write the figure to ``output``; return it and the table.

    Raises:
        CheckpointError, ConfigError: as :func:`group_runs`.
        StorageError: ``output`` cannot be written, or is not a regular file (a device, a
            FIFO, a directory: left as it is).
    """
    groups = group_runs(run_dirs, labels)
    return plot_comparison(groups, output), comparison_table(groups)


# ----------------------------------------------------------------- sample efficiency

EFFICIENCY_SMOOTHING = 10
"""Iterations in the moving average of the training curves of ``compare --x env-steps``."""


@dataclass
class RunBudget:
    """What a run spent and what it reached, per env step (``compare --x env-steps``).

    Attributes:
        env_steps: cumulative env steps after each training iteration.
        train_per_step: the training batches' return after adaptation, per env step of an
            episode (``return_after / horizon``), each iteration.
        test_per_step: the meta-test's mean return per step at each point.
        test_ci: the 95% half-widths of ``test_per_step``.
        gradient_steps: parameter updates of the whole run (``None``: not counted).
        seconds: wall time of the training iterations.
        test_success: the meta-test's success rate at each point, with its 95% half-width
            (families that report success, Meta-World; ``None`` otherwise).
    """

    run: str
    algorithm: str
    env: str
    horizon: int
    env_steps: list[int]
    train_per_step: list[float]
    test_per_step: list[float]
    test_ci: list[float]
    gradient_steps: int | None
    seconds: float
    test_success: tuple[list[float], list[float]] | None = None
    label: str = ""
    """The run's name in the table and figure (``compare --label``; default its algorithm)."""


def run_budget(run_dir: Path) -> RunBudget:
    """A run's budget and results from its ``metrics.jsonl``, ``evaluation.json`` and facts
    (:func:`~fastadapt.run.facts.read_facts`).

    Raises:
        CheckpointError: no metrics, or no evaluation yet, or one that is not valid; as
            :func:`~fastadapt.run.facts.read_facts`.
        ConfigError, PluginError: as :func:`~fastadapt.run.facts.read_facts`.
    """
    facts = read_facts(run_dir)
    evaluation = load_evaluation(run_dir, ("returns_mean", "returns_ci95"))
    metrics = [m for m in read_metrics(run_dir) if "env_steps" in m and "return_after" in m]
    if not metrics:
        raise CheckpointError(f"{run_dir} has no metrics.jsonl records to compare")
    horizon, updates = facts.horizon, facts.updates_per_iteration
    return RunBudget(
        run=str(run_dir), algorithm=facts.algorithm, env=evaluation["env"], horizon=horizon,
        env_steps=[int(m["env_steps"]) for m in metrics],
        train_per_step=[float(m["return_after"]) / horizon for m in metrics],
        test_per_step=[float(r) / horizon for r in evaluation["returns_mean"]],
        test_ci=[float(c) / horizon for c in evaluation["returns_ci95"]],
        gradient_steps=None if updates is None else updates * len(metrics),
        seconds=float(sum(m.get("seconds", 0.0) for m in metrics)),
        test_success=((evaluation["success_rate_mean"], evaluation["success_rate_ci95"])
                      if "success_rate_mean" in evaluation else None),
    )


def efficiency_table(budgets: list[RunBudget]) -> str:
    """A markdown table: each run's env steps, gradient steps, wall time and meta-test
    return per step at the first and the last point (mean ± 95% CI over tasks), and the
    success rate at the last point when every run reports one (Meta-World)."""
    success = all(b.test_success is not None for b in budgets)
    lines = ["| algorithm | run | env | horizon | env steps | gradient steps | wall time (h) "
             "| return / step, first point | return / step, last point |"
             + (" success, last point |" if success else ""),
             "|---|---|---|---|---|---|---|---|---|" + ("---|" if success else "")]
    for b in budgets:
        grads = "-" if b.gradient_steps is None else f"{b.gradient_steps:,}"
        row = (f"| {b.label or b.algorithm} | {Path(b.run).name} | {b.env} | {b.horizon} "
               f"| {b.env_steps[-1]:,} | {grads} "
               f"| {b.seconds / 3600:.2f} | {b.test_per_step[0]:.3f} ± {b.test_ci[0]:.3f} "
               f"| {b.test_per_step[-1]:.3f} ± {b.test_ci[-1]:.3f} |")
        if success and b.test_success is not None:
            rate, ci = b.test_success
            row += f" {rate[-1]:.2f} ± {ci[-1]:.2f} |"
        lines.append(row)
    return "\n".join(lines)


def plot_efficiency(budgets: list[RunBudget], output: Path) -> Path:
    """Return per step against meta-training env steps: each run's training curve (a moving
    average) and its meta-test result after adaptation (95% CI) at its final env steps."""
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    repeated = len({b.label or b.algorithm for b in budgets}) < len(budgets)
    for i, b in enumerate(budgets):
        color = colors[i % len(colors)]
        name = b.label or b.algorithm
        name = f"{name} ({Path(b.run).name})" if repeated else name
        window = min(EFFICIENCY_SMOOTHING, len(b.train_per_step))
        smooth = np.convolve(b.train_per_step, np.ones(window) / window, mode="valid")
        ax.plot(b.env_steps[window - 1:], smooth, color=color, alpha=0.6,
                marker="." if len(smooth) < 5 else None,  # a short run: its few points
                label=f"{name}: training batches")
        ax.errorbar([b.env_steps[-1]], [b.test_per_step[-1]], yerr=[b.test_ci[-1]],
                    marker="o", capsize=4, color=color,
                    label=f"{name}: meta-test after adaptation")
    ax.set_xscale("log")
    ax.set(title=f"sample efficiency on {budgets[0].env} (95% CI over held-out tasks)",
           xlabel="meta-training env steps", ylabel="return per env step")
    return write_figure(fig, ax, output, "sample-efficiency figure")


def compare_efficiency(run_dirs: list[Path], output: Path, labels: Sequence[str] = ()
                       ) -> tuple[Path, str]:
    """``fastadapt compare --x env-steps``: write the figure to ``output``; return it and the
    table (one row per run, named by ``labels``, one per run in order, or its algorithm).

    Raises:
        CheckpointError: a run has no metrics or no valid ``evaluation.json``.
        ConfigError: the runs were evaluated on different task families, or a run is given
            twice; ``labels`` not one per run.
    """
    check_distinct(run_dirs, member=EVALUATION_FILE)
    budgets = [run_budget(run_dir) for run_dir in run_dirs]
    if labels:
        for budget, label in zip(budgets, row_labels(run_dirs, [b.algorithm for b in budgets],
                                                     labels), strict=True):
            budget.label = label
    envs = {b.env for b in budgets}
    if len(envs) > 1:
        raise ConfigError(f"compare needs runs of one task family, got {sorted(envs)}")
    return plot_efficiency(budgets, output), efficiency_table(budgets)


