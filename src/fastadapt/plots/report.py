"""``fastadapt report``'s figure and table: IQM with 95% CIs and performance profiles."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fastadapt.evaluation.aggregate import (
    Aggregate,
    AlgorithmScores,
    aggregate,
    load_scores,
    performance_profiles,
    report_table,
)
from fastadapt.plots.common import plt, write_figure

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
    return write_figure(fig, right, output, "report figure")


def report_runs(run_dirs: list[Path], output: Path, point: int | None = -1
                ) -> tuple[Path, str]:
    """``fastadapt report``: write the figure to ``output``; return it and the table.

    Raises:
        CheckpointError: runs that were never evaluated (named), or whose
            ``evaluation.json`` cannot be read or is not what an evaluation holds.
        ConfigError: runs of different task families or held-out task counts; a run given
            twice (by one path or two: a symlink, a trailing slash).
        SweepError: rliable is not installed.
        StorageError: ``output`` cannot be written, or is not a regular file (left as it is).
    """
    groups = load_scores(run_dirs, point)
    result = aggregate(groups)
    return plot_report(groups, result, output), report_table(groups, result)
