"""``report.png``: learning curve, adaptation curve with CI, and navigation trajectories."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from fastadapt.errors import CheckpointError
from fastadapt.evaluate import EVALUATION_FILE
from fastadapt.run.logging import read_metrics

REPORT_FILE = "report.png"


def _learning_curve(ax: Axes, metrics: list[dict[str, Any]]) -> None:
    iterations = [m["iteration"] for m in metrics]
    ax.plot(iterations, [m["return_before"] for m in metrics], label="before adaptation")
    ax.plot(iterations, [m["return_after"] for m in metrics], label="after adaptation")
    ax.set(title="meta-training", xlabel="meta-iteration", ylabel="mean episode return")
    ax.legend()


def _adaptation_curve(ax: Axes, evaluation: dict[str, Any]) -> None:
    steps = list(range(evaluation["adaptation_steps"] + 1))
    mean, ci = evaluation["returns_mean"], evaluation["returns_ci95"]
    ax.errorbar(steps, mean, yerr=ci, marker="o", capsize=4)
    ax.set(
        title=f"meta-test: {evaluation['num_tasks']} held-out tasks (95% CI)",
        xlabel="inner gradient steps",
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
    ax.set(title="trajectories (dotted: before, solid: after)", xlim=(-0.6, 0.6),
           ylim=(-0.6, 0.6), aspect="equal")
    ax.legend()


def plot_run(run_dir: Path) -> Path:
    """Draw ``run_dir/report.png`` from ``metrics.jsonl`` and ``evaluation.json`` (if any)."""
    metrics = read_metrics(run_dir)
    if not metrics:
        raise CheckpointError(f"{run_dir} has no metrics.jsonl to plot (is it a run directory?)")
    eval_path = run_dir / EVALUATION_FILE
    evaluation = json.loads(eval_path.read_text()) if eval_path.exists() else None
    panels = 1 + (evaluation is not None) + bool(evaluation and "trajectories" in evaluation)
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4.5), squeeze=False)
    _learning_curve(axes[0, 0], metrics)
    if evaluation is not None:
        _adaptation_curve(axes[0, 1], evaluation)
        if "trajectories" in evaluation:
            _trajectories(axes[0, 2], evaluation)
    fig.tight_layout()
    path = run_dir / REPORT_FILE
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
