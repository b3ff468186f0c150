"""``run.device``: the learner's tensors on a chosen torch device, sampling on the CPU.

Without a GPU these tests check the CPU path and the refusals; ``benchmarks/device_check.py``
compares a GPU with the CPU where one is available.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fastadapt.cli import main
from fastadapt.errors import ConfigError
from fastadapt.run.checkpoint import load_tensors
from fastadapt.run.device import resolve_device

TINY = ["--quiet", "--iterations", "2", "--set=run.tensorboard=false", "--set=env.horizon=5",
        "--set=policy.hidden_sizes=[8]", "--set=maml-trpo.tasks_per_iteration=2",
        "--set=maml-trpo.episodes_per_task=2"]


def test_cpu_and_auto_resolve_here() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available() and getattr(torch.backends, "mps", None) is not None \
            and torch.backends.mps.is_available():
        expected = "mps"
    assert resolve_device("auto").type == expected


@pytest.mark.parametrize(("spec", "expected"), [
    ("tpu", "run.device 'tpu' is not a device"),
    ("meta", "run.device 'meta' is not supported"),
    ("cuda:x", "run.device 'cuda:x' is not a device"),
])
def test_a_bad_device_is_one_line(spec: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        resolve_device(spec)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_one_line_before_anything_is_written(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert main(["train", "maml-trpo/2d-navigation", "--run-dir", str(run), "--device",
                 "cuda", *TINY]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "run.device 'cuda' needs CUDA, which this machine or torch build does not have" in err
    assert not run.exists()


def test_an_explicit_cpu_device_trains_the_default_run(tmp_path: Path) -> None:
    """``run.device: cpu`` is the default: the same bits; the checkpoints hold CPU tensors
    (they load on any device)."""
    default, cpu = tmp_path / "default", tmp_path / "cpu"
    assert main(["train", "maml-trpo/2d-navigation", "--run-dir", str(default), *TINY]) == 0
    assert main(["train", "maml-trpo/2d-navigation", "--run-dir", str(cpu), "--device", "cpu",
                 *TINY]) == 0
    a, _ = load_tensors(default / "policy.safetensors")
    b, _ = load_tensors(cpu / "policy.safetensors")
    assert all(torch.equal(a[k], b[k]) and b[k].device.type == "cpu" for k in a)
