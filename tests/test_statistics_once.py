"""Statistics count each run once, and the same seed gives the same bootstrap.

``compare`` and ``report`` refuse a run given twice, by the same path, a trailing slash, a
``..`` detour or a symlink (its scores would count twice: a narrower CI, another IQM). rliable
1.2's ``StratifiedBootstrap`` draws from NumPy's global random state and ignores the
``random_state`` it is given: ``aggregate`` and ``performance_profiles`` seed that state for the
call and put it back, so two calls give the same CIs and the caller's state is untouched.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from cli_errors import one_line_error

from fastadapt.cli import main
from fastadapt.errors import ConfigError
from fastadapt.evaluation.aggregate import (
    AlgorithmScores,
    aggregate,
    load_scores,
    performance_profiles,
)
from fastadapt.plots import group_runs

REPS = 200


def _fake_run(path: Path, algorithm: str, final: list[float]) -> Path:
    """A run directory holding only an ``evaluation.json`` ending in ``final`` per task."""
    path.mkdir(parents=True)
    per_task = [[score - 10.0, score] for score in final]
    (path / "evaluation.json").write_text(json.dumps({
        "algorithm": algorithm, "env": "Navigation2D", "num_tasks": len(final),
        "adaptation_steps": 1, "episodes_per_task": 2, "per_task_returns": per_task,
        "returns_mean": np.mean(per_task, axis=0).tolist(), "returns_ci95": [0.0, 0.0]}))
    return path


@pytest.fixture()
def runs(tmp_path: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    return [_fake_run(tmp_path / f"{name}-seed{s}", algorithm, list(rng.normal(mu, 1.0, 4)))
            for name, algorithm, mu in (("a", "maml-trpo", -10.0), ("b", "maml-vpg", -8.0))
            for s in range(1, 4)]


def _same_path(run: Path) -> str:
    return str(run)


def _trailing_slash(run: Path) -> str:
    return f"{run}/"


def _detour(run: Path) -> str:
    return str(run.parent / ".." / run.parent.name / run.name)


def _symlink(run: Path) -> str:
    link = run.parent / f"link-to-{run.name}"
    link.symlink_to(run)
    return str(link)


AGAIN: dict[str, Callable[[Path], str]] = {
    "same path": _same_path, "trailing slash": _trailing_slash, "detour": _detour,
    "symlink": _symlink,
}
COMMANDS = {
    "compare": ["compare"], "compare env-steps": ["compare", "--x", "env-steps"],
    "report": ["report"],
}


@pytest.mark.parametrize("command", COMMANDS, ids=list(COMMANDS))
@pytest.mark.parametrize("again", AGAIN, ids=list(AGAIN))
def test_a_run_given_twice_is_refused(
        command: str, again: str, runs: list[Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "out.png"
    twice = AGAIN[again](runs[0])
    argv = [*COMMANDS[command], *map(str, runs), twice, "--output", str(output)]
    assert main(argv) == 2
    line = one_line_error(capsys)
    assert f"run {runs[0]} is given twice" in line and "give each run once" in line, line
    assert not output.exists()


@pytest.mark.parametrize("command", COMMANDS, ids=list(COMMANDS))
def test_a_hard_link_copy_of_a_run_is_refused(
        command: str, runs: list[Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "copy-seed9"
    copy.mkdir()
    for entry in runs[0].iterdir():  # cp -al: a new directory, the same files
        os.link(entry, copy / entry.name)
    output = tmp_path / "out.png"
    assert main([*COMMANDS[command], *map(str, runs), str(copy), "--output", str(output)]) == 2
    line = one_line_error(capsys)
    assert f"runs {runs[0]} and {copy} hold the same evaluation.json (a hard-link copy" in line
    assert not output.exists()


def test_the_libraries_refuse_a_run_given_twice(runs: list[Path]) -> None:
    link = _symlink(runs[1])
    for read in (load_scores, group_runs):
        with pytest.raises(ConfigError, match=f"run {runs[1]} is given twice \\(as {runs[1]} "
                                              f"and {link}\\)"):
            read([*runs, Path(link)])
    assert [g.scores.shape for g in load_scores(runs)] == [(3, 4), (3, 4)]  # once each: fine
    assert [g.per_task.shape for g in group_runs(runs)] == [(12, 2), (12, 2)]


def _groups() -> list[AlgorithmScores]:
    rng = np.random.default_rng(1)
    return [AlgorithmScores(name, "Navigation2D", [f"{name}{i}" for i in range(5)],
                            rng.normal(mu, 1.0, size=(5, 3))) for name, mu in (("a", 0.0),
                                                                               ("b", 0.5))]


def test_the_bootstrap_gives_the_same_cis_for_a_seed_and_leaves_numpys_state(
) -> None:
    np.random.seed(1234)
    state = np.random.get_state()
    first, second = aggregate(_groups(), REPS), aggregate(_groups(), REPS)
    assert first.intervals == second.intervals and first.improvement == second.improvement
    assert aggregate(_groups(), REPS, seed=1).intervals != first.intervals  # the seed is used
    profiles = performance_profiles(_groups(), np.linspace(-2, 2, 9), REPS)
    again = performance_profiles(_groups(), np.linspace(-2, 2, 9), REPS)
    for name in ("a", "b"):
        np.testing.assert_array_equal(profiles[1][name], again[1][name])
    after = np.random.get_state()
    assert after[0] == state[0] and np.array_equal(after[1], state[1]) and after[2:] == state[2:]


def test_report_prints_the_same_table_twice(
        runs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tables = []
    for _ in range(2):
        assert main(["report", *map(str, runs), "--output", str(tmp_path / "r.png")]) == 0
        tables.append(capsys.readouterr().out)
    assert tables[0] == tables[1]


def test_the_bootstrap_does_not_depend_on_the_order_of_the_runs(runs: list[Path]) -> None:
    forward = aggregate(load_scores(runs), reps=200, seed=3)
    backward = aggregate(load_scores(runs[::-1]), reps=200, seed=3)
    assert forward.intervals == backward.intervals  # per group, whatever order it came in
