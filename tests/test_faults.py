"""Faults never lose a run's data: a training killed (SIGKILL) at random moments, writes
included, resumes to the bits of an uninterrupted run; unreadable metrics lines are skipped and
kept; a killed write's temporary files are cleaned up; a file that cannot be written is one line
and the files written before are kept; files get the user's umask."""

from __future__ import annotations

import json
import os
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fastadapt.cli import main
from fastadapt.run.checkpoint import latest_checkpoint, load_checkpoint, load_tensors
from fastadapt.run.logging import read_metrics_file

CONFIG = "maml-trpo/2d-navigation"
TINY = ["--quiet", "--set=maml-trpo.tasks_per_iteration=2", "--set=maml-trpo.episodes_per_task=2",
        "--set=env.horizon=5", "--set=policy.hidden_sizes=[8]", "--set=run.tensorboard=false",
        "--set=run.checkpoint_every=1", "--set=run.num_threads=1"]
ENDLESS = 100_000  # the killed runs never finish by themselves (MAML-TRPO has no schedule
KILLS = 20  # that depends on run.iterations, so any length gives the same first iterations)


def _command(run: Path, resume: bool) -> list[str]:
    start = ["--resume", str(run)] if resume else [CONFIG, "--run-dir", str(run)]
    return [sys.executable, "-m", "fastadapt.cli", "train", *start, "--iterations",
            str(ENDLESS), *TINY]


def _lines(path: Path) -> int:
    return len(path.read_bytes().splitlines()) if path.exists() else 0


def _wait_for_a_new_record(run: Path, process: subprocess.Popen[bytes]) -> None:
    """Until ``metrics.jsonl`` gains a line (or the process ends, or 120 s pass)."""
    before, deadline = _lines(run / "metrics.jsonl"), time.monotonic() + 120
    while (_lines(run / "metrics.jsonl") <= before and process.poll() is None
           and time.monotonic() < deadline):
        time.sleep(0.02)


def _leftovers(run: Path) -> list[str]:
    return [p.name for p in run.rglob("*") if p.name.endswith(".tmp")]


@pytest.mark.slow
def test_many_random_kills_resume_to_the_uninterrupted_run(tmp_path: Path) -> None:
    """20 SIGKILLs at random moments (a quarter in start-up, the others once training runs:
    in an iteration, a checkpoint or a metrics write), each followed by a resume: the final
    parameters equal a straight run's, every iteration is in metrics.jsonl exactly once, and
    no temporary file remains."""
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    rng = random.Random(0)
    progress = []
    for kill in range(KILLS):
        started = (killed / "config.yaml").exists()
        log = tmp_path / f"kill{kill}.log"
        with log.open("w") as errors:
            process = subprocess.Popen(_command(killed, started), stdout=subprocess.DEVNULL,
                                       stderr=errors)
            if rng.random() < 0.25:  # in start-up (imports, building the run: ~3 s)
                time.sleep(rng.uniform(0.5, 3.0))
            else:  # once it trains (however loaded the machine), in an iteration or a write
                _wait_for_a_new_record(killed, process)
                time.sleep(rng.uniform(0.0, 0.3))
            ended = process.poll()
            if ended is None:
                os.kill(process.pid, signal.SIGKILL)
            process.wait()
        assert ended is None, f"run {kill} ended by itself ({ended}): {log.read_text()}"
        marker = latest_checkpoint(killed / "checkpoints")
        if marker is not None:
            load_checkpoint(marker)  # the newest complete checkpoint is intact
        progress.append(len(read_metrics_file(killed).records))
    assert progress[-1] > 0, f"no kill landed after training started: {progress}"
    iterations = progress[-1] + 5  # finish a few past the last kill's progress
    assert main(["train", "--resume", str(killed), "--iterations", str(iterations),
                 "--quiet"]) == 0
    assert main(["train", CONFIG, "--run-dir", str(straight), "--iterations", str(iterations),
                 *TINY]) == 0
    expected, _ = load_tensors(straight / "policy.safetensors")
    resumed, _ = load_tensors(killed / "policy.safetensors")
    assert all(torch.equal(expected[name], resumed[name]) for name in expected)
    metrics = read_metrics_file(killed)
    assert [r["iteration"] for r in metrics.records] == list(range(1, iterations + 1))
    assert metrics.skipped == []
    assert _leftovers(killed) == []


def _run(tmp_path: Path, name: str = "run", iterations: int = 4) -> Path:
    run = tmp_path / name
    assert main(["train", CONFIG, "--run-dir", str(run), "--iterations", str(iterations),
                 *TINY]) == 0
    return run


def test_an_unreadable_metrics_line_is_skipped_reported_and_kept(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _run(tmp_path)
    path = run / "metrics.jsonl"
    lines = path.read_text().splitlines()
    lines.insert(2, "{this is not json")  # a user's edit, a disk hiccup
    path.write_text("\n".join(lines) + "\n")
    metrics = read_metrics_file(run)
    assert [r["iteration"] for r in metrics.records] == [1, 2, 3, 4]  # none after it dropped
    assert metrics.skipped == [3]
    capsys.readouterr()
    assert main(["plot", str(run)]) == 0
    assert "metrics.jsonl line 3 is not a record (skipped)" in capsys.readouterr().err
    # resume from iteration 4's checkpoint: the bad line and every record stay
    assert main(["train", "--resume", str(run), "--iterations", "6", "--quiet"]) == 0
    text = path.read_text().splitlines()
    assert "{this is not json" in text
    assert [r["iteration"] for r in read_metrics_file(run).records] == [1, 2, 3, 4, 5, 6]


def test_resume_removes_only_records_past_its_checkpoint_and_a_torn_line(tmp_path: Path) -> None:
    run = _run(tmp_path)
    path = run / "metrics.jsonl"
    records = path.read_text().splitlines()
    extra = json.loads(records[-1]) | {"iteration": 5}
    path.write_text("\n".join([*records, "not a record, a user's note", json.dumps(extra)])
                    + "\n" + '{"iteration": 6, "retu')  # killed while writing iteration 6
    assert main(["train", "--resume", str(run), "--iterations", "5", "--quiet"]) == 0
    lines = path.read_text().splitlines()
    assert "not a record, a user's note" in lines
    assert [r["iteration"] for r in read_metrics_file(run).records] == [1, 2, 3, 4, 5]
    assert not any(line.startswith('{"iteration": 6') for line in lines)


def test_resume_cleans_up_its_own_temporary_files_only(tmp_path: Path) -> None:
    run = _run(tmp_path)
    checkpoints = run / "checkpoints"
    ours = [run / ".config.yaml.ab12cd_9.tmp", checkpoints / ".iter_000005.json.k3j4h5g6.tmp",
            checkpoints / ".iter_000005.safetensors.zzzzzzzz.tmp"]
    theirs = [run / "notes.tmp", run / ".my-own.tmp", run / "checkpoints" / "backup.tmp"]
    for path in (*ours, *theirs):
        path.write_text("left over")
    assert main(["train", "--resume", str(run), "--iterations", "5", "--quiet"]) == 0
    assert not any(path.exists() for path in ours)
    assert all(path.exists() for path in theirs)


def _limited_train(run: Path, limit_bytes: int, iterations: int
                   ) -> subprocess.CompletedProcess[str]:
    """A training whose files may not grow past ``limit_bytes`` (RLIMIT_FSIZE: a write
    beyond it fails with EFBIG, as a full disk fails with ENOSPC)."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run([sys.executable, "-m", "fastadapt.cli", "train", CONFIG, "--run-dir",
                           str(run), "--iterations", str(iterations), *TINY],
                          preexec_fn=limit, capture_output=True, text=True, timeout=300)


def test_a_file_that_cannot_be_written_is_one_line_and_keeps_what_was_written(
        tmp_path: Path) -> None:
    run = tmp_path / "run"
    done = _limited_train(run, 8_000, 200)  # metrics.jsonl passes 8 KB within ~15 iterations
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith("fastadapt: error: cannot write the metrics file ")
    assert "File too large" in lines[0] and "--resume" in lines[0]
    marker = latest_checkpoint(run / "checkpoints")
    assert marker is not None
    load_checkpoint(marker)  # the last checkpoint before the failure is intact
    assert main(["train", "--resume", str(run), "--iterations", "20", "--quiet"]) == 0


def test_files_take_the_users_umask(tmp_path: Path) -> None:
    run = tmp_path / "run"
    argv = ["train", CONFIG, "--run-dir", str(run), "--iterations", "2", *TINY]
    done = subprocess.run(
        [sys.executable, "-c", "import os, sys; os.umask(0o077); from fastadapt.cli import main;"
         f" sys.exit(main({argv!r}))"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for path in [run / "config.yaml", run / "policy.safetensors", run / "metrics.jsonl",
                 *(run / "checkpoints").iterdir()]:
        assert path.stat().st_mode & 0o777 == 0o600, path
