"""Run directories written by fastadapt 0.1.0 (``tests/data/runs-0.1.0``, made by its
``record.py``) still evaluate, plot and resume with this release: the evaluation and the
resumed parameters equal 0.1.0's own, bit for bit; an RL² checkpoint of 0.1.0 (other random
streams) is refused on resume with one line naming the version, changing nothing. A run or
config of a newer format is refused with one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from test_golden import fingerprint

from fastadapt.cli import main
from fastadapt.run.checkpoint import load_tensors

FIXTURES = Path(__file__).parent / "data" / "runs-0.1.0"
GOLDEN = Path(__file__).parent / "data" / "golden"
SAME_MACHINE = json.loads((GOLDEN / "maml-trpo__2d-navigation.json").read_text())[
    "fingerprint"] == fingerprint()
EVALUATE = ["--tasks", "2", "--episodes", "2", "--adaptation-steps", "1"]


def _copy(name: str, tmp_path: Path) -> Path:
    run = tmp_path / name
    shutil.copytree(FIXTURES / name, run)
    return run


def _snapshot(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("name", ["maml-trpo", "meta-sgd", "finetune"])
def test_a_0_1_run_evaluates_and_resumes_as_0_1_did(tmp_path: Path, name: str) -> None:
    run = _copy(name, tmp_path)
    expected = json.loads((run / "evaluation.json").read_text())
    assert main(["evaluate", str(run), *EVALUATE]) == 0
    got = json.loads((run / "evaluation.json").read_text())
    assert got["adapts_by"] == "gradient_steps"
    if SAME_MACHINE:
        assert got["per_task_returns"] == expected["per_task_returns"]
    else:
        assert got["per_task_returns"] == pytest.approx(expected["per_task_returns"], rel=1e-4)
    assert main(["plot", str(run)]) == 0
    assert main(["train", "--resume", str(run), "--iterations", "3", "--quiet"]) == 0
    straight, _ = load_tensors(FIXTURES / f"{name}.straight3.safetensors")
    resumed, _ = load_tensors(run / "policy.safetensors")
    assert set(resumed) == set(straight)  # Meta-SGD: its learned rates too
    for key, value in straight.items():
        if SAME_MACHINE:
            assert torch.equal(resumed[key], value), key
        else:
            torch.testing.assert_close(resumed[key], value, rtol=1e-4, atol=1e-6)
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["format"] == 2 and "maml" not in config and "rl2" not in config
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["iteration"] for line in lines] == [1, 2, 3]


def test_a_0_1_rl2_run_evaluates_but_refuses_to_resume(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    run = _copy("rl2", tmp_path)
    assert main(["evaluate", str(run), *EVALUATE]) == 0
    assert json.loads((run / "evaluation.json").read_text())["adapts_by"] == "episodes"
    before = _snapshot(run)
    assert main(["train", "--resume", str(run), "--iterations", "3", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "was written by fastadapt 0.1.0 or earlier" in err
    assert f"run.init_from={run}" in err
    assert _snapshot(run) == before


def test_a_0_1_rl2_run_warm_starts_a_new_run(tmp_path: Path) -> None:
    """What the refusal suggests: a new run from the old run's parameters."""
    new = tmp_path / "new"
    assert main(["train", "rl2/bandit-k5", "--run-dir", str(new), "--iterations", "1",
                 "--quiet", f"--set=run.init_from={FIXTURES / 'rl2'}", "--set=rl2.hidden_size=8",
                 "--set=rl2.tasks_per_iteration=2", "--set=rl2.trials_per_task=2",
                 "--set=rl2.ppo.minibatches=1", "--set=run.tensorboard=false"]) == 0


def test_a_newer_format_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _copy("maml-trpo", tmp_path)
    config = yaml.safe_load((run / "config.yaml").read_text())
    (run / "config.yaml").write_text(yaml.safe_dump({**config, "format": 3}))
    assert main(["evaluate", str(run)]) == 2
    err = capsys.readouterr().err
    assert "this config has format 3, written by a newer fastadapt; this one reads format 2" in err
