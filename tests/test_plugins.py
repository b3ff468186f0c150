"""Plugins: a user's own task family and algorithm train, evaluate, plot and compare through the
CLI like the built-in ones, found through entry points (the installed example package,
``examples/fastadapt-example``) or named with ``--plugin`` / ``plugins:``; and what goes wrong
with plugins is one line before anything is written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

import fastadapt
from fastadapt.algorithms.toolkit import GradientAgent
from fastadapt.cli import main
from fastadapt.envs import registry
from fastadapt.errors import PluginError

pytest.importorskip("fastadapt_example", reason="make install installs the plugin example")

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent / "examples" / "fastadapt-example" / "src" / "fastadapt_example"
REPTILE = str(EXAMPLE / "reptile-goal-line.yaml")
TINY = ["--quiet", "--set=run.tensorboard=false", "--set=run.num_threads=1",
        "--set=env.horizon=6", "--set=policy.hidden_sizes=[8]"]


def _tiny(section: str) -> list[str]:
    return [*TINY, f"--set={section}.tasks_per_iteration=3",
            f"--set={section}.episodes_per_task=2"]


def _one_line_error(capsys: pytest.CaptureFixture[str], code: int, expected: str) -> None:
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert expected in err, err


def test_example_plugin_trains_resumes_evaluates_plots_and_compares(tmp_path: Path) -> None:
    """The installed example: its algorithm (Reptile) on its family (GoalLine) with worker
    processes (which import the plugin to unpickle the family), and a built-in algorithm
    (MAML-TRPO) on the plugin family; both compared on one protocol."""
    reptile, maml = tmp_path / "reptile", tmp_path / "maml"
    assert main(["train", REPTILE, "--run-dir", str(reptile), "--iterations", "2",
                 "--sampler", "process", "--workers", "2", *_tiny("reptile")]) == 0
    assert main(["train", "--resume", str(reptile), "--iterations", "3", "--quiet"]) == 0
    records = [json.loads(line) for line in (reptile / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records] == [1, 2, 3]
    assert main(["train", "maml-trpo/2d-navigation", "--run-dir", str(maml), "--iterations",
                 "2", "--set=env.name=GoalLine", *_tiny("maml-trpo")]) == 0
    for run in (reptile, maml):
        assert main(["evaluate", str(run), "--tasks", "3", "--episodes", "2",
                     "--adaptation-steps", "2"]) == 0
        assert main(["plot", str(run)]) == 0
        assert (run / "report.png").stat().st_size > 0
    result = json.loads((reptile / "evaluation.json").read_text())
    assert result["algorithm"] == "reptile" and result["env"] == "GoalLine"
    assert len(result["returns_mean"]) == 3 and result["adapts_by"] == "gradient_steps"
    assert yaml.safe_load((reptile / "config.yaml").read_text())["reptile"]["inner_steps"] == 3
    figure = tmp_path / "compare.png"
    assert main(["compare", str(reptile), str(maml), "--output", str(figure)]) == 0
    assert figure.stat().st_size > 0
    agent = fastadapt.load_agent(reptile, num_envs=2)  # the plugin's own make_agent
    observations = np.zeros((2, *agent.obs_shape), dtype=np.float64)
    actions = agent.act(observations)
    agent.observe(observations, actions, np.ones(2), np.zeros(2, bool), np.ones(2, bool),
                  observations)
    agent.adapt()
    assert isinstance(agent, GradientAgent) and list(agent.steps_taken) == [1, 1]


def test_plugin_module_named_by_flag_is_saved_with_the_run(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    """A module that is no installed package: ``--plugin`` imports it, the run's config
    keeps it, so evaluate and resume import it again without the flag."""
    monkeypatch.syspath_prepend(str(HERE))
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"algorithm": "first-order-reptile",
                                      "env": {"name": "ShiftedLine"}}))
    run = tmp_path / "run"
    assert main(["train", str(config), "--plugin", "plugin_problems", "--run-dir", str(run),
                 "--iterations", "1", *_tiny("reptile")]) == 0
    assert yaml.safe_load((run / "config.yaml").read_text())["plugins"] == ["plugin_problems"]
    assert main(["train", "--resume", str(run), "--iterations", "2", "--quiet"]) == 0
    assert main(["evaluate", str(run), "--tasks", "2", "--episodes", "2"]) == 0
    assert json.loads((run / "evaluation.json").read_text())["env"] == "ShiftedLine"


def test_entry_points_are_found_without_any_setting(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A distribution on the path that declares an entry point in ``fastadapt.families``."""
    monkeypatch.syspath_prepend(str(HERE))
    info = tmp_path / "fake_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[fastadapt.families]\nEntryPointLine = plugin_problems:ShiftedLine\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    families = registry.FAMILIES
    monkeypatch.setattr(families, "entry_points_read", False)
    monkeypatch.setattr(families, "targets", dict(families.targets))
    monkeypatch.setattr(families, "sources", dict(families.sources))
    assert "EntryPointLine" in registry.family_names()
    assert registry.make_family("EntryPointLine").name == "ShiftedLine"
    assert registry.family_source("EntryPointLine") == "the plugin fake-plugin"


@pytest.mark.parametrize(("argv", "expected"), [
    (["--plugin", "no_such_plugin"],
     "plugin 'no_such_plugin' cannot be imported: ModuleNotFoundError: No module named "
     "'no_such_plugin'"),
    (["--set=algorithm=reptil"], "unknown algorithm 'reptil'; did you mean reptile?"),
    (["--set=env.name=GoalLin"], "unknown env 'GoalLin'; did you mean GoalLine"),
    (["--set=env.name=Nowhere"], "a plugin adds one: an entry point in the group "
                                 "'fastadapt.families', or register_family"),
    (["--set=maml-trpo.inner_lr=0.1"],
     "config section 'maml-trpo' is read by maml-trpo, not by algorithm 'reptile', whose "
     "section is 'reptile'"),
    (["--plugin", "plugin_problems", "--set=env.name=Float64Line"],
     "task family 'Float64Line': make_batched(...).reset() returned observations of dtype "
     "float64, expected float32 (cast with .astype(np.float32))"),
    (["--plugin", "plugin_problems", "--set=env.name=DriftLine"],
     "task family 'DriftLine': test_tasks must be prefix-stable: test_tasks(2) differs from "
     "the first 2 of test_tasks(3)"),
    (["--plugin", "plugin_problems", "--set=env.name=NoTasks"],
     "task family 'NoTasks' cannot be built with env.kwargs {}: Can't instantiate abstract "
     "class NoTasks"),
    (["--device", "tpu"], "run.device 'tpu' is not a device: use cpu, cuda, cuda:N, mps or auto"),
])
def test_bad_plugin_input_is_one_line_before_anything_is_written(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        argv: list[str], expected: str) -> None:
    monkeypatch.syspath_prepend(str(HERE))
    run = tmp_path / "run"
    code = main(["train", REPTILE, "--run-dir", str(run), "--iterations", "1", *argv, *TINY])
    _one_line_error(capsys, code, expected)
    assert not run.exists()


def test_a_name_registered_twice_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A plugin that takes a built-in family's or algorithm's name (the same class again is
    fine: an entry point and an import of its module)."""
    import fastadapt

    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "greedy_plugin.py").write_text(
        "import fastadapt\nfrom fastadapt_example.family import GoalLine\n"
        "fastadapt.register_family('Navigation2D', GoalLine)\n")
    code = main(["train", REPTILE, "--plugin", "greedy_plugin", "--run-dir",
                 str(tmp_path / "run"), *TINY])
    _one_line_error(capsys, code, "task family 'Navigation2D' is registered twice: by fastadapt "
                                  "and by fastadapt_example.family")
    from fastadapt_example.algorithm import Reptile

    fastadapt.register_algorithm("reptile", Reptile)  # the same: nothing happens
    with pytest.raises(PluginError, match=r"algorithm 'maml-trpo' is registered twice: by "
                                          r"fastadapt and by fastadapt_example\.algorithm"):
        fastadapt.register_algorithm("maml-trpo", Reptile)
    with pytest.raises(PluginError, match=r"not a subclass of fastadapt\.Algorithm"):
        fastadapt.register_algorithm("not-an-algorithm", dict)  # type: ignore[arg-type]


def test_the_example_runs_from_a_copy_outside_the_repository(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    """What a user who installed both packages does: a config of their own, anywhere."""
    config = tmp_path / "mine.yaml"
    shutil.copy(REPTILE, config)
    monkeypatch.chdir(tmp_path)
    assert main(["train", "mine.yaml", "--run-dir", "run", "--iterations", "1",
                 *_tiny("reptile")]) == 0
    assert (tmp_path / "run" / "policy.safetensors").exists()
