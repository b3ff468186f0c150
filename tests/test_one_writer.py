"""One writer per run directory, resumes that never start over silently, and byte-identical
policy files (docs/reliability.md, round two: cases 1, 2 and 8).

Each refused command must exit with code 2 and one line, and leave every file of the run as
it was.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from cli_errors import one_line_error
from tiny_runs import CONFIG, TINY, copy_run

from fastadapt.cli import main
from fastadapt.errors import RunLockedError
from fastadapt.run.checkpoint import save_tensors
from fastadapt.run.lock import LOCK_FILE, RunLock
from fastadapt.run.logging import read_metrics
from fastadapt.run.yaml_config import read_mapping


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("base") / "run"
    assert main(["train", CONFIG, "--run-dir", str(run), "--iterations", "2", *TINY]) == 0
    return run


@pytest.fixture()
def run(finished: Path, tmp_path: Path) -> Path:
    return copy_run(finished, tmp_path)


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*"))
            if p.is_file()}


def _refused(argv: list[str], run: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``argv``; it must be refused with one line and leave ``run`` as it was."""
    before = _snapshot(run)
    assert main(argv) == 2
    line = one_line_error(capsys)
    assert _snapshot(run) == before, "the run directory changed"
    return line


# --- 1. one writer ---------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [
    ["train", "--resume", "{run}", "--iterations", "3", "--quiet"],
    ["evaluate", "{run}", "--tasks", "2", "--episodes", "2"],
], ids=["resume", "evaluate"])
def test_a_second_writer_is_refused_naming_the_holder(
    argv: list[str], run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with RunLock(run, "fastadapt train"):
        line = _refused([a.format(run=run) for a in argv], run, capsys)
    assert f"is in use by pid {os.getpid()} (fastadapt train)" in line
    assert "one writer at a time" in line
    assert main(["train", "--resume", str(run), "--iterations", "3", "--quiet"]) == 0


def test_a_new_run_into_a_locked_directory_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "new"
    target.mkdir()
    with RunLock(target, "fastadapt train"):
        assert main(["train", CONFIG, "--run-dir", str(target), "--iterations", "1", *TINY]) == 2
        assert f"is in use by pid {os.getpid()}" in one_line_error(capsys)
    assert not any(target.iterdir())
    assert not (target / "metrics.jsonl").exists() and not (target / "config.yaml").exists()


def _start_resume(run: Path, iterations: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "fastadapt.cli", "train", "--resume", str(run),
               "--iterations", str(iterations), "--quiet"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_for_holder(run: Path, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        lock = run / LOCK_FILE
        if lock.exists() and lock.read_text().startswith(f"{process.pid} "):
            return
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        time.sleep(0.05)
    raise AssertionError("the resume never took the lock")


def test_two_resumes_with_different_settings_do_not_interleave(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = _start_resume(run, 400)
    try:
        _wait_for_holder(run, first)
        assert main(["train", "--resume", str(run), "--iterations", "5", "--quiet",
                     "--set", "maml-trpo.inner_lr=0.05"]) == 2
        assert f"in use by pid {first.pid} (fastadapt train --resume)" in one_line_error(capsys)
        deadline = time.monotonic() + 120  # let the first one train on a little
        while len(read_metrics(run)) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        first.send_signal(signal.SIGKILL)  # kill -9: the kernel releases the lock
        first.wait(30)
    iterations = [r["iteration"] for r in read_metrics(run)]
    assert iterations == list(range(1, len(iterations) + 1)), "iterations logged twice"
    assert read_mapping(run / "config.yaml")["run"]["iterations"] == 400
    assert main(["train", "--resume", str(run), "--iterations", str(len(iterations) + 1),
                 "--quiet"]) == 0


def test_two_new_runs_into_one_directory_do_not_both_train(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "new"
    command = [sys.executable, "-m", "fastadapt.cli", "train", CONFIG, "--run-dir", str(target),
               "--iterations", "400", *TINY, "--seed", "1"]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for_holder(target, first)
        assert main(["train", CONFIG, "--run-dir", str(target), "--iterations", "2", *TINY,
                     "--seed", "2"]) == 2
        line = one_line_error(capsys)
        assert f"in use by pid {first.pid}" in line or "already holds a run" in line
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    assert read_mapping(target / "config.yaml")["run"]["seed"] == 1


def test_the_lock_refuses_in_one_process_and_lets_go_when_released(tmp_path: Path) -> None:
    first = RunLock(tmp_path, "one").acquire()
    with pytest.raises(RunLockedError, match=f"pid {os.getpid()} \\(one\\)"):
        RunLock(tmp_path, "two").acquire()
    first.release()
    with RunLock(tmp_path, "two") as second:
        assert second.held


def test_a_planted_lock_file_that_is_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / LOCK_FILE)
    with pytest.raises(Exception, match="not a regular file"):
        RunLock(tmp_path, "x").acquire()
    (tmp_path / LOCK_FILE).unlink()
    (tmp_path / LOCK_FILE).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(Exception, match="lock file"):
        RunLock(tmp_path, "x").acquire()
    assert not (tmp_path / "elsewhere").exists()


# --- 2. resume never starts over silently ----------------------------------------------------


def test_resume_without_checkpoints_but_with_progress_is_refused(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.rmtree(run / "checkpoints")
    line = _refused(["train", "--resume", str(run), "--iterations", "4", "--quiet"], run, capsys)
    assert "no loadable checkpoint" in line
    assert f"--set run.init_from={run}" in line


def test_resume_with_records_past_the_first_checkpoint_and_no_policy_is_refused(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.rmtree(run / "checkpoints")
    (run / "policy.safetensors").unlink()
    line = _refused(["train", "--resume", str(run), "--iterations", "4", "--quiet"], run, capsys)
    assert "metrics.jsonl records 2 iterations" in line and "start a new run" in line


def test_resume_with_checkpoints_not_a_directory_is_refused(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.rmtree(run / "checkpoints")
    (run / "checkpoints").write_text("not a directory")
    line = _refused(["train", "--resume", str(run), "--iterations", "4", "--quiet"], run, capsys)
    assert "checkpoints is not a directory" in line


def test_a_run_killed_before_its_first_checkpoint_starts_over(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main(["train", CONFIG, "--run-dir", str(run), "--iterations", "2", *TINY,
                 "--set", "run.checkpoint_every=2"]) == 0
    shutil.rmtree(run / "checkpoints")
    (run / "policy.safetensors").unlink()
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text(lines[0] + "\n")  # killed after iteration 1 of 2
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert [r["iteration"] for r in read_metrics(run)] == [1, 2]


@pytest.mark.parametrize("change, key", [
    (["--seed", "7"], "run.seed"),
    (["--set", "env.name=Bandit"], "env.name"),
    (["--set", "env.horizon=9"], "env.horizon"),
    (["--set", "policy.hidden_sizes=[8, 8]"], "policy.hidden_sizes"),
    (["--set", "run.init_from=elsewhere"], "run.init_from"),
])
def test_keys_that_define_the_run_cannot_change_on_resume(
    change: list[str], key: str, run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _refused(["train", "--resume", str(run), "--quiet", *change], run, capsys)
    assert f"{key} defines the run in {run}" in line and "cannot change on --resume" in line


def test_allowed_changes_are_applied_and_recorded(run: Path) -> None:
    assert main(["train", "--resume", str(run), "--iterations", "3", "--quiet",
                 "--set", "maml-trpo.inner_lr=0.05"]) == 0
    assert main(["train", "--resume", str(run), "--iterations", "4", "--quiet"]) == 0
    saved = read_mapping(run / "config.yaml")
    assert saved["maml-trpo"]["inner_lr"] == 0.05 and saved["run"]["iterations"] == 4
    assert saved["changes"] == [
        {"iteration": 2, "key": "maml-trpo.inner_lr", "from": 0.1, "to": 0.05},
        {"iteration": 2, "key": "run.iterations", "from": 2, "to": 3},
        {"iteration": 3, "key": "run.iterations", "from": 3, "to": 4},
    ]
    assert main(["evaluate", str(run), "--tasks", "2", "--episodes", "2"]) == 0


# --- 8. byte-identical policy files ----------------------------------------------------------


def test_resumed_policy_file_equals_the_straight_runs_byte_for_byte(tmp_path: Path) -> None:
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(["train", CONFIG, "--run-dir", str(straight), "--iterations", "3", *TINY]) == 0
    assert main(["train", CONFIG, "--run-dir", str(resumed), "--iterations", "2", *TINY]) == 0
    assert main(["train", "--resume", str(resumed), "--iterations", "3", "--quiet"]) == 0
    digests = [hashlib.sha256((run / "policy.safetensors").read_bytes()).hexdigest()
               for run in (straight, resumed)]
    assert digests[0] == digests[1]


def test_a_tensor_file_is_the_same_bytes_whatever_the_order_of_names_and_metadata(
    tmp_path: Path
) -> None:
    tensors = {"b": torch.ones(2), "a": torch.zeros(3), "w.c": torch.ones(2, 2)}
    meta = {"iteration": "3", "format": "2", "z": "1", "m": "x"}
    files = set()
    for k in range(12):
        order = list(tensors) if k % 2 else list(reversed(tensors))
        keys = list(meta) if k % 3 else list(reversed(meta))
        path = save_tensors(tmp_path / f"{k}.safetensors", {n: tensors[n] for n in order},
                            {key: meta[key] for key in keys})
        files.add(path.read_bytes())
    assert len(files) == 1


def test_resume_says_where_it_continues_and_when_there_is_nothing_to_do(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _snapshot(run)
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert "has run 2 iterations (run.iterations 2): nothing to train (pass --iterations N " \
        "with N > 2" in capsys.readouterr().out
    assert _snapshot(run) == before
    assert main(["train", "--resume", str(run), "--iterations", "3", "--quiet"]) == 0
    assert f"resuming {run} at iteration 2 of 3" in capsys.readouterr().out


def test_a_plugin_added_on_resume_is_a_change_of_the_run(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _refused(["train", "--resume", str(run), "--iterations", "3", "--quiet",
                     "--plugin", "fastadapt_example"], run, capsys)
    assert f"plugins defines the run in {run}" in line


@pytest.mark.parametrize("name", ["iter_000002.json", "iter_000003.json",
                                  "iter_000001.safetensors"])
def test_a_directory_named_like_a_checkpoint_is_refused_before_anything_changes(
    name: str, run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    entry = run / "checkpoints" / name
    if entry.exists():
        entry.unlink()
    entry.mkdir()
    line = _refused(["train", "--resume", str(run), "--iterations", "4", "--quiet"], run, capsys)
    assert f"{entry} is not a regular file" in line and "move it away" in line


def test_changes_that_are_not_records_are_one_line(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = run / "config.yaml"
    config.write_text(config.read_text() + "changes: [1, x, null]\n")
    line = _refused(["train", "--resume", str(run), "--iterations", "3", "--quiet"], run, capsys)
    assert "'changes' must be a list of records (iteration, key, from, to)" in line
