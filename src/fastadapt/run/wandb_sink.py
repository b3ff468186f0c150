"""An optional Weights & Biases sink: ``run.wandb: PROJECT`` mirrors every iteration record to a
W&B run (``pip install 'fastadapt[wandb]'``). TensorBoard stays the default and
``metrics.jsonl`` stays the record: W&B only mirrors it.

The W&B run is tied to the run directory: its id comes from the directory's absolute path, its
name is the directory's name and its files live in ``RUN_DIR/wandb``, so ``--resume`` continues
the same W&B run. A resumed run repeats the iterations after its checkpoint bit for bit, and
W&B drops steps it has already seen, so its history holds each iteration once. A sweep's seeds
(``NAME-seedK``) share the group ``NAME``. W&B's own variables choose the rest:
``WANDB_MODE=offline`` logs without an account (``wandb sync RUN_DIR/wandb/offline-run-*``
uploads later), ``WANDB_ENTITY`` the team.

A W&B failure after the start (a network error on a cluster node) does not stop training: one
warning, and the sink is off for the rest of the run.
"""

from __future__ import annotations

import hashlib
import math
import re
import warnings
from pathlib import Path
from typing import Any

from fastadapt.closing import Closeable
from fastadapt.errors import ConfigError, StorageError
from fastadapt.run.names import run_group

__all__ = ["WandbSink", "import_wandb", "wandb_run_id"]


def import_wandb() -> Any:
    """``wandb``.

    Raises:
        ConfigError: it is not installed (the message says how to install it).
    """
    try:
        import wandb
    except ImportError as err:
        raise ConfigError(f"run.wandb needs Weights & Biases: pip install 'fastadapt[wandb]' "
                          f"[{err}]") from None
    return wandb


def wandb_run_id(run_dir: Path) -> str:
    """``<name>-<hash of the absolute path>``: the same for a run and its resumptions, distinct
    for two directories of one name."""
    digest = hashlib.sha1(str(run_dir.resolve()).encode()).hexdigest()[:10]
    return f"{re.sub(r'[^A-Za-z0-9_-]+', '_', run_dir.name)[:48]}-{digest}"


class WandbSink(Closeable):
    """Mirrors iteration records (their finite numbers, at step ``iteration``) to W&B.

    Raises:
        ConfigError: ``wandb`` is not installed.
        StorageError: W&B cannot start the run (not logged in, no network: the message says
            so, and that ``WANDB_MODE=offline`` needs neither).
    """

    def __init__(self, run_dir: Path, project: str, config: dict[str, Any]) -> None:
        wandb = import_wandb()
        self._warned = False
        tags = [str(config.get("algorithm")), str(config.get("env", {}).get("name"))]
        try:
            self._run: Any = wandb.init(
                project=project, id=wandb_run_id(run_dir), name=run_dir.name,
                group=run_group(run_dir), dir=str(run_dir), config=config, tags=tags,
                resume="allow", settings=wandb.Settings(silent=True, console="off"))
        except Exception as err:  # W&B's errors have no common base beyond Exception
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise StorageError(f"W&B could not start the run (run.wandb: {project}): {first}; "
                               "WANDB_MODE=offline logs without an account or network") from None

    def log(self, record: dict[str, Any]) -> None:
        """Mirror ``record``; after a W&B failure, warn once and stop mirroring."""
        if self._run is None:
            return
        values = {key: value for key, value in record.items() if key != "iteration"
                  and isinstance(value, int | float) and math.isfinite(value)}
        try:
            self._run.log(values, step=record["iteration"])
        except Exception as err:  # the data is in metrics.jsonl already
            self._off(err)

    def _off(self, err: BaseException) -> None:
        warnings.warn(f"W&B stopped mirroring the metrics ({err}); metrics.jsonl has them all",
                      RuntimeWarning, stacklevel=3)
        self._run = None

    def close(self) -> None:
        """Finish the W&B run (its files are written to ``RUN_DIR/wandb``)."""
        if self._run is not None:
            try:
                self._run.finish()
            except Exception as err:  # closing must not hide the error that ended a run
                self._off(err)
