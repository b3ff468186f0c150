"""The run directory: its files, their format, and loading a run back.

A run directory holds

- ``config.yaml``: the resolved config (``format: 2``; only the run's algorithm's section);
- ``metrics.jsonl``: one JSON object per iteration; ``tensorboard/``: the same as events;
- ``checkpoints/iter_NNNNNN.{safetensors,json}``: tensors ``policy/<name>`` (the policy file's
  content) and ``algorithm/<name>`` (optimizer state, generators), and in the JSON the
  iteration, env steps, the task sampler's and the sampler's random state and ``format``;
- ``policy.safetensors`` at the end: the parameters by name, and extras named
  ``group/name`` (Meta-SGD's ``inner_lr/<name>``);
- ``evaluation.json`` and ``report.png`` once evaluated and plotted.

Run directories of fastadapt 0.1.0 (format 1) still evaluate and resume: their config and
checkpoints are converted as they are read, except RL²'s checkpoints, which drew trials from
other random streams and are refused on resume with one line (they still evaluate).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor

from fastadapt.config import TrainConfig
from fastadapt.errors import CheckpointError
from fastadapt.run.checkpoint import (
    atomic_write,
    latest_checkpoint,
    load_checkpoint,
    load_tensors,
    save_checkpoint,
    save_tensors,
)
from fastadapt.run.config_loading import CHANGES_KEY, load_train_config, train_config_to_dict
from fastadapt.run.lock import RunLock
from fastadapt.run.logging import METRICS_FILE
from fastadapt.run.yaml_config import dump_yaml
from fastadapt.types import Params

RUN_FORMAT = 2
"""The run-directory format of this release (0.1.0 wrote format 1)."""
CONFIG_FILE = "config.yaml"
POLICY_FILE = "policy.safetensors"
EVALUATION_FILE = "evaluation.json"
REPORT_FILE = "report.png"
CHECKPOINTS = "checkpoints"
POLICY_PREFIX = "policy/"
STATE_PREFIX = "algorithm/"

__all__ = ["CHECKPOINTS", "CONFIG_FILE", "EVALUATION_FILE", "METRICS_FILE", "POLICY_FILE",
           "REPORT_FILE", "RUN_FORMAT", "Checkpoint", "check_new_run_dir", "check_params",
           "final_policy_tensors",
           "load_run_config", "prepare_run_dir", "read_checkpoint", "save_policy_file",
           "save_run_config", "split_policy", "starts_afresh", "write_checkpoint"]


def load_run_config(run_dir: Path, overrides: Sequence[str] = (),
                    plugins: Iterable[str] = ()) -> TrainConfig:
    """The resolved config of a run directory, with ``overrides`` (``"run.workers=4"``).

    Raises:
        CheckpointError: ``run_dir`` is not a run directory.
        ConfigError, PluginError: as :func:`~fastadapt.run.config_loading.load_train_config`.
    """
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory {run_dir} does not exist")
    if not (run_dir / CONFIG_FILE).exists():
        raise CheckpointError(f"{run_dir} is not a run directory (no {CONFIG_FILE})")
    return load_train_config(run_dir / CONFIG_FILE, overrides, plugins)


def save_run_config(config: TrainConfig, run_dir: Path, changes: list[Any] | None = None
                    ) -> None:
    """Write ``config.yaml`` (what :func:`load_run_config` reads back), with the records of
    the changes ``--resume`` made (:mod:`fastadapt.run.resume`) under ``changes:``."""
    data = train_config_to_dict(config)
    if changes:
        data[CHANGES_KEY] = changes
    atomic_write(run_dir / CONFIG_FILE, dump_yaml(data).encode("utf-8"), "config")


def check_new_run_dir(run_dir: Path) -> None:
    """Refuse to start a new run where a run is.

    Raises:
        CheckpointError: ``run_dir`` already holds a run.
    """
    if (run_dir / METRICS_FILE).exists() or (run_dir / CHECKPOINTS).exists():
        raise CheckpointError(
            f"{run_dir} already holds a run; pass --resume to continue it or choose "
            "another --run-dir (nothing was changed)"
        )


def prepare_run_dir(config: TrainConfig, run_dir: Path, lock: RunLock) -> None:
    """Make a new run directory, take its ``lock``, and write its ``config.yaml``.

    Raises:
        CheckpointError: it already holds a run (checked again under the lock, so of two
            new runs given one directory the second is refused), or cannot be made.
        RunLockedError: another process writes to it.
    """
    check_new_run_dir(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CheckpointError(f"cannot create run directory {run_dir}: {err.strerror}") from err
    lock.acquire()
    check_new_run_dir(run_dir)
    save_run_config(config, run_dir)


def starts_afresh(run_dir: Path, resume: bool) -> bool:
    """Whether a run begins from its initial parameters, where ``run.init_from`` applies: a
    new run, or a resumed one that stopped before its first checkpoint was written."""
    return not resume or not any((run_dir / CHECKPOINTS).glob("iter_*.json"))


def check_params(params: Params, expected: Params, source: Path) -> Params:
    """``params`` checked against ``expected`` (names, shapes, dtypes, finite values), in
    ``expected``'s order (files store names sorted; the order fixes how parameters are
    flattened for TRPO, hence the exact bits of a resumed run) and on its device.

    Raises:
        CheckpointError: one line naming the file and the first mismatch.
    """
    if set(params) != set(expected):
        raise CheckpointError(
            f"{source} does not match the config's policy: parameters "
            f"{sorted(params)} in the file, {sorted(expected)} expected"
        )
    checked: Params = {}
    for name, like in expected.items():
        value = params[name]
        if value.shape != like.shape:
            raise CheckpointError(
                f"{source} does not match the config's policy: {name!r} has shape "
                f"{list(value.shape)} in the file, {list(like.shape)} expected"
            )
        if value.dtype != like.dtype:
            raise CheckpointError(f"{source}: parameter {name!r} is {value.dtype}, the policy "
                                  f"needs {like.dtype}")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"{source}: parameter {name!r} holds NaN or inf values")
        checked[name] = value.to(like.device)
    return checked


def split_policy(tensors: dict[str, Tensor]) -> tuple[Params, dict[str, Tensor]]:
    """A policy file's content as (parameters, extras): extras are named ``group/name``."""
    params = {k: v for k, v in tensors.items() if "/" not in k}
    return params, {k: v for k, v in tensors.items() if "/" in k}


def save_policy_file(run_dir: Path, tensors: dict[str, Tensor], iteration: int) -> Path:
    """Write ``policy.safetensors`` (parameters and extras) atomically."""
    meta = {"iteration": str(iteration), "format": str(RUN_FORMAT)}
    return save_tensors(run_dir / POLICY_FILE, tensors, meta)


class Checkpoint(NamedTuple):
    """A checkpoint as read back (format 1 converted).

    Attributes:
        policy: the policy file's content at that iteration (parameters and extras).
        state: the algorithm's state tensors.
        meta: the JSON record: ``iteration``, ``env_steps``, ``task_rng``, ``sampler``.
    """

    policy: dict[str, Tensor]
    state: dict[str, Tensor]
    meta: dict[str, Any]


def _strip(tensors: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    # clone: own, writable storage rather than views into the file's buffer
    n = len(prefix)
    return {k[n:]: v.clone() for k, v in tensors.items() if k.startswith(prefix)}


def _contents(tensors: dict[str, Tensor], meta: dict[str, Any]
              ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """A checkpoint's (policy, state) tensors; format 1 kept the state under ``outer/`` and
    Meta-SGD's rates among it."""
    policy = _strip(tensors, POLICY_PREFIX)
    if meta.get("format", 1) > 1:
        return policy, _strip(tensors, STATE_PREFIX)
    state = _strip(tensors, "outer/")
    for key in [k for k in state if k.startswith("inner_lr/")]:
        policy[key] = state.pop(key)
    return policy, state


def read_checkpoint(marker: Path) -> Checkpoint:
    """Read a checkpoint to resume from, converting fastadapt 0.1.0's layout.

    Raises:
        CheckpointError: the files are corrupt, or this release cannot resume it (the message
            names the version).
    """
    tensors, meta = load_checkpoint(marker)
    _check_format(meta, marker)
    if "env_rng" in meta:
        raise CheckpointError(
            f"{marker} was written by fastadapt 0.1.0 or earlier with random streams this "
            "release no longer draws (RL²'s trials, or a sampler before per-task streams): it "
            "cannot be resumed bit-exactly (evaluate works); start a new run from it with "
            f"run.init_from={marker.parent.parent}")
    return Checkpoint(*_contents(tensors, meta), meta)


def write_checkpoint(run_dir: Path, iteration: int, policy: dict[str, Tensor],
                     state: dict[str, Tensor], meta: dict[str, Any], keep_last: int) -> Path:
    """Write the checkpoint of ``iteration`` (see the module docstring); returns its JSON."""
    tensors = {POLICY_PREFIX + n: t for n, t in policy.items()}
    tensors.update({STATE_PREFIX + n: t for n, t in state.items()})
    return save_checkpoint(run_dir / CHECKPOINTS, iteration, tensors,
                           {**meta, "format": RUN_FORMAT}, keep_last)


def final_policy_tensors(run_dir: Path) -> tuple[dict[str, Tensor], Path]:
    """The final policy of a run (``policy.safetensors``, else the latest checkpoint's) and
    the file it came from.

    Raises:
        CheckpointError: the run has neither, the file is corrupt, or it was written by a
            newer fastadapt (a run format this release does not read).
    """
    path = run_dir / POLICY_FILE
    if path.exists():
        tensors, meta = load_tensors(path)
        _check_format(meta, path)
        return tensors, path
    marker = latest_checkpoint(run_dir / CHECKPOINTS)
    if marker is None:
        raise CheckpointError(f"{run_dir} has neither {POLICY_FILE} nor a checkpoint")
    tensors, meta = load_checkpoint(marker)
    _check_format(meta, marker)
    return _contents(tensors, meta)[0], marker


def _check_format(meta: dict[str, Any], source: Path) -> None:
    """Refuse a file of a run format newer than :data:`RUN_FORMAT`.

    Raises:
        CheckpointError: naming the file's format and this release's.
    """
    value = meta.get("format", 1)
    try:
        run_format = int(value)
    except (TypeError, ValueError):
        raise CheckpointError(f"{source} has an unreadable run format {value!r}") from None
    if run_format > RUN_FORMAT:
        raise CheckpointError(f"{source} has run format {run_format}, written by a newer "
                              f"fastadapt; this one reads format {RUN_FORMAT}: upgrade")
