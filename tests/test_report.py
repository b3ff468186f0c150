"""``fastadapt report``: rliable's aggregates over seeds against hand computations, grouping of
runs, the figure and the table, and its bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_errors import one_line_error

from fastadapt.cli import main
from fastadapt.errors import CheckpointError, ConfigError
from fastadapt.evaluation.aggregate import (
    aggregate,
    group_label,
    load_scores,
    probability_of_improvement,
    report_table,
)


def _fake_run(path: Path, algorithm: str, final: list[float], env: str = "Navigation2D"
              ) -> Path:
    """A run directory holding only an ``evaluation.json`` whose per-task returns end in
    ``final`` (one score per held-out task)."""
    path.mkdir(parents=True)
    per_task = [[score - 10.0, score] for score in final]
    (path / "evaluation.json").write_text(json.dumps({
        "algorithm": algorithm, "env": env, "num_tasks": len(final), "adaptation_steps": 1,
        "per_task_returns": per_task,
        "returns_mean": np.mean(per_task, axis=0).tolist(),
        "returns_ci95": [0.0, 0.0]}))
    return path


def test_group_label_pools_a_sweeps_seeds_and_else_the_algorithm() -> None:
    assert group_label(Path("r/maml-trpo-2d-navigation-seed3"), "maml-trpo") == \
        "maml-trpo-2d-navigation"
    assert group_label(Path("r/rl2-bandit,rl2.ppo.lr=0.001-seed12"), "rl2") == \
        "rl2-bandit,rl2.ppo.lr=0.001"
    assert group_label(Path("runs/my-run"), "rl2") == "rl2"


def test_aggregates_match_hand_computations(tmp_path: Path) -> None:
    # 4 seeds x 2 tasks per algorithm: A's scores 1..8, B's all 0.
    a = [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]]
    runs = [_fake_run(tmp_path / f"a-seed{i + 1}", "maml-trpo", row) for i, row in enumerate(a)]
    runs += [_fake_run(tmp_path / f"b-seed{i + 1}", "rl2", [0.0, 0.0]) for i in range(4)]
    groups = load_scores(runs)
    assert [g.algorithm for g in groups] == ["a", "b"]
    assert groups[0].scores.shape == (4, 2) and np.array_equal(groups[0].scores, a)
    result = aggregate(groups, reps=200)
    # mean 4.5; median of 1..8 is 4.5; IQM drops the lowest and highest quarter: mean(3..6)
    assert result.estimates["a"] == pytest.approx({"mean": 4.5, "median": 4.5, "iqm": 4.5})
    assert result.estimates["b"] == pytest.approx({"mean": 0.0, "median": 0.0, "iqm": 0.0})
    low, high = result.intervals["a"]["mean"]
    assert 1.0 <= low < 4.5 < high <= 8.0
    assert result.intervals["b"]["iqm"] == pytest.approx((0.0, 0.0))
    # every A score beats every B score: P(A > B) = 1 whatever the resample
    assert result.improvement["a > b"] == pytest.approx((1.0, 1.0, 1.0))
    table = report_table(groups, result)
    assert "| a | Navigation2D | 4 | 2 | 4.50 [" in table
    assert "| a > b | 1.00 [1.00, 1.00] |" in table


def test_probability_of_improvement_of_equal_scores_is_one_half(tmp_path: Path) -> None:
    runs = [_fake_run(tmp_path / f"x{i}", "maml-trpo", [float(i), 2.0 * i]) for i in range(3)]
    runs += [_fake_run(tmp_path / f"y{i}", "maml-vpg", [float(i), 2.0 * i]) for i in range(3)]
    result = aggregate(load_scores(runs), reps=100)
    assert result.improvement["maml-trpo > maml-vpg"][0] == pytest.approx(0.5)


def test_report_command_prints_the_table_and_writes_the_figure(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    runs = [str(_fake_run(tmp_path / f"{name}-seed{s}", name, list(rng.normal(mu, 1.0, 5))))
            for name, mu in (("maml-trpo", -10.0), ("rl2", -8.0)) for s in range(1, 6)]
    output = tmp_path / "report.png"
    assert main(["report", *runs, "--output", str(output)]) == 0
    out = capsys.readouterr().out
    assert "| maml-trpo | Navigation2D | 5 | 5 |" in out and "| rl2 | Navigation2D | 5 | 5 |" in out
    assert "| maml-trpo > rl2 |" in out
    assert output.stat().st_size > 10_000
    # --point 0: the scores before adaptation (each run's final score - 10)
    assert main(["report", *runs, "--output", str(output), "--point", "0"]) == 0
    table = capsys.readouterr().out
    # --total: the sum over the curve (2 * final - 10 per task)
    assert main(["report", *runs, "--output", str(output), "--total"]) == 0
    totals = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| rl2 |")]
    rl2_final = np.mean([np.array(json.loads((Path(r) / "evaluation.json").read_text())
                                  ["per_task_returns"])[:, -1] for r in runs[5:]])
    assert float(totals[0].split("|")[5].split()[0]) == pytest.approx(2 * rl2_final - 10,
                                                                      abs=0.01)
    assert main(["report", *runs, "--output", str(output), "--point", "2"]) == 2
    assert "--point 2" in one_line_error(capsys)
    means = [float(line.split("|")[5].split()[0]) for line in table.splitlines()
             if line.startswith("| maml-trpo |") or line.startswith("| rl2 |")]
    finals = [np.mean([json.loads((Path(r) / "evaluation.json").read_text())
                       ["per_task_returns"]]) for r in runs]
    assert means == pytest.approx([np.mean(finals[:5]) - 5.0, np.mean(finals[5:]) - 5.0],
                                  abs=0.01)


def test_report_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                      ) -> None:
    nav = _fake_run(tmp_path / "nav", "maml-trpo", [1.0, 2.0])
    bandit = _fake_run(tmp_path / "bandit", "rl2", [1.0, 2.0], env="Bandit")
    never = tmp_path / "never"
    never.mkdir()
    assert main(["report", str(nav), str(never)]) == 2
    err = one_line_error(capsys)
    assert "not evaluated" in err and str(never) in err and "fastadapt evaluate" in err
    assert main(["report", str(nav), str(bandit)]) == 2
    err = one_line_error(capsys)
    assert "one task family" in err and str(nav) in err and str(bandit) in err
    with pytest.raises(ConfigError, match="same held-out tasks"):
        load_scores([nav, _fake_run(tmp_path / "three", "rl2", [1.0, 2.0, 3.0])])
    with pytest.raises(CheckpointError):
        load_scores([never])
    assert not (tmp_path / "report.png").exists()


def test_probability_of_improvement_equals_rliables() -> None:
    from rliable import metrics

    rng = np.random.default_rng(3)
    x = rng.normal(size=(5, 7))
    y = np.round(rng.normal(0.3, 1.0, size=(4, 7)), 1)
    y[0, :3] = x[0, :3]  # ties
    assert probability_of_improvement(x, y) == pytest.approx(
        metrics.probability_of_improvement(x, y), abs=1e-12)
    assert probability_of_improvement(x, x) == pytest.approx(0.5)
    assert probability_of_improvement(x + 100.0, x) == 1.0
