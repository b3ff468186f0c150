"""Scores of many evaluated runs aggregated per algorithm (``fastadapt report``), with the
statistics of Agarwal et al. 2021 ("Deep RL at the edge of the statistical precipice"), computed
by their library, rliable.

A run's scores are its meta-test returns on the held-out tasks at the last point of the
adaptation curve (``per_task_returns[:, -1]`` of ``evaluation.json``: after the last inner
step, or the last episode of a trial), or at point ``k`` (``--point k``: after ``k`` inner steps,
or episode ``k + 1`` of a trial), or the sum over the curve (``--total``: the return gathered
over the whole adaptation, e.g. an RL² bandit trial's total reward when an episode is a pull).
Runs of one algorithm form a ``[runs, tasks]`` matrix; since every run meets the same held-out
tasks (``family.test_tasks(N)``), the tasks play the role of rliable's tasks and the runs its
runs. Per algorithm: the mean, the median and the
interquartile mean (IQM: the mean of the middle 50% of all run × task scores), each with a
stratified bootstrap 95% CI (runs resampled within each task); for each pair of algorithms the
probability of improvement ``P(X > Y)`` (Mann-Whitney, averaged over tasks) with its CI; and
performance profiles (the fraction of run × task scores above each threshold).
"""

from __future__ import annotations

import contextlib
import os
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fastadapt.errors import CheckpointError, ConfigError, SweepError
from fastadapt.evaluation.evaluation_file import read_evaluation
from fastadapt.evaluation.grouping import group_label, row_labels
from fastadapt.files import check_distinct
from fastadapt.run.facts import read_facts
from fastadapt.run.rundir import EVALUATION_FILE

__all__ = ["Aggregate", "AlgorithmScores", "aggregate", "group_label", "load_scores",
           "performance_profiles", "probability_of_improvement", "seeded_global_rng"]

BOOTSTRAP_REPS = 2000
"""Bootstrap resamples of every CI (rliable's default for profiles; 50,000 for point
estimates in the paper, which changes the CIs' third digit)."""


@dataclass
class AlgorithmScores:
    """The evaluated runs of one group (an algorithm, or a sweep's config and grid point) on
    one family: ``scores [runs, tasks]``."""

    algorithm: str
    """The group's label."""
    env: str
    runs: list[str]
    scores: np.ndarray


@dataclass
class Aggregate:
    """Point estimates and 95% CIs (``[low, high]``) per group, and ``P(X > Y)`` per pair
    ``"X > Y"`` (X listed before Y; ``P(Y > X) = 1 - P(X > Y)``)."""

    estimates: dict[str, dict[str, float]]
    intervals: dict[str, dict[str, tuple[float, float]]]
    improvement: dict[str, tuple[float, float, float]]
    """``"X > Y"``: ``(P, low, high)``."""


def _rliable() -> Any:
    try:
        from rliable import library, metrics
    except ImportError as err:
        raise SweepError(f"fastadapt report needs rliable: pip install 'fastadapt[report]' "
                         f"[{err}]") from None
    return library, metrics


@contextlib.contextmanager
def seeded_global_rng(seed: int) -> Iterator[None]:
    """NumPy's global random state seeded with ``seed`` inside, and put back as it was after.

    rliable 1.2's ``StratifiedBootstrap`` draws its resamples with ``np.random.choice``
    (the global state) and ignores the ``random_state`` it is given: its CIs are reproducible
    only this way, and the caller's global random state is left alone.
    """
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(saved)


@contextlib.contextmanager
def _quiet_arch() -> Iterator[None]:
    """Without arch's deprecation notice about the ``random_state`` rliable passes it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "random_state is deprecated", FutureWarning)
        yield


def load_scores(run_dirs: list[Path], point: int | None = -1) -> list[AlgorithmScores]:
    """The runs' per-task returns at ``point`` of the adaptation curve (default: the last;
    ``None``: their sum over the curve), grouped in first-seen order by
    :func:`~fastadapt.evaluation.grouping.row_labels` (a sweep's seeds by its name, other
    runs by algorithm and the settings that differ).

    Raises:
        CheckpointError: runs without ``evaluation.json`` (all named), or with one that cannot
            be read or is not what an evaluation holds.
        ConfigError: runs of different task families, or with different held-out task
            counts, or curves without ``point`` (named); a run given twice (by one path or
            two: a symlink, a trailing slash), which would count its scores twice; a
            ``config.yaml`` that cannot be read.
        PluginError: an evaluation of an older release, without its algorithm, of a run
            without ``facts.json`` whose algorithm is a plugin's not imported.
    """
    check_distinct(run_dirs, member=EVALUATION_FILE)
    missing = [str(run) for run in run_dirs if not os.path.lexists(run / EVALUATION_FILE)]
    if missing:
        raise CheckpointError(f"report needs evaluated runs; not evaluated: {', '.join(missing)}"
                              " (run fastadapt evaluate on them)")
    groups: dict[str, AlgorithmScores] = {}
    rows: dict[str, list[np.ndarray]] = {}
    envs: dict[str, list[str]] = {}
    evaluations = [read_evaluation(run) for run in run_dirs]
    algorithms = [evaluation.get("algorithm") or read_facts(run).algorithm
                  for run, evaluation in zip(run_dirs, evaluations, strict=True)]
    labels = row_labels(run_dirs, algorithms)
    for run, evaluation, label in zip(run_dirs, evaluations, labels, strict=True):
        envs.setdefault(evaluation["env"], []).append(str(run))
        curves = np.asarray(evaluation["per_task_returns"], dtype=np.float64)
        if point is None:
            scores = curves.sum(axis=1)
        elif -curves.shape[1] <= point < curves.shape[1]:
            scores = curves[:, point]
        else:
            raise ConfigError(f"report --point {point}: {run} has points 0..{curves.shape[1] - 1}")
        group = groups.setdefault(label, AlgorithmScores(label, evaluation["env"], [],
                                                         np.empty(0)))
        group.runs.append(str(run))
        rows.setdefault(label, []).append(scores)
    if len(envs) > 1:
        listed = "; ".join(f"{env}: {', '.join(runs)}" for env, runs in envs.items())
        raise ConfigError(f"report needs runs of one task family, got {listed}")
    sizes = {len(r) for scores in rows.values() for r in scores}
    if len(sizes) > 1:
        raise ConfigError(f"report needs runs evaluated on the same held-out tasks, got "
                          f"{sorted(sizes)} tasks")
    for label, group in groups.items():  # runs in path order: the bootstrap's draws do not
        order = sorted(range(len(group.runs)), key=lambda i: group.runs[i])  # depend on
        group.runs = [group.runs[i] for i in order]  # the order they were given in
        group.scores = np.stack([rows[label][i] for i in order])
    return list(groups.values())


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """``P(X > Y)`` of scores ``x [runs_x, tasks]`` and ``y [runs_y, tasks]``: per task the
    Mann-Whitney U statistic over ``runs_x * runs_y`` (ties count one half), averaged over
    tasks (Agarwal et al. 2021, eq. 6). The value of rliable's
    ``metrics.probability_of_improvement``, vectorised over tasks (rliable calls SciPy once per
    task, which dominates a bootstrap's time)."""
    pairs = x[:, None, :] - y[None, :, :]
    return float(np.mean((pairs > 0).mean(axis=(0, 1)) + 0.5 * (pairs == 0).mean(axis=(0, 1))))


def _interval_estimates(library: Any, scores: dict[str, Any], function: Any, reps: int,
                        seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """rliable's point estimates and stratified bootstrap CIs, each key's drawn from its own
    stream (``seed`` and the key's CRC-32), so a group's CI does not depend on which groups
    came before it."""
    points: dict[str, Any] = {}
    cis: dict[str, Any] = {}
    for key, value in scores.items():
        key_seed = (seed + zlib.crc32(key.encode("utf-8"))) % 2**32
        with _quiet_arch(), seeded_global_rng(key_seed):
            point, ci = library.get_interval_estimates(
                {key: value}, function, reps=reps, random_state=np.random.RandomState(key_seed))
        points[key], cis[key] = point[key], ci[key]
    return points, cis


def aggregate(groups: list[AlgorithmScores], reps: int = BOOTSTRAP_REPS, seed: int = 0
              ) -> Aggregate:
    """Mean, median and IQM with stratified bootstrap CIs, and pairwise ``P(X > Y)``; the same
    for the same ``seed`` (NumPy's global random state is seeded inside and restored, see
    :func:`seeded_global_rng`).

    Raises:
        SweepError: rliable is not installed.
    """
    library, metrics = _rliable()
    score_dict = {g.algorithm: g.scores for g in groups}

    def estimators(scores: np.ndarray) -> np.ndarray:
        return np.array([metrics.aggregate_mean(scores), metrics.aggregate_median(scores),
                         metrics.aggregate_iqm(scores)])

    names = ("mean", "median", "iqm")
    points, cis = _interval_estimates(library, score_dict, estimators, reps, seed)
    estimates = {a: dict(zip(names, map(float, points[a]), strict=True)) for a in score_dict}
    intervals = {a: {n: (float(cis[a][0, i]), float(cis[a][1, i])) for i, n in enumerate(names)}
                 for a in score_dict}
    order = list(score_dict)
    pairs = {f"{x} > {y}": (score_dict[x], score_dict[y])
             for i, x in enumerate(order) for y in order[i + 1:]}
    improvement: dict[str, tuple[float, float, float]] = {}
    if pairs:
        probabilities, pair_cis = _interval_estimates(library, pairs,
                                                      probability_of_improvement, reps, seed)
        improvement = {pair: (float(probabilities[pair]), float(np.ravel(pair_cis[pair])[0]),
                              float(np.ravel(pair_cis[pair])[1])) for pair in pairs}
    return Aggregate(estimates, intervals, improvement)


def performance_profiles(groups: list[AlgorithmScores], thresholds: np.ndarray,
                         reps: int = BOOTSTRAP_REPS, seed: int = 0
                         ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The fraction of run × task scores above each threshold, and its 95% CIs (the same for
    the same ``seed``, as :func:`aggregate`).

    Raises:
        SweepError: rliable is not installed.
    """
    library, _ = _rliable()
    with _quiet_arch(), seeded_global_rng(seed):
        profiles: tuple[dict[str, np.ndarray], dict[str, np.ndarray]] = (
            library.create_performance_profile({g.algorithm: g.scores for g in groups},
                                               thresholds, reps=reps))
    return profiles


def report_table(groups: list[AlgorithmScores], result: Aggregate) -> str:
    """Markdown: per group its runs, tasks, mean, median and IQM [95% CI]; then
    P(X > Y)."""
    def cell(algorithm: str, name: str) -> str:
        low, high = result.intervals[algorithm][name]
        return f"{result.estimates[algorithm][name]:.2f} [{low:.2f}, {high:.2f}]"

    lines = ["| runs of | env | runs | tasks | mean [95% CI] | median [95% CI] "
             "| IQM [95% CI] |", "|---|---|---|---|---|---|---|"]
    for g in groups:
        lines.append(f"| {g.algorithm} | {g.env} | {g.scores.shape[0]} | {g.scores.shape[1]} "
                     f"| {cell(g.algorithm, 'mean')} | {cell(g.algorithm, 'median')} "
                     f"| {cell(g.algorithm, 'iqm')} |")
    if result.improvement:
        lines += ["", "| comparison | P(X > Y) [95% CI] |", "|---|---|"]
        for pair, (p, low, high) in result.improvement.items():
            lines.append(f"| {pair} | {p:.2f} [{low:.2f}, {high:.2f}] |")
    return "\n".join(lines)
