"""A progress bar for meta-training: iteration, env steps/s, return before → after."""

from __future__ import annotations

from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from fastadapt.closing import Closeable


class TrainProgress(Closeable):
    """Rich progress bar; a no-op when ``enabled`` is false."""

    def __init__(self, total_iterations: int, completed: int, enabled: bool = True) -> None:
        self._progress: Progress | None = None
        if enabled:
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
        if self._progress is None:
            return
        text = (
            f"{record['env_steps_per_second']:,.0f} steps/s  "
            f"return {record['return_before']:.1f} → {record['return_after']:.1f}"
        )
        if isinstance(record.get("kl"), float):
            text += f"  kl {record['kl']:.4f}"
        self._progress.update(self._task, completed=record["iteration"], description=text)

    def __enter__(self) -> TrainProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def close(self) -> None:
        """Stop drawing the bar."""
        if self._progress is not None:
            self._progress.stop()
