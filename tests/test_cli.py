"""End-to-end runs of the ``fastadapt`` command and its handling of bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_errors import one_line_error

from fastadapt.cli import main
from fastadapt.envs import registry
from fastadapt.envs.navigation import BatchedNavigation, Navigation2D, NavigationTask
from fastadapt.run.checkpoint import load_tensors

CONFIG = "maml-trpo/2d-navigation"
TINY = [
    "--set", "maml-trpo.tasks_per_iteration=3",
    "--set", "maml-trpo.episodes_per_task=3",
    "--set", "env.horizon=10",
    "--set", "policy.hidden_sizes=[8, 8]",
    "--set", "run.tensorboard=false",
    "--set", "run.checkpoint_every=1",
    "--set", "run.num_threads=1",
    "--quiet",
]


def _train(run_dir: Path, *extra: str) -> int:
    return main(["train", CONFIG, "--run-dir", str(run_dir), *TINY, *extra])


def test_train_evaluate_plot_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                        ) -> None:
    run = tmp_path / "run"
    assert _train(run, "--iterations", "2") == 0
    for name in ("config.yaml", "metrics.jsonl", "policy.safetensors", "report.png"):
        assert (run / name).exists(), name
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records] == [1, 2]
    for key in ("seconds", "env_steps", "return_before", "return_after", "kl"):
        assert all(np.isfinite(r[key]) for r in records), key
    assert records[1]["env_steps"] > records[0]["env_steps"] > 0
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "iter_000001.json", "iter_000001.safetensors",
        "iter_000002.json", "iter_000002.safetensors",
    ]
    assert main(["evaluate", str(run), "--tasks", "4", "--adaptation-steps", "2",
                 "--episodes", "3"]) == 0
    result = json.loads((run / "evaluation.json").read_text())
    assert result["num_tasks"] == 4 and result["adaptation_steps"] == 2
    assert len(result["returns_mean"]) == len(result["returns_ci95"]) == 3
    assert np.array(result["per_task_returns"]).shape == (4, 3)
    assert np.allclose(np.mean(result["per_task_returns"], axis=0), result["returns_mean"])
    assert len(result["trajectories"]) == 4
    (run / "report.png").unlink()
    assert main(["plot", str(run)]) == 0
    assert (run / "report.png").stat().st_size > 10_000
    assert main(["envs"]) == 0
    assert "Navigation2D" in capsys.readouterr().out


def test_eval_episodes_sample_only_the_adapted_policy_more_or_less(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from fastadapt.sampling.vector import VectorSampler
    from fastadapt.types import Trajectories

    run = tmp_path / "run"
    assert _train(run, "--iterations", "1") == 0
    shapes: list[tuple[int, int]] = []  # (tasks, episodes) of every evaluation batch
    sample = VectorSampler.sample

    def recording(self: VectorSampler, params: Any, tasks: list[Any], episodes: int
                  ) -> Trajectories:
        trajectories = sample(self, params, tasks, episodes)
        shapes.append((trajectories.masks.shape[0], trajectories.masks.shape[1]))
        return trajectories

    monkeypatch.setattr(VectorSampler, "sample", recording)
    evaluate = ["evaluate", str(run), "--tasks", "2", "--adaptation-steps", "2",
                "--episodes", "3"]
    assert main([*evaluate, "--eval-episodes", "5"]) == 0
    assert shapes == [(2, 3), (2, 3), (2, 5)]  # two inner steps on 3, then 5 adapted episodes
    result = json.loads((run / "evaluation.json").read_text())
    assert result["episodes_per_task"] == result["episodes_per_step"] == 3
    assert result["eval_episodes_per_task"] == 5
    assert np.array(result["per_task_returns"]).shape == (2, 3)
    assert "3 episodes per step, 5 after" in capsys.readouterr().out
    shapes.clear()
    assert main(evaluate) == 0  # the default: as many as --episodes
    assert shapes == [(2, 3)] * 3
    assert json.loads((run / "evaluation.json").read_text())["eval_episodes_per_task"] == 3
    assert main([*evaluate, "--eval-episodes", "0"]) == 2
    assert "eval episodes must be >= 1, got 0" in one_line_error(capsys)


def test_resume_is_bit_identical(tmp_path: Path) -> None:
    assert _train(tmp_path / "straight", "--iterations", "3") == 0
    assert _train(tmp_path / "resumed", "--iterations", "2") == 0
    assert main(["train", "--resume", str(tmp_path / "resumed"), "--iterations", "3",
                 "--quiet"]) == 0
    straight, _ = load_tensors(tmp_path / "straight" / "policy.safetensors")
    resumed, _ = load_tensors(tmp_path / "resumed" / "policy.safetensors")
    for name, value in straight.items():
        assert np.array_equal(value.numpy(), resumed[name].numpy()), name
    lines = (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["iteration"] for line in lines] == [1, 2, 3]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--set", "maml-trpo.trpo.max_kll=0.1"], "did you mean 'maml-trpo.trpo.max_kl'"),
        (["--set", "maml-trpo.inner_lr=abc"], "'maml-trpo.inner_lr' must be a float"),
        (["--set", "maml-trpo.tasks_per_iteration=0"],
         "maml-trpo.tasks_per_iteration must be >= 1, got 0"),
        (["--set", "env.name=Navigaton2D"], "did you mean Navigation2D"),
        (["--set", "maml-trpo.trpo.fvp_subsample=2"],
         "maml-trpo.trpo.fvp_subsample must be in (0, 1]"),
        (["--set", "policy.activation=gelu"], "must be one of 'tanh', 'relu'"),
        (["--set", "novalue"], "novalue"),
    ],
)
def test_bad_config_is_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], expected: str
) -> None:
    assert _train(tmp_path / "run", *args) == 2
    assert expected in one_line_error(capsys)


def test_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml" in one_line_error(capsys)


def test_missing_and_corrupt_run_dirs(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                      ) -> None:
    assert main(["evaluate", str(tmp_path / "absent")]) == 2
    assert "does not exist" in one_line_error(capsys)
    assert main(["plot", str(tmp_path)]) == 2
    assert "metrics.jsonl" in one_line_error(capsys)
    run = tmp_path / "run"
    assert _train(run, "--iterations", "1") == 0
    (run / "policy.safetensors").write_bytes(b"\x00garbage" * 10)
    assert main(["evaluate", str(run)]) == 2
    assert "policy.safetensors" in one_line_error(capsys)
    assert main(["train", "--resume", str(run), "--quiet", "--set",
                 "policy.hidden_sizes=[16, 16]"]) == 2
    assert "policy.hidden_sizes defines the run" in one_line_error(capsys)


def test_existing_run_is_never_overwritten(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                           ) -> None:
    run = tmp_path / "run"
    assert _train(run, "--iterations", "1") == 0
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert _train(run, "--iterations", "1") == 2
    assert "--resume" in one_line_error(capsys)
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


class _NaNNavigation(Navigation2D):
    """Navigation whose rewards become NaN: a diverging simulator."""

    name = "NaNNavigation"

    def make_batched(self, tasks: list[NavigationTask], episodes_per_task: int,
                     rng: np.random.Generator) -> BatchedNavigation:
        env = super().make_batched(tasks, episodes_per_task, rng)
        step = env.step

        def nan_step(actions: np.ndarray) -> Any:
            obs, rewards, terminated = step(actions)
            return obs, rewards * np.nan, terminated

        env.step = nan_step  # type: ignore[method-assign]
        return env


def test_nan_loss_stops_with_clear_error_and_keeps_parameters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(registry.FAMILIES.targets, "NaNNavigation", _NaNNavigation)
    run = tmp_path / "run"
    assert _train(run, "--iterations", "5", "--set", "env.name=NaNNavigation") == 2
    err = one_line_error(capsys)
    assert "NaN/inf for 3 consecutive iterations" in err
    checkpoints = sorted((run / "checkpoints").glob("*.safetensors"))
    assert checkpoints, "the last good parameters must be saved"
    tensors, _ = load_tensors(checkpoints[-1])
    assert all(np.isfinite(t.numpy()).all() for t in tensors.values())


@pytest.mark.parametrize(("argv", "expected"), [
    (["evaluate", "RUN", "--tasks", "abc"],
     "fastadapt: error: argument --tasks: invalid int value: 'abc' (see fastadapt evaluate "
     "--help)"),
    (["evaluate"], "the following arguments are required: run_dir"),
    (["nonsense"], "argument command: invalid choice: 'nonsense'"),
])
def test_usage_errors_are_one_line(argv: list[str], expected: str,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert expected in one_line_error(capsys)


def test_integer_options_take_integral_floats() -> None:
    from fastadapt.cli import build_parser

    args = build_parser().parse_args(["evaluate", "RUN", "--tasks", "1e3"])
    assert args.tasks == 1000


def test_help_and_algorithm_summaries_are_plain_whole_sentences(
        capsys: pytest.CaptureFixture[str]) -> None:
    from fastadapt.algorithms.registry import plain_summary

    assert plain_summary("Pretrain by TRPO (:class:`~a.b.MAMLTRPO` on\n    ``x``). More.") == \
        "Pretrain by TRPO (MAMLTRPO on x)."
    assert main(["algorithms", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert all(":class:" not in row["summary"] and "``" not in row["summary"] for row in rows)
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "checkpoints kept." in " ".join(capsys.readouterr().out.split())
