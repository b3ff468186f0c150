"""Which evaluated runs ``compare`` and ``report`` pool into one row, read from the runs'
files only.

A sweep's run ``NAME-seedK`` belongs to the row ``NAME`` (its config and grid point). Any other
run belongs to a row of its algorithm and its *method settings*: its ``config.yaml`` without
the keys that do not change the method (``run.*``, the seed among them, and ``evaluate.*``)
and without the records beside the settings (``format``, ``changes``, ``plugins``). Runs of
one algorithm with equal settings are seeds of one row, labelled by the algorithm; when an
algorithm's runs have different settings, each row's label adds the keys that differ, as
``maml-trpo (inner_lr=0.05)`` (keys of the algorithm's own section without its name). A run
without a ``config.yaml`` has no settings. The user may name the rows instead
(``compare --label``): runs with the same label pool into one row.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastadapt.errors import ConfigError
from fastadapt.run.config_loading import flatten
from fastadapt.run.format_0_1 import is_0_1_config, migrate_0_1
from fastadapt.run.names import run_group
from fastadapt.run.rundir import CONFIG_FILE
from fastadapt.run.yaml_config import read_mapping

__all__ = ["NOT_METHOD", "group_label", "method_settings", "row_labels"]

NOT_METHOD = ("format", "changes", "plugins", "algorithm", "run", "evaluate")
"""Top-level config keys that do not tell one method from another (the algorithm is the
row's name itself)."""
_COMMON = ("env", "policy")
"""Sections of every config; any other section of a run's config is its algorithm's."""
_UNSET = "unset"


def group_label(run: Path, algorithm: str) -> str:
    """A sweep's run ``<name>-seed<k>`` is labelled ``<name>`` (its config and grid point),
    any other run by its algorithm (before its settings are compared: :func:`row_labels`)."""
    return run_group(run) or algorithm


def method_settings(run_dir: Path) -> dict[str, Any]:
    """The flattened settings of a run's ``config.yaml`` that make its method (see the module
    docstring; a config of fastadapt 0.1.0 in this release's layout); ``{}`` without one.

    Raises:
        ConfigError: its ``config.yaml`` cannot be read or is not a YAML mapping.
    """
    path = run_dir / CONFIG_FILE
    if not os.path.lexists(path):
        return {}
    data = read_mapping(path)
    if is_0_1_config(data):
        data = migrate_0_1(data)
    return flatten({key: value for key, value in data.items() if key not in NOT_METHOD})


def _show(key: str, value: Any) -> str:
    """``key=value``, the key without its algorithm section's name."""
    head, _, rest = key.partition(".")
    name = key if head in _COMMON or not rest else rest
    shown = value if isinstance(value, str) else json.dumps(value)
    return f"{name}={shown}"


def _labels_by_settings(algorithm: str, settings: list[dict[str, Any]]) -> list[str]:
    """Labels of runs of one ``algorithm``: the algorithm, with the keys whose values differ
    between the runs when they do."""
    keys = sorted({key for one in settings for key in one})
    differ = [key for key in keys
              if len({json.dumps(one.get(key, _UNSET), sort_keys=True, default=str)
                      for one in settings}) > 1]
    if not differ:
        return [algorithm] * len(settings)
    return [f"{algorithm} ({', '.join(_show(key, one.get(key, _UNSET)) for key in differ)})"
            for one in settings]


def row_labels(run_dirs: Sequence[Path], algorithms: Sequence[str],
               labels: Sequence[str] = ()) -> list[str]:
    """Each run's row (see the module docstring): ``labels`` if given, else a sweep's name
    or the algorithm with the settings that differ.

    Args:
        run_dirs: the runs.
        algorithms: each run's algorithm.
        labels: the user's row names, one per run in order (``compare --label``), or none.

    Raises:
        ConfigError: ``labels`` given, but not one per run, or an empty one; a run's
            ``config.yaml`` cannot be read.
    """
    if labels:
        if len(labels) != len(run_dirs):
            raise ConfigError(f"--label names the row of each run, in order: got {len(labels)} "
                              f"labels for {len(run_dirs)} runs")
        if not all(label.strip() for label in labels):
            raise ConfigError("--label wants a name, got an empty one")
        return list(labels)
    rows = [run_group(run) for run in run_dirs]
    runs_of: dict[str, list[int]] = {}  # an algorithm's runs outside sweeps
    for i, run_row in enumerate(rows):
        if run_row is None:
            runs_of.setdefault(algorithms[i], []).append(i)
    for name, indices in runs_of.items():
        settings = [method_settings(run_dirs[i]) for i in indices]
        for i, label in zip(indices, _labels_by_settings(name, settings), strict=True):
            rows[i] = label
    return [run_row or name for run_row, name in zip(rows, algorithms, strict=True)]
