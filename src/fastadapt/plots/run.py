"""``report.png`` of a run: learning curve, adaptation curve with CI, navigation trajectories."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes

from fastadapt.errors import CheckpointError
from fastadapt.evaluation.evaluation_file import PLOT_NEEDS, read_evaluation
from fastadapt.plots.common import plt, save_figure
from fastadapt.run.facts import AdaptsBy, read_facts
from fastadapt.run.logging import read_metrics
from fastadapt.run.rundir import EVALUATION_FILE, REPORT_FILE


def _learning_curve(ax: Axes, metrics: list[dict[str, Any]], adapts_by: AdaptsBy) -> None:
    """Training returns by meta-iteration: before and after the inner steps, or (algorithms
    that adapt by episodes, RL²) of the first and the last episode of the trials."""
    metrics = [m for m in metrics if "return_before" in m and "return_after" in m]
    iterations = [m["iteration"] for m in metrics]
    by_episodes = adapts_by == "episodes"
    before, after = (("first episode of the trial", "last episode of the trial") if by_episodes
                     else ("before adaptation", "after adaptation"))
    ax.plot(iterations, [m["return_before"] for m in metrics], label=before)
    ax.plot(iterations, [m["return_after"] for m in metrics], label=after)
    ax.set(title="meta-training", xlabel="meta-iteration", ylabel="mean episode return")
    ax.legend()


def _adaptation_curve(ax: Axes, evaluation: dict[str, Any]) -> None:
    steps = list(range(len(evaluation["returns_mean"])))  # adaptation_steps + 1 points
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


def plot_run(run_dir: Path) -> Path:
    """Draw ``run_dir/report.png`` from ``metrics.jsonl`` and ``evaluation.json`` (if any).

    Raises:
        CheckpointError: not a run directory, or no metrics yet; its ``metrics.jsonl`` or
            ``evaluation.json`` cannot be read or is not what a run writes (one line).
        StorageError: ``report.png`` cannot be written, or is not a regular file.
        ConfigError, PluginError: a run without ``facts.json`` (an older release's) whose
            algorithm or family is unknown (a plugin not imported).
    """
    metrics = read_metrics(run_dir)
    if not metrics:
        raise CheckpointError(f"{run_dir} has no metrics.jsonl to plot (is it a run directory?)")
    facts = read_facts(run_dir)
    eval_path = run_dir / EVALUATION_FILE
    evaluation = (read_evaluation(run_dir, PLOT_NEEDS)
                  if os.path.lexists(eval_path) else None)
    if evaluation is not None:  # fastadapt 0.1.0 did not record it
        evaluation.setdefault("adapts_by", facts.adapts_by)
    panels = 1 + (evaluation is not None) + bool(evaluation and "trajectories" in evaluation)
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4.5), squeeze=False)
    _learning_curve(axes[0, 0], metrics, facts.adapts_by)
    if evaluation is not None:
        _adaptation_curve(axes[0, 1], evaluation)
        if "trajectories" in evaluation:
            _trajectories(axes[0, 2], evaluation)
    fig.tight_layout()
    path = run_dir / REPORT_FILE
    save_figure(fig, path, "report")
    return path


