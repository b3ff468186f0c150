"""The tiny runs the fault tests spoil: a packaged config at toy sizes (a training iteration
takes a fraction of a second), and a fresh copy of a finished run for each test."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

CONFIG = "maml-trpo/2d-navigation"
TINY = [
    "--quiet", "--set", "maml-trpo.tasks_per_iteration=3",
    "--set", "maml-trpo.episodes_per_task=2",
    "--set", "env.horizon=8", "--set", "policy.hidden_sizes=[8]",
    "--set", "run.tensorboard=false", "--set", "run.checkpoint_every=1",
    "--set", "run.num_threads=1",
]
"""``fastadapt train CONFIG ... *TINY``: 3 tasks, 2 episodes of 8 steps, an [8] policy, a
checkpoint every iteration, no TensorBoard."""


def copy_run(source: Path, tmp_path: Path) -> Path:
    """A copy of the run ``source`` as ``tmp_path/run``, to spoil."""
    copy = tmp_path / "run"
    shutil.copytree(source, copy)
    return copy


def assert_group_gone(pgid: int, seconds: float, what: str) -> None:
    """Wait until no process of the process group ``pgid`` is left; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)  # any process of the group still there?
        except ProcessLookupError:
            return
        time.sleep(0.1)
    pytest.fail(f"a process of {what} is still alive")
