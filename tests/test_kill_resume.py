"""``kill -9`` a real training process, then resume: same final parameters as a straight run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fastadapt.cli import main
from fastadapt.run.checkpoint import latest_checkpoint, load_checkpoint, load_tensors

COMMON = ["--set", "env.horizon=10", "--set", "run.tensorboard=false",
          "--set", "run.checkpoint_every=1", "--set", "run.num_threads=1", "--quiet"]
RUNS = {  # a config and the overrides that make it tiny
    "maml-trpo/2d-navigation": [
        "--set", "maml-trpo.tasks_per_iteration=3", "--set", "maml-trpo.episodes_per_task=3",
        "--set", "policy.hidden_sizes=[8, 8]", *COMMON],
    "pearl/2d-navigation": [  # its replay buffers and generators are in the checkpoints
        "--set", "pearl.train_tasks=4", "--set", "pearl.tasks_per_iteration=2",
        "--set", "pearl.initial_episodes=2", "--set", "pearl.gradient_steps=5",
        "--set", "pearl.tasks_per_step=3", "--set", "pearl.batch_transitions=8",
        "--set", "pearl.context_transitions=6", "--set", "pearl.hidden_sizes=[8]",
        "--set", "pearl.encoder_hidden_sizes=[8]", *COMMON],
}
ITERATIONS = 6


def _iterations_logged(run: Path) -> int:
    path = run / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.mark.parametrize("config", list(RUNS))
def test_kill_9_then_resume_gives_the_straight_run(tmp_path: Path, config: str) -> None:
    tiny = RUNS[config]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert main(["train", config, "--run-dir", str(straight), "--iterations", str(ITERATIONS),
                 *tiny]) == 0
    command = [sys.executable, "-m", "fastadapt.cli", "train", config, "--run-dir", str(killed),
               "--iterations", "1000", *tiny]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while _iterations_logged(killed) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)  # at an arbitrary point, possibly mid-checkpoint
    process.wait()
    assert _iterations_logged(killed) >= 3, "the training process did not get going"

    marker = latest_checkpoint(killed / "checkpoints")
    assert marker is not None
    load_checkpoint(marker)  # the newest complete checkpoint is intact
    done = json.loads(marker.read_text())["iteration"]
    assert done >= 2
    # continue to the straight run's length (resume truncates metrics past the checkpoint)
    assert main(["train", "--resume", str(killed), "--iterations", str(ITERATIONS),
                 "--quiet"]) == 0
    expected, _ = load_tensors(straight / "policy.safetensors")
    resumed, _ = load_tensors(killed / "policy.safetensors")
    for name, value in expected.items():
        assert np.array_equal(value.numpy(), resumed[name].numpy()), name
    iterations = [json.loads(line)["iteration"]
                  for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert iterations == list(range(1, ITERATIONS + 1))
