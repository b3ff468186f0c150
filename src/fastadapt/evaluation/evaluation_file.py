"""Reading a run's ``evaluation.json`` (written by :mod:`fastadapt.evaluation.protocol`) for
``plot``, ``compare`` and ``report``: read as a regular file of bounded size, and checked
for what its readers use, so that a truncated, corrupt, empty or hand-edited file, or a
directory or a FIFO in its place, is one line naming it (and saying to evaluate the run
again), never a traceback or a hang.

What is checked: the file holds a JSON object; ``env`` is a name; ``per_task_returns`` is a
non-empty list of equally long, non-empty lists of numbers (``N x P``, ``P`` points of the
adaptation curve); and each of these keys, where present (or asked for), has its type:
``returns_mean``, ``returns_ci95``, ``success_rate_mean``, ``success_rate_ci95`` (``P``
numbers each), ``algorithm`` (a name), ``adapts_by``, ``num_tasks``, ``adaptation_steps``,
``episodes_per_task``, ``episodes_per_step``, ``eval_episodes_per_task`` (counts) and
``trajectories`` (examples with a ``task`` holding ``goal_x`` and ``goal_y``, and ``before``
and ``after`` paths of ``[x, y]`` points).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from fastadapt.errors import CheckpointError
from fastadapt.files import is_integer, is_number, read_json
from fastadapt.run.rundir import EVALUATION_FILE

__all__ = ["CURVE_NEEDS", "PLOT_NEEDS", "evaluation_problem", "read_evaluation"]

PLOT_NEEDS = ("returns_mean", "returns_ci95", "num_tasks")
"""The keys a run's ``report.png`` draws (``fastadapt plot``)."""
CURVE_NEEDS = ("returns_mean", "episodes_per_step|episodes_per_task")
"""The keys ``fastadapt compare`` draws (``a|b``: either)."""


def _count(minimum: int) -> Callable[[Any, int], str | None]:
    def check(value: Any, points: int) -> str | None:
        if is_integer(value, minimum):
            return None
        return f"must be an integer >= {minimum}, got {value!r:.40}"
    return check


def _name(value: Any, points: int) -> str | None:
    return None if isinstance(value, str) and value else f"must be a name, got {value!r:.40}"


def _curve(value: Any, points: int) -> str | None:
    if isinstance(value, list) and len(value) == points and all(map(is_number, value)):
        return None
    return f"must be a list of {points} numbers (one per point of per_task_returns)"


def _adapts_by(value: Any, points: int) -> str | None:
    return None if value in ("gradient_steps", "episodes") else \
        f"must be 'gradient_steps' or 'episodes', got {value!r:.40}"


def _path(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(point, list) and len(point) == 2 and all(map(is_number, point))
        for point in value)


def _trajectories(value: Any, points: int) -> str | None:
    ok = isinstance(value, list) and all(
        isinstance(example, dict) and isinstance(example.get("task"), dict)
        and all(is_number(example["task"].get(key)) for key in ("goal_x", "goal_y"))
        and all(_path(example.get(key)) for key in ("before", "after"))
        for example in value)
    return None if ok else ("must be a list of {task: {goal_x, goal_y}, before: [[x, y], ...], "
                            "after: [[x, y], ...]}")


_CHECKS: dict[str, Callable[[Any, int], str | None]] = {
    "env": _name,
    "algorithm": _name,
    "adapts_by": _adapts_by,
    "num_tasks": _count(1),
    "adaptation_steps": _count(0),
    "episodes_per_task": _count(1),
    "episodes_per_step": _count(1),
    "eval_episodes_per_task": _count(1),
    "returns_mean": _curve,
    "returns_ci95": _curve,
    "success_rate_mean": _curve,
    "success_rate_ci95": _curve,
    "trajectories": _trajectories,
}


def _per_task_problem(rows: Any) -> str | None:
    """What is wrong with ``per_task_returns`` (``None``: a non-empty ``N x P`` matrix)."""
    if not isinstance(rows, list) or not rows or not all(
            isinstance(row, list) and row for row in rows):
        return "'per_task_returns' must be a non-empty list of non-empty lists"
    if len({len(row) for row in rows}) > 1:
        return "'per_task_returns' rows differ in length"
    if not all(is_number(value) for row in rows for value in row):
        return "'per_task_returns' must hold numbers only"
    return None


def evaluation_problem(data: Any, needs: Iterable[str] = ()) -> str | None:
    """What is wrong with the content of an ``evaluation.json`` for a reader that uses the
    keys ``needs`` (besides ``env`` and ``per_task_returns``; ``"a|b"``: ``a`` or ``b``), in
    a few words; ``None`` if nothing is."""
    if not isinstance(data, dict):
        return f"a JSON {type(data).__name__ if data is not None else 'null'}, not an object"
    for key in ("env", "per_task_returns", *needs):
        if not any(name in data for name in key.split("|")):
            return f"no {' or '.join(repr(name) for name in key.split('|'))}"
    problem = _per_task_problem(data["per_task_returns"])
    if problem is not None:
        return problem
    points = len(data["per_task_returns"][0])
    for key, check in _CHECKS.items():
        if key in data and (problem := check(data[key], points)) is not None:
            return f"{key!r} {problem}"
    return None


def read_evaluation(run_dir: Path, needs: Iterable[str] = ()) -> dict[str, Any]:
    """A run's ``evaluation.json``, checked for what a reader uses (see
    :func:`evaluation_problem`).

    Args:
        run_dir: the run directory.
        needs: the keys the reader uses besides ``env`` and ``per_task_returns``
            (e.g. :data:`PLOT_NEEDS`).

    Raises:
        CheckpointError: one line naming the file and saying to evaluate the run again: it
            is missing, not a regular file (a directory, a FIFO), too large, unreadable,
            empty, not JSON, or not what an evaluation holds.
    """
    path = run_dir / EVALUATION_FILE
    again = f"run fastadapt evaluate {run_dir} again"
    data = read_json(path, "cannot read the evaluation file", hint=again,
                     missing=f"{run_dir} has no {EVALUATION_FILE}: run `fastadapt evaluate "
                             f"{run_dir}` first")
    problem = evaluation_problem(data, needs)
    if problem is not None:
        raise CheckpointError(f"{path} is not a valid evaluation: {problem}; {again}")
    evaluation: dict[str, Any] = data
    return evaluation
