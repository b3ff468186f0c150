"""Run outputs: ``metrics.jsonl`` (one JSON object per iteration), TensorBoard events and,
optionally, a W&B run (:mod:`fastadapt.run.wandb_sink`).

``metrics.jsonl`` is appended one flushed line per iteration. A line that does not parse (a
torn write of a killed process, a disk hiccup, a user's edit) is skipped by every reader and
reported, never taken as the end of the file; and a resumed run removes only the records it is
about to write again (those past its checkpoint), keeping every other line as it was.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import stat
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from fastadapt.closing import Closeable
from fastadapt.errors import StorageError
from fastadapt.files import atomic_write, is_integer, is_number, memory_limit, read_file

if TYPE_CHECKING:
    from fastadapt.run.wandb_sink import WandbSink

METRICS_FILE = "metrics.jsonl"


class Metrics(NamedTuple):
    """A run's ``metrics.jsonl`` as read.

    Attributes:
        records: the iteration records, in file order.
        skipped: the 1-based numbers of the lines that are not a record (not JSON, or not an
            object with an integer ``iteration``).
    """

    records: list[dict[str, Any]]
    skipped: list[int]


NUMBERS = ("seconds", "env_steps", "return_before", "return_after")
"""Keys a record holds numbers under (where it has them)."""


def _record(line: str) -> dict[str, Any] | None:
    """The record a line holds (an object with an integer ``iteration`` and numbers under
    :data:`NUMBERS`), or ``None``."""
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, RecursionError):
        return None
    if isinstance(record, dict) and is_integer(record.get("iteration")) \
            and all(is_number(record[key]) for key in NUMBERS if key in record):
        return record
    return None


def _read_text(path: Path) -> str:
    """``metrics.jsonl``'s text (bytes that are not UTF-8 replaced: their lines are skipped).

    Raises:
        CheckpointError: it is not a regular file, is larger than half the memory available
            or cannot be read (one line naming it).
    """
    return read_file(path, "cannot read the metrics file", memory_limit()).decode(
        "utf-8", errors="replace")


def read_metrics_file(run_dir: Path) -> Metrics:
    """Every record of ``run_dir/metrics.jsonl`` and the lines that are not one (an absent
    file has none).

    Raises:
        CheckpointError: the file is not a regular file (a directory, a FIFO), too large or
            unreadable.
    """
    path = run_dir / METRICS_FILE
    if not os.path.lexists(path):
        return Metrics([], [])
    records, skipped = [], []
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        record = _record(line)
        if record is None:
            skipped.append(number)
        else:
            records.append(record)
    return Metrics(records, skipped)


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The records of ``run_dir/metrics.jsonl`` (lines that are not a record skipped)."""
    return read_metrics_file(run_dir).records


def describe_skipped(skipped: list[int]) -> str:
    """``metrics.jsonl lines 7, 9 are not records (skipped)``, for a warning."""
    lines = ", ".join(map(str, skipped[:10])) + (", ..." if len(skipped) > 10 else "")
    plural = "s" if len(skipped) > 1 else ""
    verb = "are" if len(skipped) > 1 else "is"
    return f"{METRICS_FILE} line{plural} {lines} {verb} not a record (skipped)"


def truncate_metrics(run_dir: Path, last_iteration: int) -> None:
    """Remove the records past ``last_iteration`` (written after the checkpoint a resumed
    run continues from, which it writes again) and a torn last line (the unfinished write of
    a killed run); keep every other line as it is, unreadable ones included. Written
    atomically.

    Raises:
        CheckpointError: the file cannot be read (not a regular file, too large).
        StorageError: the file cannot be rewritten (the old one is kept).
    """
    path = run_dir / METRICS_FILE
    if not os.path.lexists(path):
        return
    text = _read_text(path)
    lines = text.splitlines()
    if lines and not text.endswith("\n") and _record(lines[-1]) is None:
        lines.pop()  # torn: this run's own unfinished line
    kept = []
    for line in lines:
        record = _record(line)
        if record is None or record["iteration"] <= last_iteration:
            kept.append(line)
    atomic_write(path, "".join(line + "\n" for line in kept).encode("utf-8"), "metrics")


def _torn(path: Path) -> bool:
    """Whether ``path`` ends in an unfinished line (``False`` if it is empty or absent).

    Raises:
        StorageError: it exists and is not a regular file (a FIFO would block the append).
        OSError: it cannot be read.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(info.st_mode):
        raise StorageError(f"cannot write the metrics file {path}: it is not a regular file; "
                           "move it away")
    if info.st_size == 0:
        return False
    with path.open("rb") as file:
        file.seek(-1, os.SEEK_END)
        return file.read(1) != b"\n"


def _quiet_writer_failures(previous: Any) -> Any:
    """A ``threading.excepthook`` that leaves TensorBoard's writer thread's ``OSError`` (a
    full disk) unprinted: :meth:`MetricsLogger.log` raises it as one line at the next record."""

    def hook(args: Any) -> None:
        if isinstance(args.exc_value, OSError) and \
                type(args.thread).__name__ == "_AsyncWriterThread":
            return
        previous(args)

    return hook


class MetricsLogger(Closeable):
    """Appends one line per iteration to ``metrics.jsonl``; mirrors scalars to TensorBoard
    and, with ``wandb_project``, to W&B (``config``: the run's config, shown there).

    Raises:
        StorageError: ``metrics.jsonl`` or the TensorBoard events cannot be written (one line
            naming the file).
    """

    def __init__(self, run_dir: Path, tensorboard: bool = True, wandb_project: str | None = None,
                 config: dict[str, Any] | None = None) -> None:
        self._path = run_dir / METRICS_FILE
        try:
            torn = _torn(self._path)
            self._file = self._path.open("a", encoding="utf-8")
            if torn:  # a killed writer's last line: end it, so the next record is whole
                self._file.write("\n")
        except OSError as err:
            raise StorageError.of(err, f"the metrics file {self._path}") from err
        self._writer: Any = None
        self._wandb: WandbSink | None = None
        self._events = run_dir / "tensorboard"
        self._hook = threading.excepthook
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            threading.excepthook = _quiet_writer_failures(self._hook)
            self._writer = SummaryWriter(log_dir=str(self._events))
        if wandb_project is not None:
            from fastadapt.run.wandb_sink import WandbSink

            try:
                self._wandb = WandbSink(run_dir, wandb_project, config or {})
            except Exception:
                self.close()
                raise

    def log(self, record: dict[str, Any]) -> None:
        """Write ``record`` (must hold ``iteration``); flushed so a crash loses nothing."""
        try:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()
        except OSError as err:
            raise StorageError.of(err, f"the metrics file {self._path}") from err
        if self._writer is not None:
            try:
                for key, value in record.items():
                    if isinstance(value, int | float) and math.isfinite(value) \
                            and key != "iteration":
                        self._writer.add_scalar(key, value, record["iteration"])
            except OSError as err:
                raise StorageError.of(err, f"TensorBoard events to {self._events}") from err
        if self._wandb is not None:
            self._wandb.log(record)

    def flush(self) -> None:
        """Write what TensorBoard's writer still holds (at the end of a run).

        Raises:
            StorageError: it cannot be written.
        """
        if self._writer is not None:
            try:
                self._writer.flush()
            except OSError as err:
                raise StorageError.of(err, f"TensorBoard events to {self._events}") from err

    def close(self) -> None:
        """Close the outputs (after :meth:`flush` at a normal end: a failure here is not
        raised, where it would hide the error that ended the run; every record is in
        ``metrics.jsonl`` already)."""
        # every record was flushed when logged: a failing close (a full disk) loses none, and
        # raising here would hide the error that ended the run
        with contextlib.suppress(OSError):
            self._file.close()
        if self._writer is not None:
            with contextlib.suppress(OSError):
                self._writer.close()
            threading.excepthook = self._hook
        if self._wandb is not None:
            self._wandb.close()
