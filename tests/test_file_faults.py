"""Files a command reads or writes that are not what they should be.

Readers: a corrupt, truncated, empty, wrongly shaped ``evaluation.json`` (or a directory or a
FIFO in its place) is one line naming it for ``plot``, ``compare`` and ``report``; a FIFO, a
device or a directory as a config, a policy, a checkpoint or ``metrics.jsonl`` is one line,
never a hang or a read without end. Writers: ``--output`` (and a run's ``report.png``) that is a
FIFO, a device or a directory is refused and left as it is; a symlink is written through.

A FIFO could block a test forever on the old code: every test runs under a 60 s alarm. Device
nodes are made in ``tmp_path`` only (``mknod``, as root), never taken from ``/dev``.
"""

from __future__ import annotations

import json
import os
import signal
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

import numpy as np
import pytest
from cli_errors import one_line_error
from tiny_runs import CONFIG, TINY, copy_run

from fastadapt.cli import main
from fastadapt.errors import CheckpointError, ConfigError, StorageError
from fastadapt.files import atomic_write, read_file, read_json
from fastadapt.run.checkpoint import latest_checkpoint, load_checkpoint, load_tensors
from fastadapt.run.logging import MetricsLogger
from fastadapt.run.yaml_config import read_mapping

ALARM_SECONDS = 60


class Hung(Exception):
    """A test blocked (on a FIFO); not an OSError, which readers turn into their errors."""


@pytest.fixture(autouse=True)
def _no_hang() -> Iterator[None]:
    """Fail a test that blocks (on a FIFO) instead of hanging the suite."""
    def hung(signum: int, frame: FrameType | None) -> None:
        raise Hung(f"blocked for {ALARM_SECONDS} s (on a FIFO?)")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(ALARM_SECONDS)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def evaluated_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("base") / "run"
    assert main(["train", CONFIG, "--run-dir", str(run), "--iterations", "2", *TINY]) == 0
    assert main(["evaluate", str(run), "--tasks", "2", "--episodes", "2"]) == 0
    return run


@pytest.fixture()
def run(evaluated_run: Path, tmp_path: Path) -> Path:
    """A copy of the evaluated run, to spoil."""
    return copy_run(evaluated_run, tmp_path)


def _null_device(path: Path) -> Path:
    """A character device like ``/dev/null`` at ``path`` (made here, never ``/dev``'s)."""
    os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    return path


def _replace(path: Path, content: bytes | str) -> None:
    """``path`` removed and made again: bytes (a file), ``"dir"`` or ``"fifo"``."""
    path.unlink()
    if content == "dir":
        path.mkdir()
    elif content == "fifo":
        os.mkfifo(path)
    else:
        assert isinstance(content, bytes)
        path.write_bytes(content)


# --------------------------------------------------------------------------- evaluation.json


def _edit(change: Callable[[dict[str, object]], None]) -> Callable[[bytes], bytes]:
    def edit(original: bytes) -> bytes:
        data = json.loads(original)
        change(data)
        return json.dumps(data).encode()
    return edit


CORRUPTIONS: dict[str, Callable[[bytes], bytes | str]] = {
    "truncated": lambda original: original[: len(original) // 2],
    "random bytes": lambda original: np.random.default_rng(0).bytes(len(original)),
    "empty": lambda original: b"",
    "a list": lambda original: b"[]",
    "an empty object": lambda original: b"{}",
    "null": lambda original: b"null",
    "nested too deeply": lambda original: b"[" * 100_000,
    "returns not a list": _edit(lambda d: d.update(per_task_returns="many")),
    "returns empty": _edit(lambda d: d.update(per_task_returns=[])),
    "returns ragged": _edit(lambda d: d.update(per_task_returns=[[1.0, 2.0], [3.0]])),
    "returns of strings": _edit(lambda d: d.update(per_task_returns=[["1", "2"], ["3", "4"]])),
    "env a number": _edit(lambda d: d.update(env=5)),
    "no env": _edit(lambda d: d.pop("env")),
    "curve too short": _edit(lambda d: d.update(returns_mean=[0.0])),
    "ci of nulls": _edit(lambda d: d.update(returns_ci95=[None] * len(d["returns_ci95"]))),
    "algorithm a list": _edit(lambda d: d.update(algorithm=["maml-trpo"])),
    "episodes a string": _edit(lambda d: d.update(episodes_per_step="2")),
    "tasks zero": _edit(lambda d: d.update(num_tasks=0)),
    "trajectories broken": _edit(lambda d: d.update(trajectories=[{"task": {}}])),
    "a directory": lambda original: "dir",
    "a FIFO": lambda original: "fifo",
}
COMMANDS: dict[str, Callable[[Path, Path], list[str]]] = {
    "plot": lambda run, out: ["plot", str(run)],
    "compare": lambda run, out: ["compare", str(run), "--output", str(out)],
    "compare env-steps": lambda run, out: ["compare", str(run), "--x", "env-steps", "--output",
                                           str(out)],
    "report": lambda run, out: ["report", str(run), "--output", str(out)],
}


@pytest.mark.parametrize("command", COMMANDS, ids=list(COMMANDS))
@pytest.mark.parametrize("corruption", CORRUPTIONS, ids=list(CORRUPTIONS))
def test_a_spoilt_evaluation_is_one_line_for_every_reader(
        command: str, corruption: str, run: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = run / "evaluation.json"
    _replace(path, CORRUPTIONS[corruption](path.read_bytes()))
    output = tmp_path / "out.png"
    (run / "report.png").unlink()
    capsys.readouterr()
    assert main(COMMANDS[command](run, output)) == 2
    line = one_line_error(capsys)
    assert str(path) in line and f"run fastadapt evaluate {run} again" in line, line
    assert not output.exists() and not (run / "report.png").exists()


def test_the_checks_keep_what_a_sound_evaluation_holds(run: Path, tmp_path: Path) -> None:
    for argv in COMMANDS.values():
        assert main(argv(run, tmp_path / "out.png")) == 0


# --------------------------------------------------------------------------- other readers


def test_a_fifo_config_is_one_line_not_a_hang(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fifo = tmp_path / "config.yaml"
    os.mkfifo(fifo)
    assert main(["train", str(fifo), "--run-dir", str(tmp_path / "new")]) == 2
    assert f"cannot read config file {fifo}: it is a FIFO, not a regular file" in \
        one_line_error(capsys)
    assert not (tmp_path / "new").exists()


def test_a_device_or_a_directory_is_never_read_as_a_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="it is a character device, not a regular file"):
        read_mapping(_null_device(tmp_path / "null.yaml"))
    (tmp_path / "dir.yaml").mkdir()
    with pytest.raises(ConfigError, match=r"dir\.yaml: it is a directory, not a regular file$"):
        read_mapping(tmp_path / "dir.yaml")
    with pytest.raises(ConfigError, match=r"config file not found: "):
        read_mapping(tmp_path / "absent.yaml")


def test_a_config_larger_than_any_config_is_refused_unread(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_bytes(b"# padding\n" * 1_000_000)  # 10 MB of comments: an empty mapping
    with pytest.raises(ConfigError, match=r"big\.yaml: too large \(9\.5 MB; the limit is 8"):
        read_mapping(big)


def test_a_fifo_run_config_is_one_line(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _replace(run / "config.yaml", "fifo")
    assert main(["evaluate", str(run)]) == 2
    assert "config.yaml: it is a FIFO, not a regular file" in one_line_error(capsys)
    (run / "facts.json").unlink()  # a run written before facts.json: plot reads its config
    assert main(["plot", str(run)]) == 2
    assert "config.yaml: it is a FIFO, not a regular file" in one_line_error(capsys)


@pytest.mark.parametrize("kind", ["fifo", "dir", "garbage"])
def test_run_facts_that_are_not_facts_are_one_line(
        kind: str, run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if kind == "garbage":
        (run / "facts.json").write_text('{"algorithm": "", "horizon": -1}')
    else:
        _replace(run / "facts.json", kind)
    assert main(["plot", str(run)]) == 2
    assert "facts.json" in one_line_error(capsys)


@pytest.mark.parametrize("kind", ["fifo", "dir"])
def test_metrics_that_are_not_a_file_are_one_line(
        kind: str, run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _replace(run / "metrics.jsonl", kind)
    assert main(["plot", str(run)]) == 2
    assert f"cannot read the metrics file {run / 'metrics.jsonl'}: it is a" in \
        one_line_error(capsys)


def test_resuming_with_metrics_that_are_not_a_file_is_one_line(
        run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _replace(run / "metrics.jsonl", "fifo")
    assert main(["train", "--resume", str(run), "--iterations", "3", "--quiet"]) == 2
    assert "metrics.jsonl: it is a FIFO, not a regular file" in one_line_error(capsys)
    with pytest.raises(StorageError, match=r"metrics\.jsonl: it is not a regular file"):
        MetricsLogger(run, tensorboard=False)  # appending would block on the FIFO


def test_metrics_records_of_the_wrong_types_are_skipped_and_reported(
        run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = run / "metrics.jsonl"
    bad = [{"iteration": 3, "return_before": "high", "return_after": 1.0},
           {"iteration": True, "return_before": 1.0, "return_after": 1.0},
           {"iteration": 4, "seconds": None, "env_steps": 10}]
    path.write_text(path.read_text() + "".join(json.dumps(r) + "\n" for r in bad))
    assert main(["plot", str(run)]) == 0
    assert main(["compare", str(run), "--x", "env-steps", "--output",
                 str(run / "c.png")]) == 0
    assert "metrics.jsonl lines 3, 4, 5 are not a record (skipped)" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_policy_that_is_not_a_file_is_one_line(
        kind: str, run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = run / "policy.safetensors"
    policy.unlink()
    if kind == "fifo":
        os.mkfifo(policy)
    else:
        policy.symlink_to(_null_device(tmp_path / "null"))
    assert main(["evaluate", str(run)]) == 2
    line = one_line_error(capsys)
    assert f"cannot load tensors {policy}: it is a " in line, line
    assert ", not a regular file" in line


def test_checkpoint_files_that_are_not_files(run: Path) -> None:
    checkpoints = run / "checkpoints"
    newest, older = checkpoints / "iter_000002.json", checkpoints / "iter_000001.json"
    _replace(newest, "fifo")
    assert latest_checkpoint(checkpoints) == older  # the FIFO marker is skipped, not read
    with pytest.raises(CheckpointError, match=r"iter_000002\.json: it is a FIFO, not a"):
        load_checkpoint(newest)
    _replace(older.with_suffix(".safetensors"), "dir")
    with pytest.raises(CheckpointError, match=r"iter_000001\.safetensors: it is a directory"):
        load_checkpoint(older)
    with pytest.raises(CheckpointError, match=r"^cannot load tensors .*: it is a directory"):
        load_tensors(checkpoints)


def test_the_bounded_reader(tmp_path: Path) -> None:
    path = tmp_path / "data.json"
    path.write_bytes(b'{"a": 1}')
    assert read_file(path, "cannot read", 8) == b'{"a": 1}'
    with pytest.raises(CheckpointError, match=r"^cannot read .*data\.json: too large \(8 bytes; "
                                              r"the limit is 7 bytes\); do this$"):
        read_file(path, "cannot read", 7, hint="do this")
    assert read_json(path, "cannot read") == {"a": 1}
    with pytest.raises(CheckpointError, match=r"^cannot read .*absent: file not found$"):
        read_file(tmp_path / "absent", "cannot read", None)
    with pytest.raises(ConfigError, match=r"^gone$"):
        read_file(tmp_path / "absent", "cannot read", None, error=ConfigError, missing="gone")
    path.chmod(0o000)
    if os.access(path, os.R_OK):  # root reads it anyway
        return
    with pytest.raises(CheckpointError, match="Permission denied"):
        read_file(path, "cannot read", None)


# --------------------------------------------------------------------------- writers


def _make_node(path: Path, kind: str, tmp_path: Path) -> None:
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dir":
        path.mkdir()
    elif kind == "device":
        _null_device(path)
    else:  # a symlink to a device
        path.symlink_to(_null_device(tmp_path / "null"))


def _mode(path: Path) -> int:
    return stat.S_IFMT(path.lstat().st_mode)


WRITERS = {
    "compare": lambda run, out: ["compare", str(run), "--output", str(out)],
    "report": lambda run, out: ["report", str(run), "--output", str(out)],
}


@pytest.mark.parametrize("writer", WRITERS, ids=list(WRITERS))
@pytest.mark.parametrize("kind", ["fifo", "dir", "device", "symlink to a device"])
def test_an_output_that_is_not_a_file_is_refused_and_left_alone(
        writer: str, kind: str, evaluated_run: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "out.png"
    _make_node(output, kind, tmp_path)
    before = {p.name: _mode(p) for p in tmp_path.iterdir()}
    assert main(WRITERS[writer](evaluated_run, output)) == 2
    line = one_line_error(capsys)
    assert f"file {output}: it is a " in line and "not a regular file; choose another --output" \
        in line, line
    assert {p.name: _mode(p) for p in tmp_path.iterdir()} == before  # nothing made, nothing lost


@pytest.mark.parametrize("writer", WRITERS, ids=list(WRITERS))
def test_an_output_symlink_is_written_through(
        writer: str, evaluated_run: Path, tmp_path: Path) -> None:
    target, link = tmp_path / "figures" / "real.png", tmp_path / "link.png"
    target.parent.mkdir()
    target.write_bytes(b"old")
    link.symlink_to(target)
    assert main(WRITERS[writer](evaluated_run, link)) == 0
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_bytes().startswith(b"\x89PNG")
    assert sorted(p.name for p in target.parent.iterdir()) == ["real.png"]  # no temporary left


def test_a_run_report_that_is_a_fifo_is_refused(
        run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _replace(run / "report.png", "fifo")
    assert main(["plot", str(run)]) == 2
    assert "report.png: it is a FIFO, not a regular file; remove it" in one_line_error(capsys)
    assert stat.S_ISFIFO((run / "report.png").lstat().st_mode)


def test_atomic_write_refuses_what_is_not_a_file_and_follows_links(tmp_path: Path) -> None:
    for kind in ("fifo", "dir", "device"):
        path = tmp_path / kind
        _make_node(path, kind, tmp_path)
        with pytest.raises(StorageError, match=f"cannot write the data file {path}: it is a"):
            atomic_write(path, b"new", "data")
        assert _mode(path) in (stat.S_IFIFO, stat.S_IFDIR, stat.S_IFCHR)
    new = tmp_path / "sub" / "new.txt"
    new.parent.mkdir()
    dangling = tmp_path / "dangling"
    dangling.symlink_to(new)
    atomic_write(dangling, b"made")  # a symlink to a file not made yet: made there
    assert dangling.is_symlink() and new.read_bytes() == b"made"
    atomic_write(dangling, b"again")
    assert dangling.is_symlink() and new.read_bytes() == b"again"
