"""``fastadapt sweep``: the plan of runs, one run trained and evaluated in-process, a Ray Tune
sweep that resumes without redoing finished runs, and its bad input."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from cli_errors import one_line_error

from fastadapt.cli import main
from fastadapt.errors import ConfigError, SweepError
from fastadapt.run.rundir import load_run_config
from fastadapt.sweeps import (
    check_same_config,
    import_tune,
    plan,
    run_one,
    run_status,
    sweep,
)

CONFIG = "maml-trpo/2d-navigation"
TINY = ("maml-trpo.tasks_per_iteration=2", "maml-trpo.episodes_per_task=2", "env.horizon=5",
        "policy.hidden_sizes=[8]", "run.tensorboard=false", "run.iterations=1",
        "evaluate.num_tasks=3", "evaluate.adaptation_steps=1", "evaluate.episodes_per_task=2")


def test_plan_names_every_grid_point_and_seed() -> None:
    runs = plan(CONFIG, 2, TINY, {"maml-trpo.inner_lr": ["0.05", "0.1"], "env.horizon": ["7"]})
    assert [run.name for run in runs] == [
        "maml-trpo-2d-navigation,maml-trpo.inner_lr=0.05,env.horizon=7-seed1",
        "maml-trpo-2d-navigation,maml-trpo.inner_lr=0.05,env.horizon=7-seed2",
        "maml-trpo-2d-navigation,maml-trpo.inner_lr=0.1,env.horizon=7-seed1",
        "maml-trpo-2d-navigation,maml-trpo.inner_lr=0.1,env.horizon=7-seed2",
    ]
    # the grid point's overrides come after --set, the seed last
    assert runs[3].overrides == ("run.num_threads=1", *TINY, "maml-trpo.inner_lr=0.1",
                                 "env.horizon=7", "run.seed=2")
    assert runs[3].config.run.seed == 2 and runs[3].config.env.horizon == 7
    assert [run.name for run in plan(CONFIG, 3)] == [
        f"maml-trpo-2d-navigation-seed{s}" for s in (1, 2, 3)]


def test_one_run_trains_evaluates_and_is_then_done(tmp_path: Path) -> None:
    (run,) = plan(CONFIG, 1, (*TINY, "run.iterations=2", "run.checkpoint_every=1"))
    path = tmp_path / run.name
    assert run_status(path) == "new"
    result = run_one(CONFIG, run.overrides, str(path), [])
    assert result["status"] == "new" and isinstance(result["return_after"], float)
    assert run_status(path) == "done"
    config = load_run_config(path)
    assert config.run.seed == 1 and config.run.num_threads == 1 and config.env.horizon == 5
    evaluation = json.loads((path / "evaluation.json").read_text())
    assert evaluation["num_tasks"] == 3 and len(evaluation["returns_mean"]) == 2
    # a run killed after its first checkpoint continues from it; a trained one is evaluated
    (path / "evaluation.json").unlink()
    assert run_status(path) == "evaluate"
    assert run_one(CONFIG, run.overrides, str(path), [])["status"] == "evaluate"
    (path / "evaluation.json").unlink()
    (path / "policy.safetensors").unlink()
    (path / "checkpoints" / "iter_000002.json").unlink()
    (path / "checkpoints" / "iter_000002.safetensors").unlink()
    lines = (path / "metrics.jsonl").read_text().splitlines()
    (path / "metrics.jsonl").write_text(lines[0] + "\n")
    assert run_status(path) == "resume"
    assert run_one(CONFIG, run.overrides, str(path), [])["status"] == "resume"
    assert len((path / "metrics.jsonl").read_text().splitlines()) == 2
    # the same name with another config is refused before anything starts
    check_same_config(run, path, [])
    (other,) = plan(CONFIG, 1, (*TINY, "run.iterations=5", "run.checkpoint_every=1"))
    check_same_config(other, path, [])  # more iterations: the run is extended
    (other,) = plan(CONFIG, 1, (*TINY, "run.iterations=2", "run.checkpoint_every=1",
                                "maml-trpo.inner_lr=0.2"))
    with pytest.raises(ConfigError, match=r"holds a run of another config \(maml-trpo.inner_lr: "
                                          r"0.1 there, 0.2 here"):
        check_same_config(other, path, [])


def test_ray_tune_sweep_runs_every_seed_and_resumes_without_redoing_them(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("ray.tune")
    root = tmp_path / "sweep"
    args = ["sweep", CONFIG, "--seeds", "2", "--root", str(root), "--workers", "2",
            "--set", "maml-trpo.inner_lr=0.05"]
    for override in TINY:
        args += ["--set", override]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"2 of 2 runs evaluated under {root}" in out
    runs = [root / f"maml-trpo-2d-navigation-seed{seed}" for seed in (1, 2)]
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) == [
        run.name for run in runs]
    assert all(run_status(run) == "done" for run in runs)
    assert [load_run_config(run).run.seed for run in runs] == [1, 2]
    assert {load_run_config(run).algorithm_config.inner_lr for run in runs} == {0.05}
    # a second call (as after an interruption once these runs were done) starts no trial
    stamps = [(run / "evaluation.json").stat().st_mtime_ns for run in runs]
    assert sweep(CONFIG, 2, root, ("maml-trpo.inner_lr=0.05", *TINY)) == runs
    assert stamps == [(run / "evaluation.json").stat().st_mtime_ns for run in runs]
    # and report pools the seeds under the sweep's name
    assert main(["report", *map(str, runs), "--output", str(tmp_path / "report.png")]) == 0
    assert "| maml-trpo-2d-navigation | Navigation2D | 2 | 3 |" in capsys.readouterr().out


def test_sweep_bad_input_is_one_line_before_anything_starts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "sweep"
    assert main(["sweep", CONFIG, "--seeds", "0", "--root", str(root)]) == 2
    assert "--seeds >= 1, got 0" in one_line_error(capsys)
    assert main(["sweep", CONFIG, "--seeds", "2", "--root", str(root),
                 "--grid", "maml-trpo.no_such_key=1,2"]) == 2
    assert "no_such_key" in one_line_error(capsys)
    assert main(["sweep", CONFIG, "--seeds", "2", "--root", str(root), "--grid", "env.horizon"]
                ) == 2
    assert "--grid wants KEY=V1,V2" in one_line_error(capsys)
    assert main(["sweep", CONFIG, "--seeds", "2", "--root", str(root), "--workers", "0"]) == 2
    assert "--workers >= 1" in one_line_error(capsys)
    assert not root.exists()
    with pytest.raises(ConfigError, match="no values"):
        plan(CONFIG, 1, grid={"env.horizon": []})


def test_missing_ray_tune_or_rliable_says_which_extra_to_install(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "ray.tune", None)
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(SweepError, match=r"pip install 'fastadapt\[tune\]'"):
        import_tune()
    assert main(["sweep", CONFIG, "--seeds", "1", "--root", str(tmp_path / "s"),
                 *(arg for o in TINY for arg in ("--set", o))]) == 2
    assert "fastadapt[tune]" in one_line_error(capsys)
    monkeypatch.setitem(sys.modules, "rliable", None)
    run = tmp_path / "run"
    run.mkdir()
    (run / "evaluation.json").write_text(json.dumps(
        {"algorithm": "rl2", "env": "Bandit", "per_task_returns": [[1.0], [2.0]]}))
    assert main(["report", str(run), "--output", str(tmp_path / "r.png")]) == 2
    assert "fastadapt[report]" in one_line_error(capsys)


def test_run_names_never_start_with_a_dash_and_keep_a_files_own_name(tmp_path: Path) -> None:
    from fastadapt.sweeps import sweep_stem

    config = tmp_path / "my-nav.yaml"
    config.write_text("algorithm: maml-trpo\n")
    assert sweep_stem(str(config)) == "my-nav"
    assert sweep_stem("maml-trpo/2d-navigation") == "maml-trpo-2d-navigation"
    assert sweep_stem("/absent/-odd.yaml") == "absent--odd"
    assert not sweep_stem("---").startswith("-")
