"""Signals, sweeps and the machine's limits (docs/reliability.md, round two): SIGTERM ends a
training like Ctrl-C with every sampler (one line, exit code 143, no process left, ``--resume``
goes on); Ctrl-C ends a sweep with one line and exit code 130; a sweep's failed run is its own
error's one line; a sweep of a config given by a relative path works; one sweep per root; a
full or closed standard output is one line; a worker process that cannot be made is one line
and leaves no worker behind."""

from __future__ import annotations

import errno
import json
import multiprocessing.context
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from cli_errors import one_line_error
from tiny_runs import assert_group_gone

from fastadapt.cli import main
from fastadapt.run.checkpoint import latest_checkpoint
from fastadapt.run.config_loading import packaged_config_path
from fastadapt.run.lock import RunLock
from fastadapt.sampling.process_tree import alive
from fastadapt.sweeps import run_status

CONFIG = "maml-trpo/2d-navigation"
TRAIN_TINY = ["--quiet", "--set=maml-trpo.tasks_per_iteration=4",
              "--set=maml-trpo.episodes_per_task=2", "--set=env.horizon=20",
              "--set=policy.hidden_sizes=[8]", "--set=run.tensorboard=false",
              "--set=run.checkpoint_every=1", "--set=run.num_threads=1"]
SWEEP_TINY = [arg for setting in (
    "maml-trpo.tasks_per_iteration=2", "maml-trpo.episodes_per_task=2", "env.horizon=5",
    "policy.hidden_sizes=[8]", "run.tensorboard=false", "run.checkpoint_every=1",
    "evaluate.num_tasks=2", "evaluate.adaptation_steps=1", "evaluate.episodes_per_task=2",
) for arg in ("--set", setting)]
DEADLINE_S = 120.0
INTERACTIVE = ("import runpy, signal, sys; signal.signal(signal.SIGINT, "
               "signal.default_int_handler); sys.argv[0] = 'fastadapt'; "
               "runpy.run_module('fastadapt.cli', run_name='__main__')")
"""``python -c INTERACTIVE ARGS`` is ``fastadapt ARGS`` taking Ctrl-C as an interactive shell's
command does, even when the tests run in a background job (SIGINT ignored, inherited)."""


def _fastadapt(*args: str) -> list[str]:
    return [sys.executable, "-c", INTERACTIVE, *args]


def _wait_for(condition: Any, what: str, process: subprocess.Popen[Any], log: Path) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert process.poll() is None, f"ended before {what}: {log.read_text()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _gone(processes: list[psutil.Process]) -> bool:
    return not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in processes)


# --- SIGTERM, as Ctrl-C, for every sampler ------------------------------------------------------


@pytest.mark.parametrize("sampler", ["vector", "process", "ray"])
def test_sigterm_ends_a_training_like_ctrl_c_and_resume_goes_on(
        sampler: str, tmp_path: Path) -> None:
    if sampler == "ray":
        pytest.importorskip("ray", reason="Ray is an optional extra")
    run, log = tmp_path / "run", tmp_path / "stderr.txt"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            _fastadapt("train", CONFIG, "--run-dir", str(run), "--iterations", "1000",
                       "--sampler", sampler, "--workers", "2", *TRAIN_TINY),
            stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        _wait_for(lambda: latest_checkpoint(run / "checkpoints") is not None,
                  "the first checkpoint", process, log)  # its record comes just before it
        started = psutil.Process(process.pid).children(recursive=True)
        process.send_signal(signal.SIGTERM)  # as `kill PID`, systemd or a batch scheduler do
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    err = log.read_text()
    assert process.returncode == 143, err
    assert err.strip().splitlines() == [
        f"fastadapt: terminated; checkpoints written so far are kept: continue with "
        f"fastadapt train --resume {run}"], err
    deadline = time.monotonic() + 10
    while not _gone(started) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _gone(started), [p.name() for p in started if p.is_running()]
    assert not list(Path("/tmp").glob(f"fa-ray-{process.pid}-*"))
    marker = latest_checkpoint(run / "checkpoints")
    assert marker is not None
    done = json.loads(marker.read_text())["iteration"]
    assert main(["train", "--resume", str(run), "--iterations", str(done + 1), "--quiet",
                 "--sampler", "vector"]) == 0
    records = [json.loads(line)["iteration"]
               for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert records == list(range(1, done + 2))


# --- sweeps -------------------------------------------------------------------------------------


def test_ctrl_c_during_a_sweep_exits_130_with_one_line_and_leaves_no_process(
        tmp_path: Path) -> None:
    pytest.importorskip("ray.tune", reason="Ray Tune is an optional extra")
    root, log = tmp_path / "sweep", tmp_path / "stderr.txt"
    with log.open("w") as stderr:  # its own session: Ctrl-C reaches the whole group
        process = subprocess.Popen(
            _fastadapt("sweep", CONFIG, "--seeds", "2", "--root", str(root), "--workers", "1",
                       "--set", "run.iterations=1000", *SWEEP_TINY),
            start_new_session=True, stdout=subprocess.PIPE, stderr=stderr, text=True)
    try:
        _wait_for(lambda: any(root.glob("*-seed*/metrics.jsonl")), "a run's first record",
                  process, log)
        os.killpg(process.pid, signal.SIGINT)
        out, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    err = log.read_text()
    assert process.returncode == 130, err
    assert err.strip().splitlines() == [
        "fastadapt: interrupted; finished runs and checkpoints are kept: run the same sweep "
        "again to continue"], err
    assert "runs evaluated" not in out
    assert not list(Path("/tmp").glob(f"fa-ray-{process.pid}-*"))
    assert_group_gone(process.pid, 10, "the interrupted sweep")


def test_a_sweep_of_a_relative_config_runs_and_a_failed_run_is_its_own_one_line(
        tmp_path: Path) -> None:
    """One Ray Tune sweep, two cases: ``nav.yaml`` given relative to the working directory
    (trials run in another one), and a run whose directory is taken by a file (it fails in
    its trial, after every check of the plan passed)."""
    pytest.importorskip("ray.tune", reason="Ray Tune is an optional extra")
    packaged = packaged_config_path(CONFIG)
    assert packaged is not None
    shutil.copy(packaged, tmp_path / "nav.yaml")
    root = tmp_path / "sweep"
    root.mkdir()
    (root / "nav-seed2").write_text("a file where the run's directory goes")
    done = subprocess.run(
        [sys.executable, "-m", "fastadapt.cli", "sweep", "nav.yaml", "--seeds", "2",
         "--root", "sweep", "--workers", "2", "--set", "run.iterations=1", *SWEEP_TINY],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        f"fastadapt: error: 1 of 2 runs failed (nav-seed2); nav-seed2: cannot create run "
        f"directory {root / 'nav-seed2'}: File exists; rerun the sweep to continue them"
    ], done.stderr
    assert run_status(root / "nav-seed1") == "done"
    assert done.stdout == ""  # no tables of Tune's


def test_a_second_sweep_into_one_root_is_refused_with_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "sweep"
    root.mkdir()
    with RunLock(root, "fastadapt sweep"):  # the first sweep
        assert main(["sweep", CONFIG, "--seeds", "1", "--root", str(root), *SWEEP_TINY]) == 2
        line = one_line_error(capsys)
    assert f"{root} is in use by pid {os.getpid()} (fastadapt sweep)" in line
    assert not any(root.glob("*-seed*"))


# --- the standard output, worker processes ------------------------------------------------------


@pytest.mark.parametrize("buffered", [True, False], ids=["buffered", "unbuffered"])
def test_a_full_standard_output_is_one_line(buffered: bool) -> None:
    """Buffered (Python's default), the write fails in the final flush, where Python would
    print ``Exception ignored ...`` at exit; unbuffered, as the command prints."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}
    if not buffered:
        env["PYTHONUNBUFFERED"] = "1"
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "fastadapt.cli", "configs"], stdout=full,
                              stderr=subprocess.PIPE, text=True, env=env, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "fastadapt: error: cannot write to standard output: No space left on device"]


def test_a_closed_standard_output_is_one_line() -> None:
    done = subprocess.run(["bash", "-c", 'exec "$@" >&-', "bash", sys.executable, "-m",
                           "fastadapt.cli", "configs"], stderr=subprocess.PIPE, text=True,
                          timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "fastadapt: error: standard output is closed; redirect it instead (> FILE, or "
        "> /dev/null to discard it)"]


def test_a_worker_process_that_cannot_be_made_is_one_line_and_leaves_no_worker(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The third of four fork-server starts fails as ``fork`` does under a process limit
    (root ignores RLIMIT_NPROC, so the failure is simulated)."""
    start = multiprocessing.context.ForkServerProcess.start
    started: list[int] = []

    def limited(process: multiprocessing.context.ForkServerProcess) -> None:
        if len(started) == 2:
            raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))
        start(process)
        started.append(int(process.pid or 0))

    monkeypatch.setattr(multiprocessing.context.ForkServerProcess, "start", limited)
    run = tmp_path / "run"
    assert main(["train", CONFIG, "--run-dir", str(run), "--iterations", "1", "--sampler",
                 "process", "--workers", "4", *TRAIN_TINY]) == 2
    assert one_line_error(capsys).endswith(
        "cannot start sampler worker 2 of 4: Resource temporarily unavailable (a process "
        "limit? lower run.workers)")
    assert len(started) == 2 and not any(alive(pid) for pid in started)
