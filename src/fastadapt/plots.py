"""``report.png`` of a run (learning curve, adaptation curve with CI, navigation trajectories)
and ``fastadapt compare``: the adaptation curves of several runs in one figure and a table."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from fastadapt.algorithms.base import AdaptsBy
from fastadapt.algorithms.registry import algorithm_class
from fastadapt.errors import CheckpointError, ConfigError, StorageError
from fastadapt.evaluation.aggregate import (
    Aggregate,
    AlgorithmScores,
    aggregate,
    load_scores,
    performance_profiles,
    report_table,
)
from fastadapt.evaluation.statistics import mean_ci95
from fastadapt.run.checkpoint import atomic_write
from fastadapt.run.logging import read_metrics
from fastadapt.run.rundir import EVALUATION_FILE, REPORT_FILE, load_run_config


def _save(fig: Figure, path: Path, what: str) -> None:
    """Write ``fig`` as a PNG to ``path`` atomically (one line if it cannot be written)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write(path, buffer.getvalue(), what)


def _write_figure(fig: Figure, ax: Axes, output: Path, what: str) -> Path:
    """Add the legend, lay out and write ``fig`` to ``output`` (its directory made)."""
    ax.legend(fontsize="small")
    fig.tight_layout()
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        plt.close(fig)
        raise StorageError.of(err, f"the figure's directory {output.parent}") from err
    _save(fig, output, what)
    return output


def _learning_curve(ax: Axes, metrics: list[dict[str, Any]], adapts_by: AdaptsBy) -> None:
    """Training returns by meta-iteration: before and after the inner steps, or (algorithms
    that adapt by episodes, RL²) of the first and the last episode of the trials."""
    iterations = [m["iteration"] for m in metrics]
    by_episodes = adapts_by == "episodes"
    before, after = (("first episode of the trial", "last episode of the trial") if by_episodes
                     else ("before adaptation", "after adaptation"))
    ax.plot(iterations, [m["return_before"] for m in metrics], label=before)
    ax.plot(iterations, [m["return_after"] for m in metrics], label=after)
    ax.set(title="meta-training", xlabel="meta-iteration", ylabel="mean episode return")
    ax.legend()


def _adaptation_curve(ax: Axes, evaluation: dict[str, Any]) -> None:
    steps = list(range(evaluation["adaptation_steps"] + 1))
    mean, ci = evaluation["returns_mean"], evaluation["returns_ci95"]
    ax.errorbar(steps, mean, yerr=ci, marker="o", capsize=4)
    by_episodes = evaluation["adapts_by"] == "episodes"
    ax.set(
        title=f"meta-test: {evaluation['num_tasks']} held-out tasks (95% CI)",
        xlabel="episode of the trial - 1" if by_episodes else "inner gradient steps",
        ylabel="mean episode return",
        xticks=steps,
    )


def _trajectories(ax: Axes, evaluation: dict[str, Any]) -> None:
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, example in enumerate(evaluation["trajectories"]):
        color = colors[i % len(colors)]
        goal = example["task"]
        ax.scatter([goal["goal_x"]], [goal["goal_y"]], marker="*", s=150, color=color)
        for key, style in (("before", ":"), ("after", "-")):
            path = example[key]
            if path:
                xs, ys = zip(*path, strict=True)
                ax.plot(xs, ys, style, color=color, label=key if i == 0 else None)
    ax.set(title="trajectories (dotted: before, solid: after)", aspect="equal")
    ax.legend()


def plot_run(run_dir: Path, plugins: Iterable[str] = ()) -> Path:
    """Draw ``run_dir/report.png`` from ``metrics.jsonl`` and ``evaluation.json`` (if any).

    Raises:
        CheckpointError: not a run directory, or no metrics yet.
        ConfigError, PluginError: its algorithm is unknown (a plugin not installed).
    """
    metrics = read_metrics(run_dir)
    if not metrics:
        raise CheckpointError(f"{run_dir} has no metrics.jsonl to plot (is it a run directory?)")
    adapts_by = algorithm_class(load_run_config(run_dir, plugins=plugins).algorithm).adapts_by
    eval_path = run_dir / EVALUATION_FILE
    evaluation = _load_evaluation(run_dir, plugins) if eval_path.exists() else None
    panels = 1 + (evaluation is not None) + bool(evaluation and "trajectories" in evaluation)
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4.5), squeeze=False)
    _learning_curve(axes[0, 0], metrics, adapts_by)
    if evaluation is not None:
        _adaptation_curve(axes[0, 1], evaluation)
        if "trajectories" in evaluation:
            _trajectories(axes[0, 2], evaluation)
    fig.tight_layout()
    path = run_dir / REPORT_FILE
    _save(fig, path, "report")
    return path


# --------------------------------------------------------------------------- compare

COMPARE_FILE = "compare.png"


@dataclass
class CurveGroup:
    """The evaluations of runs with the same algorithm, env and protocol, pooled.

    Attributes:
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

    @property
    def seconds_per_iteration(self) -> float:
        """Mean over the pooled runs of their median seconds per iteration."""
        return round(float(np.mean(self.seconds)), 3)

    @property
    def label(self) -> str:
        """``algorithm`` (and the number of runs pooled when more than one)."""
        runs = len(self.runs)
        return self.algorithm if runs == 1 else f"{self.algorithm} ({runs} runs)"

    def mean_ci(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and normal 95% half-width over the pooled (run, task) pairs, ``[K + 1]`` each."""
        mean, ci = mean_ci95(self.per_task)
        return np.asarray(mean), np.asarray(ci)


def _load_evaluation(run_dir: Path, plugins: Iterable[str] = ()) -> dict[str, Any]:
    """A run's ``evaluation.json``, with the ``algorithm`` and ``adapts_by`` that older
    releases did not record."""
    path = run_dir / EVALUATION_FILE
    if not path.exists():
        raise CheckpointError(f"{run_dir} has no {EVALUATION_FILE}: run `fastadapt evaluate "
                              f"{run_dir}` first")
    evaluation: dict[str, Any] = json.loads(path.read_text())
    if "algorithm" not in evaluation:  # written before evaluations recorded it
        evaluation["algorithm"] = load_run_config(run_dir, plugins=plugins).algorithm
    if "adapts_by" not in evaluation:  # written by fastadapt 0.1.0
        evaluation["adapts_by"] = algorithm_class(evaluation["algorithm"]).adapts_by
    return evaluation


def group_runs(run_dirs: list[Path], plugins: Iterable[str] = ()) -> list[CurveGroup]:
    """Read the runs' ``evaluation.json`` and pool those with the same algorithm, env, number
    of points and episodes per point (e.g. the seeds of one benchmark entry), in first-seen
    order.

    Raises:
        CheckpointError: a run has no ``evaluation.json``.
        ConfigError: the runs were evaluated on different task families.
    """
    evaluations = [_load_evaluation(run_dir, plugins) for run_dir in run_dirs]
    envs = {evaluation["env"] for evaluation in evaluations}
    if len(envs) > 1:
        listed = ", ".join(f"{run} ({evaluation['env']})"
                           for run, evaluation in zip(run_dirs, evaluations, strict=True))
        raise ConfigError(f"compare needs runs of one task family, got {listed}")
    groups: dict[tuple[str, str, int, int], CurveGroup] = {}
    for run_dir, evaluation in zip(run_dirs, evaluations, strict=True):
        per_step = int(evaluation.get("episodes_per_step", evaluation["episodes_per_task"]))
        points = len(evaluation["returns_mean"])
        key = (evaluation["algorithm"], evaluation["env"], points, per_step)
        per_task = np.asarray(evaluation["per_task_returns"], dtype=np.float64)
        seconds = _median_iteration_seconds(run_dir)
        if key in groups:
            group = groups[key]
            group.runs.append(str(run_dir))
            group.per_task = np.concatenate([group.per_task, per_task])
            group.seconds.append(seconds)
        else:
            experience = [k * per_step for k in range(points)]
            groups[key] = CurveGroup(key[0], key[1], [str(run_dir)], experience, per_task,
                                     [seconds])
    return list(groups.values())


def _median_iteration_seconds(run_dir: Path) -> float:
    seconds = [m["seconds"] for m in read_metrics(run_dir) if "seconds" in m]
    return float(np.median(seconds)) if seconds else float("nan")


def comparison_table(groups: list[CurveGroup]) -> str:
    """A markdown table: algorithm, env, runs, return before adaptation, after the last point
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
            f"| {group.algorithm} | {group.env} | {len(group.runs)} "
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
    return _write_figure(fig, ax, output, "comparison figure")


def compare_runs(run_dirs: list[Path], output: Path, plugins: Iterable[str] = ()
                 ) -> tuple[Path, str]:
    """``fastadapt compare``: write the figure to ``output``; return it and the table."""
    groups = group_runs(run_dirs, plugins)
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


def run_budget(run_dir: Path, plugins: Iterable[str] = ()) -> RunBudget:
    """A run's budget and results from its ``metrics.jsonl``, ``evaluation.json`` and config.

    Raises:
        CheckpointError: no metrics, or no evaluation yet.
    """
    config = load_run_config(run_dir, plugins=plugins)
    evaluation = _load_evaluation(run_dir, plugins)
    metrics = [m for m in read_metrics(run_dir) if "env_steps" in m]
    if not metrics:
        raise CheckpointError(f"{run_dir} has no metrics.jsonl records to compare")
    horizon = config.env.horizon
    if horizon is None:
        from fastadapt.envs.registry import make_family

        horizon = make_family(config.env.name, **config.env.kwargs).horizon
    updates = algorithm_class(config.algorithm).updates_per_iteration(config.section)
    return RunBudget(
        run=str(run_dir), algorithm=config.algorithm, env=evaluation["env"], horizon=horizon,
        env_steps=[int(m["env_steps"]) for m in metrics],
        train_per_step=[float(m["return_after"]) / horizon for m in metrics],
        test_per_step=[float(r) / horizon for r in evaluation["returns_mean"]],
        test_ci=[float(c) / horizon for c in evaluation["returns_ci95"]],
        gradient_steps=None if updates is None else updates * len(metrics),
        seconds=float(sum(m.get("seconds", 0.0) for m in metrics)),
    )


def efficiency_table(budgets: list[RunBudget]) -> str:
    """A markdown table: each run's env steps, gradient steps, wall time and meta-test
    return per step at the first and the last point (mean ± 95% CI over tasks)."""
    lines = ["| algorithm | run | env | horizon | env steps | gradient steps | wall time (h) "
             "| return / step, first point | return / step, last point |",
             "|---|---|---|---|---|---|---|---|---|"]
    for b in budgets:
        grads = "-" if b.gradient_steps is None else f"{b.gradient_steps:,}"
        lines.append(
            f"| {b.algorithm} | {Path(b.run).name} | {b.env} | {b.horizon} "
            f"| {b.env_steps[-1]:,} | {grads} "
            f"| {b.seconds / 3600:.2f} | {b.test_per_step[0]:.3f} ± {b.test_ci[0]:.3f} "
            f"| {b.test_per_step[-1]:.3f} ± {b.test_ci[-1]:.3f} |")
    return "\n".join(lines)


def plot_efficiency(budgets: list[RunBudget], output: Path) -> Path:
    """Return per step against meta-training env steps: each run's training curve (a moving
    average) and its meta-test result after adaptation (95% CI) at its final env steps."""
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    repeated = len({b.algorithm for b in budgets}) < len(budgets)
    for i, b in enumerate(budgets):
        color = colors[i % len(colors)]
        name = f"{b.algorithm} ({Path(b.run).name})" if repeated else b.algorithm
        window = min(EFFICIENCY_SMOOTHING, len(b.train_per_step))
        smooth = np.convolve(b.train_per_step, np.ones(window) / window, mode="valid")
        ax.plot(b.env_steps[window - 1:], smooth, color=color, alpha=0.6,
                label=f"{name}: training batches")
        ax.errorbar([b.env_steps[-1]], [b.test_per_step[-1]], yerr=[b.test_ci[-1]],
                    marker="o", capsize=4, color=color,
                    label=f"{name}: meta-test after adaptation")
    ax.set_xscale("log")
    ax.set(title=f"sample efficiency on {budgets[0].env} (95% CI over held-out tasks)",
           xlabel="meta-training env steps", ylabel="return per env step")
    return _write_figure(fig, ax, output, "sample-efficiency figure")


def compare_efficiency(run_dirs: list[Path], output: Path, plugins: Iterable[str] = ()
                       ) -> tuple[Path, str]:
    """``fastadapt compare --x env-steps``: write the figure to ``output``; return it and the
    table.

    Raises:
        CheckpointError: a run has no metrics or no ``evaluation.json``.
        ConfigError: the runs were evaluated on different task families.
    """
    budgets = [run_budget(run_dir, plugins) for run_dir in run_dirs]
    envs = {b.env for b in budgets}
    if len(envs) > 1:
        raise ConfigError(f"compare needs runs of one task family, got {sorted(envs)}")
    return plot_efficiency(budgets, output), efficiency_table(budgets)


# ------------------------------------------------------------------------------ report

REPORT_THRESHOLDS = 60
"""Points of the performance profiles' threshold axis."""


def _short_labels(labels: list[str]) -> list[str]:
    """Labels without the part all share before a comma (a sweep's config name)."""
    heads = {label.partition(",")[0] for label in labels}
    if len(labels) > 1 and len(heads) == 1 and all("," in label for label in labels):
        return [label.partition(",")[2] for label in labels]
    return labels


def plot_report(groups: list[AlgorithmScores], result: Aggregate, output: Path) -> Path:
    """``fastadapt report``'s figure: each algorithm's IQM with its 95% CI, and the
    performance profiles (fraction of run × task scores above each threshold, 95% bands)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, g in enumerate(groups):
        low, high = result.intervals[g.algorithm]["iqm"]
        iqm = result.estimates[g.algorithm]["iqm"]
        left.errorbar([iqm], [i], xerr=[[iqm - low], [high - iqm]], fmt="o", capsize=4,
                      color=colors[i % len(colors)])
    labels = _short_labels([g.algorithm for g in groups])
    left.set(yticks=range(len(groups)), yticklabels=labels, ylim=(-0.5, len(groups) - 0.5),
             title=f"interquartile mean, {groups[0].env} (95% CI)",
             xlabel="return after adaptation (held-out tasks)")
    scores = np.concatenate([g.scores.ravel() for g in groups])
    thresholds = np.linspace(scores.min(), scores.max(), REPORT_THRESHOLDS)
    profiles, bands = performance_profiles(groups, thresholds)
    for i, g in enumerate(groups):
        color = colors[i % len(colors)]
        right.plot(thresholds, profiles[g.algorithm], color=color, label=labels[i])
        right.fill_between(thresholds, bands[g.algorithm][0], bands[g.algorithm][1],
                           color=color, alpha=0.15)
    right.set(title="performance profiles (95% CI)", xlabel="return threshold τ",
              ylabel="fraction of run × task scores > τ")
    return _write_figure(fig, right, output, "report figure")


def report_runs(run_dirs: list[Path], output: Path, plugins: Iterable[str] = (),
                point: int | None = -1) -> tuple[Path, str]:
    """``fastadapt report``: write the figure to ``output``; return it and the table.

    Raises:
        CheckpointError: runs that were never evaluated (named).
        ConfigError: runs of different task families or held-out task counts.
        SweepError: rliable is not installed.
    """
    groups = load_scores(run_dirs, plugins, point)
    result = aggregate(groups)
    return plot_report(groups, result, output), report_table(groups, result)
