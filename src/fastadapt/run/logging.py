"""Run outputs: ``metrics.jsonl`` (one JSON object per iteration) and TensorBoard events."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from fastadapt.closing import Closeable

METRICS_FILE = "metrics.jsonl"


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The records of ``run_dir/metrics.jsonl`` (a torn last line is ignored)."""
    path = run_dir / METRICS_FILE
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return records


def truncate_metrics(run_dir: Path, last_iteration: int) -> None:
    """Keep only records with ``iteration <= last_iteration`` (used when resuming)."""
    kept = [r for r in read_metrics(run_dir) if r["iteration"] <= last_iteration]
    text = "".join(json.dumps(r) + "\n" for r in kept)
    (run_dir / METRICS_FILE).write_text(text)


class MetricsLogger(Closeable):
    """Appends one line per iteration to ``metrics.jsonl``; mirrors scalars to TensorBoard."""

    def __init__(self, run_dir: Path, tensorboard: bool = True) -> None:
        self._file = (run_dir / METRICS_FILE).open("a", encoding="utf-8")
        self._writer: Any = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def log(self, record: dict[str, Any]) -> None:
        """Write ``record`` (must hold ``iteration``); flushed so a crash loses nothing."""
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._writer is not None:
            for key, value in record.items():
                if isinstance(value, int | float) and math.isfinite(value) and key != "iteration":
                    self._writer.add_scalar(key, value, record["iteration"])

    def close(self) -> None:
        """Flush and close the outputs."""
        self._file.close()
        if self._writer is not None:
            self._writer.close()
