"""``run.init_from``: a new run starts from another run's final parameters (a warm start)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from fastadapt.algorithms.base import Algorithm
from fastadapt.algorithms.registry import build_algorithm
from fastadapt.cli import main
from fastadapt.config import RunConfig, TrainConfig
from fastadapt.run.checkpoint import load_tensors
from fastadapt.run.config_loading import resolve
from fastadapt.run.rundir import load_run_config
from fastadapt.run.trainer import warm_start

COMMON = ["--set", "run.tensorboard=false", "--set", "run.num_threads=1", "--quiet"]
RUNS = {
    "maml-trpo": ["maml-trpo/2d-navigation", "--set", "maml-trpo.tasks_per_iteration=2",
                  "--set", "maml-trpo.episodes_per_task=2", "--set", "env.horizon=5",
                  "--set", "policy.hidden_sizes=[8, 8]", *COMMON],
    "rl2": ["rl2/bandit-k5", "--set", "rl2.tasks_per_iteration=2",
            "--set", "rl2.trials_per_task=2", "--set", "rl2.hidden_size=8", *COMMON],
}


def _params(run: Path) -> dict[str, torch.Tensor]:
    return load_tensors(run / "policy.safetensors")[0]


def _build(config: TrainConfig) -> Algorithm:
    return build_algorithm(resolve(config), torch.device("cpu"))


@pytest.mark.parametrize("algorithm", sorted(RUNS))
def test_a_run_starts_from_another_runs_parameters(tmp_path: Path, algorithm: str) -> None:
    args = RUNS[algorithm]
    source, warm, cold = tmp_path / "source", tmp_path / "warm", tmp_path / "cold"
    assert main(["train", *args, "--run-dir", str(source), "--iterations", "2"]) == 0
    # what the warm run starts from: the source's final parameters, in the policy's order
    config = load_run_config(source)
    built = _build(config)
    fresh = built.initial_parameters()
    warm_start(built, RunConfig(init_from=str(source)))
    start = built.parameters()
    assert list(start) == list(fresh)
    for name, value in _params(source).items():
        assert torch.equal(start[name], value), name
        assert not torch.equal(fresh[name], value), name  # trained away from the fresh ones
    warm_args = [*args, "--set", f"run.init_from={source}", "--iterations", "1"]
    assert main(["train", *warm_args, "--run-dir", str(warm)]) == 0
    assert main(["train", *args, "--run-dir", str(cold), "--iterations", "1"]) == 0
    warm_params, cold_params = _params(warm), _params(cold)
    assert any(not torch.equal(warm_params[n], cold_params[n]) for n in warm_params)
    # a warm run that stopped before its first checkpoint starts from the source again
    for name in ("checkpoints", "metrics.jsonl", "policy.safetensors", "tensorboard"):
        path = warm / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    assert main(["train", "--resume", str(warm), "--quiet"]) == 0
    for name, value in _params(warm).items():
        assert torch.equal(value, warm_params[name]), name
    # a resumed warm run continues from its own checkpoint: the source may be gone
    for path in sorted(source.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    assert main(["train", "--resume", str(warm), "--iterations", "2", "--quiet"]) == 0


def test_bad_init_from_is_one_line_error_before_any_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = RUNS["rl2"]
    source = tmp_path / "source"
    assert main(["train", *args, "--run-dir", str(source), "--iterations", "1"]) == 0
    capsys.readouterr()
    # the finetune config takes COMMON only: a config refuses another algorithm's section (rl2.*)
    cases = [
        (args, ["--set", f"run.init_from={source}", "--set", "rl2.hidden_size=16"],
         "run.init_from: " + str(source / "policy.safetensors") + " does not match the "
         "config's policy"),
        (args, ["--set", f"run.init_from={tmp_path / 'missing'}"],
         "run.init_from: " + str(tmp_path / "missing") + " has neither policy.safetensors"),
        (["finetune/2d-navigation", *COMMON],
         ["--set", "algorithm=random-init", "--set", f"run.init_from={source}"],
         "run.init_from is not available for random-init"),
    ]
    for config_args, extra, expected in cases:
        run = tmp_path / "run"
        code = main(["train", *config_args, *extra, "--run-dir", str(run)])
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.startswith("fastadapt: error: "), err
        assert expected in err and len(err.splitlines()) == 1, err
        assert not run.exists()
