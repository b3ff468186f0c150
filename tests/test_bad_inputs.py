"""Bad-input sweep: every mistake a user can make gives one clear line, and no run is harmed.

Each CLI case runs ``fastadapt`` on a copy of a finished two-iteration run (``run``) or asks
for a new one (``new``), and checks: exit code 2, one line on stderr naming the cause, ``run``
byte-for-byte unchanged, ``new`` not created; some cases then resume ``run`` to show it still
works. Library cases check the :class:`~fastadapt.errors.FastAdaptError` a caller gets.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
from faulty_envs import FaultyNavigation, faulty_tasks
from tiny_runs import CONFIG, TINY

from fastadapt.algorithms.maml.adapt import expand_to_tasks
from fastadapt.cli import main
from fastadapt.envs import registry
from fastadapt.errors import FastAdaptError
from fastadapt.policies.mlp import GaussianMLPPolicy
from fastadapt.run.checkpoint import load_tensors, save_tensors
from fastadapt.sampling import make_sampler
from fastadapt.sampling.process_sampler import ProcessSampler

Argv = Callable[[Path, Path], list[str]]
Prepare = Callable[[Path, Path], None]


class Case(NamedTuple):
    """A bad input: the command (from ``run`` and a scratch dir), a setup, the message."""

    name: str
    argv: Argv
    expected: str | tuple[str, ...]
    """What the error line must contain (every part of a tuple)."""
    prepare: Prepare | None = None
    resumable_after: bool = False


def _new(*extra: str) -> Argv:
    return lambda run, tmp: ["train", CONFIG, "--run-dir", str(tmp / "new"), *TINY, *extra]


def _resume(*extra: str) -> Argv:
    return lambda run, tmp: ["train", "--resume", str(run), "--quiet", *extra]


def _latest(run: Path, suffix: str) -> Path:
    return sorted((run / "checkpoints").glob(f"iter_*{suffix}"))[-1]


def _truncate_latest(run: Path, tmp: Path) -> None:
    weights = _latest(run, ".safetensors")
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


def _random_latest_weights(run: Path, tmp: Path) -> None:
    weights = _latest(run, ".safetensors")
    weights.write_bytes(np.random.default_rng(0).bytes(weights.stat().st_size))


def _random_all_markers(run: Path, tmp: Path) -> None:
    for marker in (run / "checkpoints").glob("iter_*.json"):
        marker.write_bytes(np.random.default_rng(1).bytes(200))


def _edit_latest_marker(edit: Callable[[dict[str, Any]], None]) -> Prepare:
    def prepare(run: Path, tmp: Path) -> None:
        marker = _latest(run, ".json")
        record = json.loads(marker.read_text())
        edit(record)
        marker.write_text(json.dumps(record))
    return prepare


def _old_format(record: dict[str, Any]) -> None:
    record["env_rng"] = record.pop("sampler")


def _bad_sampler_state(record: dict[str, Any]) -> None:
    record["sampler"] = {"seed": -1, "calls": "many"}


def _write(name: str, text: str) -> Prepare:
    def prepare(run: Path, tmp: Path) -> None:
        (tmp / name).write_text(text)
    return prepare


def _corrupt_policy(run: Path, tmp: Path) -> None:
    (run / "policy.safetensors").write_bytes(b"x")


def _edit_policy(edit: Callable[[Any], Any]) -> Prepare:
    def prepare(run: Path, tmp: Path) -> None:
        tensors, _ = load_tensors(run / "policy.safetensors")
        save_tensors(run / "policy.safetensors", {k: edit(v) for k, v in tensors.items()})
    return prepare


def _half(tensor: Any) -> Any:
    return tensor.half()


def _nan(tensor: Any) -> Any:
    return tensor * float("nan")


def _evaluated_runs_of_two_families(run: Path, tmp: Path) -> None:
    assert main(["evaluate", str(run), "--tasks", "2", "--episodes", "2"]) == 0
    bandit = tmp / "bandit"
    assert main(["train", "maml-trpo/bandit-k5", "--run-dir", str(bandit), "--iterations", "1",
                 *TINY]) == 0
    assert main(["evaluate", str(bandit), "--tasks", "2", "--episodes", "2"]) == 0


def _evaluate(*extra: str) -> Argv:
    return lambda run, tmp: ["evaluate", str(run), *extra]


CASES = [
    Case("unknown key", _new("--set", "run.sampler_kind=process"), "did you mean 'run.sampler'"),
    Case("wrong type", _new("--workers", "two"), "'run.workers' must be an int, got 'two'"),
    Case("workers=0", _new("--workers", "0"), "run.workers must be in [1, 1024], got 0"),
    Case("NaN setting", _new("--set", "maml-trpo.inner_lr=.nan"),
         "config key 'maml-trpo.inner_lr' must be a finite float, got nan"),
    Case("section the algorithm ignores", _new("--set", "rl2.ppo.entropy_coef=0.01"),
         ("config section 'rl2' is read by rl2, not by algorithm 'maml-trpo'",
          "remove it")),
    Case("unknown sampler", _new("--sampler", "threads"),
         "'run.sampler' must be one of 'vector', 'process', 'ray'; got 'threads'"),
    Case("ray address type", _new("--set", "run.ray_address=5"),
         "'run.ray_address' must be a str, got 5 (int)"),
    Case("negative seed", _new("--seed", "-1"), "run.seed must be >= 0, got -1"),
    Case("zero iterations", _new("--iterations", "0"), "run.iterations must be >= 1, got 0"),
    Case("gamma range", _new("--set", "maml-trpo.gamma=1.5"),
         "maml-trpo.gamma must be in (0, 1]"),
    Case("horizon range", _new("--set", "env.horizon=0"), "env.horizon must be >= 1, got 0"),
    Case("list expected", _new("--set", "policy.hidden_sizes=64"),
         "'policy.hidden_sizes' must be a list, got 64 (int)"),
    Case("unknown env", _new("--set", "env.name=TabularMPD"), "did you mean TabularMDP?"),
    Case("unknown env kwarg", _new("--set", "env.name=Bandit", "--set", "env.kwargs.num_armz=3"),
         "do not fit env 'Bandit': got an unexpected keyword argument 'num_armz'"),
    Case("env kwarg range", _new("--set", "env.name=Bandit", "--set", "env.kwargs.num_arms=1"),
         "Bandit num_arms must be >= 2, got 1"),
    Case("missing config", lambda run, tmp: ["train", str(tmp / "nope.yaml")],
         "config not found"),
    Case("config is a directory", lambda run, tmp: ["train", str(tmp)], "cannot read config file"),
    Case("invalid YAML", lambda run, tmp: ["train", str(tmp / "bad.yaml")],
         "invalid YAML in", _write("bad.yaml", "env: [unclosed\n")),
    Case("YAML not a mapping", lambda run, tmp: ["train", str(tmp / "list.yaml")],
         "must hold a mapping at the top level, got list", _write("list.yaml", "- a\n- b\n")),
    Case("run dir is a file",
         lambda run, tmp: ["train", CONFIG, "--run-dir", str(tmp / "afile"), *TINY],
         "cannot create run directory", _write("afile", "not a directory")),
    Case("existing run", lambda run, tmp: ["train", CONFIG, "--run-dir", str(run), *TINY],
         "already holds a run; pass --resume", resumable_after=True),
    Case("resume missing dir", lambda run, tmp: ["train", "--resume", str(tmp / "absent")],
         "does not exist"),
    Case("resume not a run", lambda run, tmp: ["train", "--resume", str(tmp)],
         "is not a run directory (no config.yaml)"),
    Case("truncated checkpoint", _resume(), "sha256 mismatch", _truncate_latest),
    Case("random-byte weights", _resume(), "sha256 mismatch", _random_latest_weights),
    Case("random-byte markers", _resume(), "no loadable checkpoint", _random_all_markers),
    Case("old checkpoint format", _resume(), "written by fastadapt 0.1.0",
         _edit_latest_marker(_old_format)),
    Case("bad sampler state", _resume(), "invalid sampler state",
         _edit_latest_marker(_bad_sampler_state)),
    Case("other architecture", _resume("--set", "policy.hidden_sizes=[16, 16]"),
         "policy.hidden_sizes defines the run", resumable_after=True),
    Case("evaluate corrupt policy", lambda run, tmp: ["evaluate", str(run)],
         "cannot load tensors", _corrupt_policy),
    Case("evaluate workers=0", lambda run, tmp: ["evaluate", str(run), "--workers", "0"],
         "run.workers must be in [1, 1024], got 0"),
    Case("evaluate zero tasks", _evaluate("--tasks", "0"), "tasks must be >= 1, got 0"),
    Case("evaluate negative tasks", _evaluate("--tasks", "-3"), "tasks must be >= 1, got -3"),
    Case("evaluate zero episodes", _evaluate("--episodes", "0"), "episodes must be >= 1, got 0"),
    Case("evaluate negative steps", _evaluate("--adaptation-steps", "-1"),
         "adaptation steps must be >= 0, got -1"),
    Case("evaluate zero eval episodes", _evaluate("--eval-episodes", "0"),
         "eval episodes must be >= 1, got 0"),
    Case("evaluate negative seed", _evaluate("--seed", "-1"), "seed must be >= 0, got -1"),
    Case("evaluate half-precision policy", _evaluate(),
         ("policy.safetensors: parameter ", "is torch.float16, the policy needs torch.float32"),
         _edit_policy(_half)),
    Case("evaluate NaN policy", _evaluate(), "holds NaN or inf values", _edit_policy(_nan)),
    Case("plot not a run", lambda run, tmp: ["plot", str(tmp)], "has no metrics.jsonl to plot"),
    Case("compare unevaluated run", lambda run, tmp: ["compare", str(run), "--output",
                                                      str(tmp / "c.png")],
         "has no evaluation.json: run `fastadapt evaluate"),
    Case("compare two families",
         lambda run, tmp: ["compare", str(run), str(tmp / "bandit"), "--output",
                           str(tmp / "c.png")],
         ("compare needs runs of one task family, got ", "(Navigation2D)", "(Bandit)"),
         _evaluated_runs_of_two_families),
    Case("evaluate unknown sampler",
         lambda run, tmp: ["evaluate", str(run), "--sampler", "threads"],
         "'run.sampler' must be one of 'vector', 'process', 'ray'; got 'threads'"),
    Case("worker raises",
         _new("--set", "env.name=FaultyNavigation", "--set", "env.kwargs.fail_at_step=2",
              "--sampler", "process", "--workers", "2"),
         ("sampler worker ", " failed while sampling tasks ",
          "of sample call 0: RuntimeError: simulator exploded at step 2")),
]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("base") / "run"
    assert main(["train", CONFIG, "--run-dir", str(run), "--iterations", "2", *TINY]) == 0
    return run


@pytest.fixture(autouse=True)
def _faulty_family(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.FAMILIES.targets, "FaultyNavigation", FaultyNavigation)


def _snapshot(directory: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("fastadapt: error: ") and len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_cli_input_is_one_clear_line_and_harms_no_run(
    case: Case, finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, scratch = tmp_path / "run", tmp_path / "scratch"
    shutil.copytree(finished_run, run)
    scratch.mkdir()
    if case.prepare is not None:
        case.prepare(run, scratch)
    before = _snapshot(run)
    assert main(case.argv(run, scratch)) == 2
    line = _one_line(capsys)
    expected = (case.expected,) if isinstance(case.expected, str) else case.expected
    assert all(part in line for part in expected), line
    assert _snapshot(run) == before, "the run directory changed"
    if case.name != "worker raises":
        assert not (scratch / "new").exists(), "a run directory was created"
    if case.resumable_after:
        assert main(["train", "--resume", str(run), "--iterations", "3", "--quiet"]) == 0


def test_nan_rewards_stop_the_run_and_keep_finite_parameters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    argv = ["train", CONFIG, "--run-dir", str(run), "--iterations", "5", *TINY,
            "--set", "env.name=FaultyNavigation", "--set", "env.kwargs.nan_rewards=true"]
    assert main(argv) == 2
    assert "NaN/inf for 3 consecutive iterations" in _one_line(capsys)
    tensors, _ = load_tensors(_latest(run, ".safetensors"))
    assert all(np.isfinite(t.numpy()).all() for t in tensors.values())


# --- library callers -------------------------------------------------------------------------


def _policy() -> GaussianMLPPolicy:
    return GaussianMLPPolicy(2, 2, (8,))


def _killed_worker() -> None:
    family, policy = FaultyNavigation(), _policy()
    tasks = faulty_tasks(2, step_seconds=0.5)
    params = expand_to_tasks({n: p.detach() for n, p in policy.named_parameters()}, 2)
    with ProcessSampler(family, policy, 10, seed=0, workers=1, max_restarts=0) as sampler:
        threading.Timer(0.3, os.kill, (sampler.worker_pids()[0], signal.SIGKILL)).start()
        sampler.sample(params, tasks, 1)


def _ray_missing() -> None:
    saved = sys.modules.get("ray")
    sys.modules["ray"] = None  # type: ignore[assignment]  # makes ``import ray`` fail
    try:
        make_sampler("ray", FaultyNavigation(), _policy(), 10, 0, workers=1)
    finally:
        if saved is None:
            sys.modules.pop("ray", None)
        else:
            sys.modules["ray"] = saved


LIBRARY_CASES: list[tuple[str, Callable[[], object], str]] = [
    ("killed worker", _killed_worker,
     r"sampler worker 0 \(pid \d+\) died while sampling tasks 0-1 of sample call 0: killed by "
     r"SIGKILL"),
    ("unknown sampler kind", lambda: make_sampler("threads", FaultyNavigation(), _policy(), 10, 0),
     r"unknown sampler 'threads'; choose one of vector, process, ray"),
    ("workers=0", lambda: make_sampler("process", FaultyNavigation(), _policy(), 10, 0, 0),
     r"sampler workers must be >= 1, got 0"),
    ("negative sampler seed", lambda: make_sampler("vector", FaultyNavigation(), _policy(), 10, -3),
     r"sampler seed must be >= 0, got -3"),
    ("Ray not installed", _ray_missing, r"needs Ray: pip install 'fastadapt\[ray\]'"),
]


@pytest.mark.parametrize(("name", "call", "pattern"), LIBRARY_CASES,
                         ids=[c[0] for c in LIBRARY_CASES])
def test_bad_library_input_raises_a_clear_fastadapt_error(
    name: str, call: Callable[[], object], pattern: str
) -> None:
    with pytest.raises(FastAdaptError, match=pattern) as info:
        call()
    assert len(str(info.value).splitlines()) == 1
