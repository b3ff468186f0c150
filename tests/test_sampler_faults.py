"""Sampler workers that die under a real training (``fastadapt train`` in its own process): a
killed worker process is replaced and the run finishes with the bits of an in-process run; a
dead Ray node ends the run with one line that says how to resume, within a bounded time,
leaving no process and no temporary directory behind; a Ray address where nothing answers is
one line before any file is made."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch

from fastadapt.cli import main
from fastadapt.run.checkpoint import load_tensors

CONFIG = "maml-trpo/2d-navigation"
TINY = ["--quiet", "--set=maml-trpo.tasks_per_iteration=4", "--set=maml-trpo.episodes_per_task=2",
        "--set=env.horizon=50", "--set=policy.hidden_sizes=[8]", "--set=run.tensorboard=false",
        "--set=run.num_threads=1"]
DEADLINE_S = 60.0


def _records(run: Path) -> int:
    path = run / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def _wait_for(condition: object, what: str, timeout: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _train(run: Path, iterations: int, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "fastadapt.cli", "train", CONFIG, "--run-dir",
                             str(run), "--iterations", str(iterations), *TINY, *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_a_killed_worker_process_is_replaced_and_the_run_finishes(tmp_path: Path) -> None:
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert main(["train", CONFIG, "--run-dir", str(straight), "--iterations", "12", *TINY]) == 0
    process = _train(killed, 12, "--sampler", "process", "--workers", "2")
    _wait_for(lambda: _records(killed) >= 3, "three iterations")
    forkserver = [p for p in psutil.Process(process.pid).children() if p.name() != "sh"]
    workers = [w for server in forkserver for w in server.children()]
    assert workers, "no worker process found"
    os.kill(workers[0].pid, signal.SIGKILL)  # between or during sampling calls
    _, stderr = process.communicate(timeout=DEADLINE_S)
    assert process.returncode == 0, stderr
    expected, _ = load_tensors(straight / "policy.safetensors")
    got, _ = load_tensors(killed / "policy.safetensors")
    assert all(torch.equal(expected[name], got[name]) for name in expected)
    assert not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers)


@pytest.mark.slow
def test_a_dead_ray_node_ends_the_run_with_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="Ray is an optional extra")
    run = tmp_path / "run"
    process = _train(run, 1000, "--sampler", "ray", "--workers", "2")
    _wait_for(lambda: _records(run) >= 2, "two iterations", timeout=120)
    ray_processes = psutil.Process(process.pid).children(recursive=True)
    raylet = [p for p in ray_processes if p.name() == "raylet"]
    assert raylet, [p.name() for p in ray_processes]
    killed_at = time.monotonic()
    raylet[0].kill()
    _, stderr = process.communicate(timeout=DEADLINE_S)
    assert time.monotonic() - killed_at < 30
    assert process.returncode == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert "the local Ray instance's raylet" in lines[0] and "--resume" in lines[0]
    time.sleep(1)
    alive = [p for p in ray_processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], [p.name() for p in alive]
    assert not list(Path("/tmp").glob(f"fa-ray-{process.pid}-*"))
    # the run goes on from its last checkpoint with another sampler
    done = _records(run)
    assert main(["train", "--resume", str(run), "--iterations", str(done + 1), "--quiet"]) == 0
    records = [json.loads(line)["iteration"] for line in
               (run / "metrics.jsonl").read_text().splitlines()]
    assert records == list(range(1, done + 2))


def test_a_ray_address_where_nothing_answers_is_one_line_and_makes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("ray", reason="Ray is an optional extra")
    run = tmp_path / "run"
    started = time.monotonic()
    code = main(["train", CONFIG, "--run-dir", str(run), "--sampler", "ray",
                 "--set=run.ray_address=127.0.0.1:9", *TINY])
    assert code == 2 and time.monotonic() - started < 30
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [
        "fastadapt: error: cannot connect to Ray at '127.0.0.1:9': nothing answers at "
        "127.0.0.1:9 within 10 s (Connection refused)"]
    assert not run.exists()
