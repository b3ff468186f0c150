"""What ``--resume`` may change, and when a run directory cannot be resumed.

A resumed run continues the run its directory holds, so the keys that define that run cannot
change: the ``algorithm``, its ``plugins``, the task family (``env.*``), the policy
(``policy.*``), ``run.seed`` and ``run.init_from``. Every other key may (:data:`FIXED_ON_RESUME`
lists the fixed ones): the budget (``run.iterations``), how and where it runs (``run.sampler``,
``run.workers``, ``run.device``, ...), checkpointing and logging, the ``evaluate`` section and
the algorithm's own settings (a learning rate lowered by hand). ``config.yaml`` then holds the
new values and, under ``changes:``, one record per changed key: the iteration it changed at,
the key, the value before and after; nothing of the run's history is overwritten.

A run directory that shows progress (records in ``metrics.jsonl`` past its first checkpoint's
iteration, or a final ``policy.safetensors``) but holds no loadable checkpoint cannot be resumed:
starting it over would silently rewrite its records. It is refused before any file is touched.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fastadapt.config import TrainConfig
from fastadapt.errors import CheckpointError, ConfigError
from fastadapt.quoting import shorten
from fastadapt.run.config_loading import CHANGES_KEY, flat_config
from fastadapt.run.logging import read_metrics

__all__ = ["FIXED_ON_RESUME", "change_records", "check_progress_is_checkpointed",
           "config_changes", "earlier_changes", "fixed_keys_changed"]

FIXED_ON_RESUME = ("algorithm", "plugins", "env.", "policy.", "run.seed", "run.init_from")
"""Keys (and, ending in a dot, sections) that define a run: ``--resume`` cannot change them."""


def config_changes(saved: TrainConfig, given: TrainConfig) -> list[tuple[str, Any, Any]]:
    """The keys whose values differ between a run's saved config and the one it resumes
    with, as ``(dotted key, saved value, given value)`` in the config's order."""
    before, after = flat_config(saved), flat_config(given)
    keys = list(dict.fromkeys([*before, *after]))
    return [(key, before.get(key), after.get(key)) for key in keys
            if key != "format" and before.get(key) != after.get(key)]


def fixed_keys_changed(changes: list[tuple[str, Any, Any]], run_dir: Path) -> None:
    """Refuse changes of the keys that define a run (:data:`FIXED_ON_RESUME`).

    Raises:
        ConfigError: one line naming the first such key, both values and what to do.
    """
    for key, before, after in changes:
        if any(key == fixed or (fixed.endswith(".") and key.startswith(fixed))
               for fixed in FIXED_ON_RESUME):
            raise ConfigError(
                f"{key} defines the run in {run_dir} ({shorten(before, 40)}) and cannot change "
                f"on --resume (got {shorten(after, 40)}): start a new run instead, e.g. with "
                f"--set run.init_from={run_dir} to start from its parameters "
                "(nothing was changed)")


def change_records(changes: list[tuple[str, Any, Any]], iteration: int,
                   earlier: list[Any]) -> list[Any]:
    """``config.yaml``'s ``changes:`` list with one record per change at ``iteration``
    appended to the ``earlier`` ones."""
    return [*earlier, *({"iteration": iteration, "key": key, "from": before, "to": after}
                        for key, before, after in changes)]


def check_progress_is_checkpointed(run_dir: Path, first_checkpoint: int) -> None:
    """Refuse to start a run over that shows progress a checkpoint should hold.

    Called when a resumed run has no loadable checkpoint. Records up to
    ``first_checkpoint`` (the iteration of the run's first checkpoint: ``run.checkpoint_every``,
    or ``run.iterations`` if smaller) may be there without one (a run killed before it wrote
    its first checkpoint starts over); records past it, or a final policy, mean checkpoints
    were written and are gone.

    Raises:
        CheckpointError: one line naming what shows progress and how to continue.
    """
    policy = run_dir / "policy.safetensors"
    last = max((record["iteration"] for record in read_metrics(run_dir)), default=0)
    if not policy.exists() and last <= first_checkpoint:
        return
    shown = (f"metrics.jsonl records {last} iterations" if last > first_checkpoint
             else "it holds a final policy.safetensors")
    how = (f"continue from its final policy in a new run with --set run.init_from={run_dir}"
           if policy.exists() else "start a new run (its records are kept here)")
    raise CheckpointError(f"cannot resume {run_dir}: {shown} but it has no loadable checkpoint "
                          f"to continue from; {how} (nothing was changed)")


def earlier_changes(data: Mapping[str, Any], run_dir: Path) -> list[Any]:
    """The ``changes:`` records of a saved config's mapping.

    Raises:
        ConfigError: ``changes`` is not a list.
    """
    earlier = data.get(CHANGES_KEY, [])
    fields = {"iteration", "key", "from", "to"}
    if not isinstance(earlier, list) or not all(
            isinstance(record, dict) and set(record) == fields for record in earlier):
        raise ConfigError(f"{run_dir / 'config.yaml'}: '{CHANGES_KEY}' must be a list of "
                          "records (iteration, key, from, to), got " + shorten(earlier, 40)
                          + ": mend or remove it")
    return earlier
