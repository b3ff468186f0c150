"""The MAML family's configs end to end through ``fastadapt train`` / ``evaluate`` /
``compare``, resume, and Meta-SGD's learned rates at meta-test."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fastadapt.algorithms.base import Algorithm, MetaTestProtocol
from fastadapt.algorithms.registry import build_algorithm
from fastadapt.cli import main
from fastadapt.config import TrainConfig
from fastadapt.evaluation.protocol import meta_test
from fastadapt.run.checkpoint import load_tensors
from fastadapt.run.config_loading import resolve
from fastadapt.run.loading import load_policy
from fastadapt.run.rundir import final_policy_tensors, load_run_config

ALGORITHMS = ("maml-vpg", "maml-ppo", "promp", "meta-sgd")
TINY = [
    "--set", "policy.hidden_sizes=[8]",
    "--set", "run.tensorboard=false",
    "--set", "run.checkpoint_every=1",
    "--set", "run.num_threads=1",
    "--quiet",
]


def _train(config: str, run_dir: Path, *extra: str) -> int:
    section = config.split("/")[0]  # a MAML-family config's section is its algorithm's name
    sizes = ["--set", f"{section}.tasks_per_iteration=3",
             "--set", f"{section}.episodes_per_task=3"]
    horizon = ["--set", "env.horizon=10"] if "navigation" in config else []
    return main(["train", config, "--run-dir", str(run_dir), *sizes, *TINY, *horizon, *extra])


def _build(config: TrainConfig) -> Algorithm:
    return build_algorithm(resolve(config), torch.device("cpu"))


@pytest.mark.parametrize("env", ["2d-navigation", "bandit-k5"])
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_config_trains_and_evaluates(tmp_path: Path, algorithm: str, env: str) -> None:
    run = tmp_path / "run"
    config = f"{algorithm}/{env}"
    assert _train(config, run, "--iterations", "2", "--set",
                  f"{algorithm}.adaptation_steps=2") == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records] == [1, 2]
    for record in records:
        assert len(record["returns"]) == 3  # before, after 1 and 2 inner steps
        for key in ("loss_before", "loss_last_epoch", "grad_norm", "kl"):
            assert np.isfinite(record[key]), key
        assert record["step_accepted"] == 1.0
    if algorithm == "promp":
        assert all("inner_kl" in r and "kl_coef" in r for r in records)
    assert main(["evaluate", str(run), "--tasks", "3", "--adaptation-steps", "2",
                 "--episodes", "2"]) == 0
    result = json.loads((run / "evaluation.json").read_text())
    assert result["algorithm"] == algorithm and len(result["returns_mean"]) == 3


@pytest.mark.parametrize("algorithm", ["promp", "meta-sgd"])
def test_resume_is_bit_identical(tmp_path: Path, algorithm: str) -> None:
    """Adam's moments, ProMP's adaptive eta and Meta-SGD's rates are all checkpointed."""
    config = f"{algorithm}/2d-navigation"
    extra = ["--set", "promp.adaptive_kl_coef=true"] if algorithm == "promp" else []
    assert _train(config, tmp_path / "straight", "--iterations", "3", *extra) == 0
    assert _train(config, tmp_path / "resumed", "--iterations", "2", *extra) == 0
    assert main(["train", "--resume", str(tmp_path / "resumed"), "--iterations", "3",
                 "--quiet"]) == 0
    straight, _ = load_tensors(tmp_path / "straight" / "policy.safetensors")
    resumed, _ = load_tensors(tmp_path / "resumed" / "policy.safetensors")
    assert set(straight) == set(resumed)
    assert any(k.startswith("inner_lr/") for k in straight) == (algorithm == "meta-sgd")
    for name, value in straight.items():
        assert np.array_equal(value.numpy(), resumed[name].numpy()), name


def test_meta_sgd_meta_test_adapts_with_the_learned_rates(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert _train("meta-sgd/2d-navigation", run, "--iterations", "3",
                  "--set", "meta-sgd.learning_rate=0.02") == 0
    config = load_run_config(run)
    algorithm = _build(config)
    load_policy(algorithm, *final_policy_tensors(run))  # theta and the learned rates
    rates = algorithm.inner_lr()
    assert isinstance(rates, dict)
    assert any(not np.allclose(r.detach().numpy(), config.section.inner_lr)
               for r in rates.values())
    learned = meta_test(algorithm, 3, MetaTestProtocol(1, 2), seed=0)
    fixed_rates = _build(config)  # the same theta, adapted with the config's inner_lr
    load_policy(fixed_rates, *final_policy_tensors(run), parameters_only=True)
    fixed = meta_test(fixed_rates, 3, MetaTestProtocol(1, 2), seed=0)
    assert learned["returns_mean"][0] == fixed["returns_mean"][0]  # same pre-update episodes
    assert learned["returns_mean"][1] != fixed["returns_mean"][1]
    assert main(["evaluate", str(run), "--tasks", "3", "--adaptation-steps", "1",
                 "--episodes", "2"]) == 0
    evaluation = json.loads((run / "evaluation.json").read_text())
    assert evaluation["returns_mean"] == pytest.approx(learned["returns_mean"])


def test_non_meta_sgd_runs_have_no_learned_rates(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert _train("maml-ppo/bandit-k5", run, "--iterations", "1") == 0
    algorithm = _build(load_run_config(run))
    tensors, source = final_policy_tensors(run)
    load_policy(algorithm, tensors, source)
    assert not any(name.startswith("inner_lr/") for name in tensors)
    assert not isinstance(algorithm.inner_lr(), dict)


def test_compare_table_has_post_adaptation_returns_and_seconds(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = []
    for algorithm in ("maml-vpg", "promp"):
        run = tmp_path / algorithm
        assert _train(f"{algorithm}/bandit-k5", run, "--iterations", "1") == 0
        assert main(["evaluate", str(run), "--tasks", "3", "--adaptation-steps", "1",
                     "--episodes", "2"]) == 0
        runs.append(str(run))
    capsys.readouterr()
    assert main(["compare", *runs, "--output", str(tmp_path / "compare.png")]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert lines[0].split(" | ")[-1] == "s / iteration |"
    for line in lines[2:]:
        assert float(line.split(" | ")[-1].rstrip(" |")) > 0
