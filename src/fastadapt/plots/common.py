"""What every figure shares: the Agg backend, atomic PNG writes and reading a run's
``evaluation.json``."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from fastadapt.algorithms.registry import algorithm_class
from fastadapt.errors import CheckpointError, StorageError
from fastadapt.run.checkpoint import atomic_write
from fastadapt.run.rundir import EVALUATION_FILE, load_run_config

__all__ = ["load_evaluation", "plt", "save_figure", "write_figure"]


def save_figure(fig: Figure, path: Path, what: str) -> None:
    """Write ``fig`` as a PNG to ``path`` atomically (one line if it cannot be written)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write(path, buffer.getvalue(), what)


def write_figure(fig: Figure, ax: Axes, output: Path, what: str) -> Path:
    """Add the legend, lay out and write ``fig`` to ``output`` (its directory made)."""
    ax.legend(fontsize="small")
    fig.tight_layout()
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        plt.close(fig)
        raise StorageError.of(err, f"the figure's directory {output.parent}") from err
    save_figure(fig, output, what)
    return output


def load_evaluation(run_dir: Path, plugins: Iterable[str] = ()) -> dict[str, Any]:
    """A run's ``evaluation.json``, with the ``algorithm`` and ``adapts_by`` that older
    releases did not record."""
    path = run_dir / EVALUATION_FILE
    if not path.exists():
        raise CheckpointError(f"{run_dir} has no {EVALUATION_FILE}: run `fastadapt evaluate "
                              f"{run_dir}` first")
    evaluation: dict[str, Any] = json.loads(path.read_text())
    if "algorithm" not in evaluation:  # written before evaluations recorded it
        evaluation["algorithm"] = load_run_config(run_dir, plugins=plugins).algorithm
    if "adapts_by" not in evaluation:  # written by fastadapt 0.1.0
        evaluation["adapts_by"] = algorithm_class(evaluation["algorithm"]).adapts_by
    return evaluation

