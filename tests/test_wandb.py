"""The optional W&B sink (``run.wandb``), in W&B's offline mode: what a run mirrors, that a
resumed run continues the same W&B run, and its failures (missing package, a refused start, a
failing log call mid-run)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from cli_errors import one_line_error

from fastadapt.cli import main
from fastadapt.run.wandb_sink import wandb_run_id

CONFIG = "maml-trpo/2d-navigation"
TINY = ["--set", "maml-trpo.tasks_per_iteration=2", "--set", "maml-trpo.episodes_per_task=2",
        "--set", "env.horizon=5", "--set", "policy.hidden_sizes=[8]",
        "--set", "run.tensorboard=false", "--set", "run.checkpoint_every=1", "--quiet"]


@pytest.fixture()
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))


def _train(run: Path, *extra: str) -> int:
    return main(["train", CONFIG, "--run-dir", str(run), *TINY,
                 "--set", "run.wandb=fastadapt-tests", *extra])


def test_wandb_run_id_is_stable_and_tells_directories_apart(tmp_path: Path) -> None:
    run = tmp_path / "a" / "run-seed1"
    assert wandb_run_id(run) == wandb_run_id(tmp_path / "a" / ".." / "a" / "run-seed1")
    assert wandb_run_id(run) != wandb_run_id(tmp_path / "b" / "run-seed1")
    assert wandb_run_id(run).startswith("run-seed1-")


@pytest.mark.usefixtures("offline")
def test_offline_run_mirrors_the_records_and_resume_continues_it(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert _train(run, "--iterations", "1") == 0
    run_id = wandb_run_id(run)
    (first,) = (run / "wandb").glob(f"offline-run-*-{run_id}")
    data = (first / f"run-{run_id}.wandb").read_bytes()
    for key in (b"return_after", b"env_steps", b"kl", b"fastadapt-tests", b"maml-trpo"):
        assert key in data, key
    assert main(["train", "--resume", str(run), "--iterations", "2", "--quiet"]) == 0
    runs = sorted((run / "wandb").glob(f"offline-run-*-{run_id}"))
    assert len(runs) in (1, 2)  # a second offline directory, or the same within one second
    assert all((r / f"run-{run_id}.wandb").is_file() for r in runs)
    assert (run / "policy.safetensors").is_file()


def test_missing_wandb_is_one_line_before_the_run_directory_is_made(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)
    run = tmp_path / "run"
    assert _train(run, "--iterations", "1") == 2
    assert "pip install 'fastadapt[wandb]'" in one_line_error(capsys)
    assert not run.exists()
    assert main(["train", CONFIG, "--run-dir", str(run), *TINY, "--set", "run.wandb=''"]) == 2
    assert "run.wandb" in one_line_error(capsys)


@pytest.mark.usefixtures("offline")
def test_refused_start_is_one_line_and_a_failing_log_only_warns(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import wandb

    def refuse(**_: object) -> None:
        raise RuntimeError("api_key not configured (no-tty)\ncall wandb.login()")

    with monkeypatch.context() as patch:
        patch.setattr(wandb, "init", refuse)
        assert _train(tmp_path / "refused", "--iterations", "1") == 2
    err = one_line_error(capsys)
    assert "W&B could not start the run (run.wandb: fastadapt-tests): api_key not configured" \
        in err and "WANDB_MODE=offline" in err

    real_init = wandb.init

    class Failing:
        def __init__(self, **kwargs: object) -> None:
            self.run = real_init(**kwargs)

        def log(self, *_: object, **__: object) -> None:
            raise ConnectionError("network down")

        def finish(self) -> None:
            self.run.finish()

    monkeypatch.setattr(wandb, "init", Failing)
    run = tmp_path / "run"
    with pytest.warns(RuntimeWarning, match="W&B stopped mirroring the metrics"):
        assert _train(run, "--iterations", "2") == 0
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
