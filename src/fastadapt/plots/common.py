"""What every figure shares: the Agg backend, atomic PNG writes and reading a run's
``evaluation.json``."""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from fastadapt.errors import StorageError
from fastadapt.evaluation.evaluation_file import read_evaluation
from fastadapt.files import atomic_write
from fastadapt.run.facts import read_facts

__all__ = ["load_evaluation", "plt", "save_figure", "write_figure"]


def save_figure(fig: Figure, path: Path, what: str, hint: str = "remove it") -> None:
    """Write ``fig`` as a PNG to ``path`` atomically (one line if it cannot be written, or
    if ``path`` is not a regular file: then ``hint`` says what to do).

    Raises:
        StorageError: the file cannot be written, or ``path`` (or the file its symlink
            points to) is a device, a FIFO, a directory or a socket, left as it is.
    """
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write(path, buffer.getvalue(), what, hint=hint)


def write_figure(fig: Figure, ax: Axes, output: Path, what: str) -> Path:
    """Add the legend, lay out and write ``fig`` to ``output`` (its directory made; a
    symlink written through).

    Raises:
        StorageError: as :func:`save_figure` (``choose another --output``).
    """
    ax.legend(fontsize="small")
    fig.tight_layout()
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        plt.close(fig)
        raise StorageError.of(err, f"the figure's directory {output.parent}") from err
    save_figure(fig, output, what, "choose another --output")
    return output


def load_evaluation(run_dir: Path, needs: Iterable[str] = ()) -> dict[str, Any]:
    """A run's ``evaluation.json``, checked for the keys ``needs`` (see
    :func:`~fastadapt.evaluation.evaluation_file.read_evaluation`), with the ``algorithm``
    that older releases did not record (from the run's facts:
    :func:`~fastadapt.run.facts.read_facts`).

    Raises:
        CheckpointError: it is missing, unreadable or not a valid evaluation (one line saying
            to evaluate the run again); or, for an older evaluation, as
            :func:`~fastadapt.run.facts.read_facts`.
        ConfigError, PluginError: as :func:`~fastadapt.run.facts.read_facts`.
    """
    evaluation = read_evaluation(run_dir, needs)
    if "algorithm" not in evaluation:  # written before evaluations recorded it
        evaluation["algorithm"] = read_facts(run_dir).algorithm
    return evaluation
