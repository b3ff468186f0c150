"""Meta-training progress: a bar on a terminal, a plain line every ``LOG_INTERVAL_S`` seconds
elsewhere (nohup, CI, a cluster job's log), so a long run off a terminal is never silent for
minutes."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from fastadapt.closing import Closeable

LOG_INTERVAL_S = 30.0
"""Seconds between progress lines when the output is not a terminal."""


def _summary(record: dict[str, Any]) -> str:
    text = (f"{record['env_steps_per_second']:,.0f} steps/s  "
            f"return {record['return_before']:.1f} → {record['return_after']:.1f}")
    if isinstance(record.get("kl"), float):
        text += f"  kl {record['kl']:.4f}"
    return text


class TrainProgress(Closeable):
    """A rich progress bar when ``stream`` is a terminal, else a line per ``interval_s``
    seconds (and one for the last iteration); nothing when ``enabled`` is false.

    Args:
        total_iterations: the run's iterations.
        completed: iterations done before (a resumed run).
        enabled: show progress at all (``--quiet`` turns it off).
        stream: where lines go (default ``sys.stdout``).
        interval_s: seconds between lines off a terminal.
        clock: seconds, monotonic (tests pass their own).
    """

    def __init__(self, total_iterations: int, completed: int, enabled: bool = True,
                 stream: TextIO | None = None, interval_s: float = LOG_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.enabled = total_iterations, enabled
        self.stream = sys.stdout if stream is None else stream
        self.interval_s, self.clock = interval_s, clock
        self._last_line = clock()
        self._started = self._last_line
        self._progress: Progress | None = None
        if enabled and self.stream.isatty():
            self._progress = Progress(
                TextColumn("[bold]meta-train"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.description}"),
            )
            self._task = self._progress.add_task("", total=total_iterations, completed=completed)

    def update(self, record: dict[str, Any]) -> None:
        """Show the latest iteration's record."""
        if not self.enabled:
            return
        if self._progress is not None:
            self._progress.update(self._task, completed=record["iteration"],
                                  description=_summary(record))
            return
        now = self.clock()
        if now - self._last_line >= self.interval_s or record["iteration"] == self.total:
            self._last_line = now
            minutes = (now - self._started) / 60
            print(f"iteration {record['iteration']}/{self.total}  env steps "
                  f"{record['env_steps']:,}  {minutes:.1f} min  {_summary(record)}",
                  file=self.stream, flush=True)

    def __enter__(self) -> TrainProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def close(self) -> None:
        """Stop drawing the bar."""
        if self._progress is not None:
            self._progress.stop()
