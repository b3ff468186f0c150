"""Transfer baselines (finetune, random-init, oracle) and ``fastadapt compare``, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fastadapt.algorithms.maml.curvature import InnerLoopJacobian
from fastadapt.algorithms.registry import build_algorithm
from fastadapt.cli import main
from fastadapt.envs.navigation import Navigation2D
from fastadapt.envs.wrappers import OracleFamily
from fastadapt.policies.mlp import GaussianMLPPolicy
from fastadapt.run.checkpoint import load_tensors
from fastadapt.run.config_loading import load_train_config, resolve

CONFIG = "finetune/2d-navigation"
TINY = [
    "--set", "finetune.tasks_per_iteration=3",
    "--set", "finetune.episodes_per_task=3",
    "--set", "env.horizon=10",
    "--set", "policy.hidden_sizes=[8, 8]",
    "--set", "run.tensorboard=false",
    "--set", "run.num_threads=1",
    "--quiet",
]
EVAL = ["--tasks", "4", "--adaptation-steps", "2", "--episodes", "3"]


def test_oracle_observes_the_goal() -> None:
    family = OracleFamily(Navigation2D())
    tasks = family.test_tasks(3)
    assert tasks == Navigation2D().test_tasks(3)  # same held-out split
    env = family.make_batched(tasks, 2, np.random.default_rng(0))
    obs = env.reset()
    goals = np.array([[t.goal_x, t.goal_y] for t in tasks], dtype=np.float32)
    assert obs.shape == (3, 2, 4) and family.observation_space.shape == (4,)
    assert np.array_equal(obs[..., 2:], np.broadcast_to(goals[:, None], (3, 2, 2)))
    obs, _, _ = env.step(np.full((3, 2, 2), 0.05, dtype=np.float32))
    assert np.allclose(obs[..., :2], 0.05) and np.array_equal(obs[0, 0, 2:], goals[0])


def test_pretraining_jacobian_without_inner_steps_is_the_identity() -> None:
    policy = GaussianMLPPolicy(2, 2, (4,))
    theta = {n: p.detach() for n, p in policy.named_parameters()}
    jacobian = InnerLoopJacobian(policy, theta, [], 0.1, num_tasks=3)
    vector = {n: torch.randn_like(p) for n, p in theta.items()}
    per_task = jacobian.jvp(vector)
    for name, value in vector.items():
        assert torch.equal(per_task[name], value.expand(3, *value.shape))
        assert torch.allclose(jacobian.vjp(per_task)[name], 3 * value)


def test_finetune_oracle_random_init_end_to_end_with_compare(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = {}
    for algorithm in ("finetune", "oracle", "random-init"):
        run = runs[algorithm] = tmp_path / algorithm
        assert main(["train", CONFIG, "--run-dir", str(run), *TINY, "--iterations", "2",
                     "--set", f"algorithm={algorithm}"]) == 0
        assert main(["evaluate", str(run), *EVAL]) == 0
        result = json.loads((run / "evaluation.json").read_text())
        assert result["algorithm"] == algorithm and result["env"] == "Navigation2D"
        assert result["episodes_per_step"] == 3 and len(result["returns_mean"]) == 3
        assert np.array(result["per_task_returns"]).shape == (4, 3)
        assert all(len(point) == 2 for path in result["trajectories"] for point in path["after"])
    pretrained = [json.loads(line) for line in
                  (runs["finetune"] / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in pretrained] == [1, 2]
    assert all(r["return_before"] == r["return_after"] for r in pretrained)  # no adaptation
    assert any(r["step_accepted"] for r in pretrained)
    # random-init trains nothing: one iteration (its config keeps the requested count: derived
    # sizes are not written back), parameters = the seeded initialisation
    config = load_train_config(runs["random-init"] / "config.yaml")
    measured = (runs["random-init"] / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["iteration"] for line in measured] == [1]
    saved, _ = load_tensors(runs["random-init"] / "policy.safetensors")
    initial = build_algorithm(resolve(config), torch.device("cpu")).initial_parameters()
    assert all(torch.equal(saved[n], initial[n]) for n in initial)
    oracle, _ = load_tensors(runs["oracle"] / "policy.safetensors")
    assert oracle["mean.0.weight"].shape[1] == 4  # position + goal
    capsys.readouterr()

    figure = tmp_path / "out" / "compare.png"
    assert main(["compare", *map(str, runs.values()), "--output", str(figure)]) == 0
    table = capsys.readouterr().out
    assert figure.stat().st_size > 10_000
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    assert lines[0].startswith("| algorithm | env | runs | return before | return after")
    rows = {line.split(" | ")[0][2:]: line for line in lines[1:]}
    assert set(rows) == {"finetune", "oracle", "random-init"}
    assert "| Navigation2D | 1 |" in rows["finetune"]
    assert rows["oracle"].split(" | ")[6] == "6"  # 2 steps x 3 episodes of experience


def test_finetune_resume_is_bit_identical(tmp_path: Path) -> None:
    assert main(["train", CONFIG, "--run-dir", str(tmp_path / "straight"), *TINY,
                 "--iterations", "2", "--set", "run.checkpoint_every=1"]) == 0
    assert main(["train", CONFIG, "--run-dir", str(tmp_path / "resumed"), *TINY,
                 "--iterations", "1", "--set", "run.checkpoint_every=1"]) == 0
    assert main(["train", "--resume", str(tmp_path / "resumed"), "--iterations", "2",
                 "--quiet"]) == 0
    straight, _ = load_tensors(tmp_path / "straight" / "policy.safetensors")
    resumed, _ = load_tensors(tmp_path / "resumed" / "policy.safetensors")
    assert all(torch.equal(straight[n], resumed[n]) for n in straight)


def test_compare_needs_evaluated_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                      ) -> None:
    run = tmp_path / "run"
    assert main(["train", CONFIG, "--run-dir", str(run), *TINY, "--iterations", "1"]) == 0
    assert main(["compare", str(run)]) == 2
    err = capsys.readouterr().err
    assert "fastadapt evaluate" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--set", "finetune.inner_lrr=0.1"], "did you mean 'finetune.inner_lr'"),
        (["--set", "finetune.inner_lr=0"], "finetune.inner_lr must be > 0"),
        (["--set", "finetune.episodes_per_task=0"], "finetune.episodes_per_task must be >= 1"),
        (["--set", "finetune=3"], "config section 'finetune' must be a mapping"),
        # the known algorithms are listed (with any plugin's among them)
        (["--set", "algorithm=fine-tune"],
         ("unknown algorithm 'fine-tune'; did you mean finetune? (known: ", " finetune, ",
          " random-init, ", " oracle, ")),
    ],
)
def test_bad_finetune_config_is_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
    expected: str | tuple[str, ...]
) -> None:
    assert main(["train", CONFIG, "--run-dir", str(tmp_path / "run"), "--quiet", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fastadapt: error: ") and len(err.splitlines()) == 1
    for part in (expected,) if isinstance(expected, str) else expected:
        assert part in err
