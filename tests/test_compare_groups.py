"""Rows of ``compare`` and ``report``: runs pool by what differs between their configs (seeds
into one row; other settings into rows labelled by them), a sweep's seeds by its name, and
``--label`` names them. Readers read files only: a run's ``facts.json`` (or, for older runs,
its config through the registry), and ``plots`` imports no algorithm."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_errors import one_line_error
from test_architecture import _graph
from tiny_runs import CONFIG, TINY

import fastadapt
from fastadapt.cli import main
from fastadapt.errors import CheckpointError, ConfigError
from fastadapt.evaluation.grouping import method_settings, row_labels
from fastadapt.run.facts import FACTS_FILE, RunFacts, read_facts, write_facts
from fastadapt.run.rundir import load_run_config

RUNS_0_1 = Path(__file__).parent / "data" / "runs-0.1.0"


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("base") / "run"
    assert main(["train", CONFIG, "--run-dir", str(run), "--iterations", "1", *TINY]) == 0
    assert main(["evaluate", str(run), "--tasks", "2", "--episodes", "2",
                 "--adaptation-steps", "1"]) == 0
    return run


def _variant(source: Path, target: Path, **settings: Any) -> Path:
    """A copy of the run ``source`` at ``target`` whose ``config.yaml`` has ``settings``
    (``{"run.seed": 2}``: dots for nesting)."""
    shutil.copytree(source, target)
    path = target / "config.yaml"
    data = yaml.safe_load(path.read_text())
    for key, value in settings.items():
        *sections, name = key.split(".")
        node = data
        for section in sections:
            node = node[section]
        node[name] = value
    path.write_text(yaml.safe_dump(data))
    return target


def _rows(out: str) -> dict[str, list[str]]:
    lines = [line for line in out.splitlines() if line.startswith("| ")][1:]  # no header
    return {line.split(" | ")[0][2:]: line.split(" | ")[1:] for line in lines}


def test_seeds_pool_and_other_settings_get_labelled_rows(
        evaluated: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lr = load_run_config(evaluated).section.inner_lr  # type: ignore[attr-defined]
    one = _variant(evaluated, tmp_path / "one")
    two = _variant(evaluated, tmp_path / "two", **{"run.seed": 2, "run.iterations": 5,
                                                   "evaluate.num_tasks": 3})
    other = _variant(evaluated, tmp_path / "other", **{"maml-trpo.inner_lr": 0.05})
    capsys.readouterr()
    assert main(["compare", str(one), str(two), str(other),
                 "--output", str(tmp_path / "c.png")]) == 0
    rows = _rows(capsys.readouterr().out)
    assert list(rows) == [f"maml-trpo (inner_lr={json.dumps(lr)})", "maml-trpo (inner_lr=0.05)"]
    assert [row[1] for row in rows.values()] == ["2", "1"]  # runs pooled per row
    # seeds alone: one row, named by the algorithm
    assert main(["compare", str(one), str(two), "--output", str(tmp_path / "c.png")]) == 0
    assert list(_rows(capsys.readouterr().out)) == ["maml-trpo"]


def test_labels_name_the_rows(evaluated: Path, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    runs = [str(_variant(evaluated, tmp_path / name, **{"maml-trpo.inner_lr": lr}))
            for name, lr in (("a", 0.1), ("b", 0.2), ("c", 0.3))]
    output = str(tmp_path / "c.png")
    capsys.readouterr()
    assert main(["compare", *runs, "--label", "small", "--label", "small", "--label", "big",
                 "--output", output]) == 0
    rows = _rows(capsys.readouterr().out)
    assert list(rows) == ["small", "big"] and rows["small"][1] == "2"
    assert main(["compare", *runs, "--x", "env-steps", "--label", "x", "--label", "y",
                 "--label", "z", "--output", output]) == 0
    assert list(_rows(capsys.readouterr().out)) == ["x", "y", "z"]
    assert main(["compare", *runs, "--label", "small", "--output", output]) == 2
    assert "--label" in one_line_error(capsys)


def test_a_sweeps_seeds_pool_by_its_name(evaluated: Path, tmp_path: Path) -> None:
    runs = [_variant(evaluated, tmp_path / f"nav,maml-trpo.inner_lr={lr}-seed{seed}",
                     **{"maml-trpo.inner_lr": lr, "run.seed": seed})
            for lr in (0.1, 0.2) for seed in (1, 2)]
    plain = _variant(evaluated, tmp_path / "plain")
    assert row_labels([*runs, plain], ["maml-trpo"] * 5) == [
        "nav,maml-trpo.inner_lr=0.1"] * 2 + ["nav,maml-trpo.inner_lr=0.2"] * 2 + ["maml-trpo"]


def test_report_rows_follow_the_configs(evaluated: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    runs = [str(_variant(evaluated, tmp_path / name, **settings)) for name, settings in (
        ("a", {"run.seed": 1}), ("b", {"run.seed": 2}),
        ("c", {"policy.hidden_sizes": [16]}))]
    capsys.readouterr()
    assert main(["report", *runs, "--output", str(tmp_path / "r.png")]) == 0
    assert list(_rows(capsys.readouterr().out.split("\n\n")[0])) == [
        "maml-trpo (policy.hidden_sizes=[8])", "maml-trpo (policy.hidden_sizes=[16])"]


def test_settings_of_a_0_1_run_are_in_this_releases_layout() -> None:
    settings = method_settings(RUNS_0_1 / "maml-trpo")
    assert "maml-trpo.tasks_per_iteration" in settings and "maml.meta_batch_size" not in settings
    assert not any(key.startswith(("run.", "evaluate.")) for key in settings)
    assert method_settings(Path("no-such-run")) == {}


def test_facts_are_recorded_and_read_without_the_registry(
        evaluated: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _variant(evaluated, tmp_path / "run")
    (run / FACTS_FILE).unlink(missing_ok=True)
    from_config = read_facts(run)  # a run written before facts.json: through its config
    assert from_config == RunFacts("maml-trpo", "gradient_steps", 8, from_config[3])
    write_facts(run, load_run_config(run), fastadapt.load_algorithm(run))
    assert read_facts(run) == from_config
    # with its facts recorded, a run of an algorithm that is not installed still plots
    (run / "config.yaml").write_text((run / "config.yaml").read_text().replace(
        "algorithm: maml-trpo", "algorithm: not-installed"))
    capsys.readouterr()
    assert main(["plot", str(run)]) == 0
    assert main(["compare", str(run), "--x", "env-steps", "--output",
                 str(tmp_path / "c.png")]) == 0
    (run / FACTS_FILE).write_text('{"algorithm": "maml-trpo"}')
    with pytest.raises(CheckpointError, match="not a valid facts file"):
        read_facts(run)


def test_a_0_1_run_reads_through_its_config() -> None:
    facts = read_facts(RUNS_0_1 / "rl2")
    assert facts.algorithm == "rl2" and facts.adapts_by == "episodes"


def test_labels_must_be_one_per_run() -> None:
    with pytest.raises(ConfigError, match="2 labels for 1 runs"):
        row_labels([Path("a")], ["maml-trpo"], ["x", "y"])


def test_plots_read_files_only() -> None:
    """``plots`` asks no algorithm (their facts are files) and writes through
    :mod:`fastadapt.files`, not the checkpoints' module."""
    wrong = sorted(f"{module} -> {target}" for module, targets in _graph().items()
                   if module.startswith("fastadapt.plots") for target in targets
                   if target.startswith(("fastadapt.algorithms", "fastadapt.run.checkpoint")))
    assert not wrong, wrong
