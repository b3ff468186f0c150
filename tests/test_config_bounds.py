"""Config input is bounded: an alias bomb, deep nesting, integers beyond 64 bits, duplicate keys
and sizes that cannot fit in memory are one line within seconds, before any run directory is
made; the values a message quotes are shortened."""

from __future__ import annotations

import time
from itertools import pairwise
from pathlib import Path

import pytest
from cli_errors import one_line_error
from tiny_runs import CONFIG, TINY

from fastadapt.algorithms import memory
from fastadapt.cli import main
from fastadapt.errors import ConfigError
from fastadapt.quoting import shorten
from fastadapt.run.yaml_config import apply_overrides, read_mapping
from fastadapt.run.yaml_loader import MAX_DEPTH, MAX_NODES

GIB = 2**30
SECONDS = 15.0
"""Each refusal takes well under a second here; the bound leaves room for a loaded machine."""

BOMB = "\n".join(
    ["algorithm: maml-trpo", "env:", "  kwargs:", '    a: &a ["x", "x", "x", "x", "x", "x"]']
    + [f"    {b}: &{b} [{', '.join([f'*{a}'] * 9)}]" for a, b in pairwise("abcdefghi")]
) + "\n"
"""A few hundred bytes whose aliases expand to 6 * 9^8 (2.6e8) values in ``env.kwargs``."""


@pytest.fixture(autouse=True)
def _machine_of_24_gib(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same machine for every test, whatever runs them."""
    monkeypatch.setattr(memory, "physical_memory", lambda: 24 * GIB)


def _refused_train(tmp_path: Path, capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """``fastadapt train CONFIG ... *argv[1:]`` (after the tiny settings) refused with one line
    within seconds and no run directory made."""
    run_dir = tmp_path / "new"
    start = time.monotonic()
    assert main(["train", argv[0], "--run-dir", str(run_dir), *TINY, *argv[1:]]) == 2
    assert time.monotonic() - start < SECONDS
    assert not run_dir.exists(), "a run directory was made"
    return one_line_error(capsys)


def _config_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


# --------------------------------------------------------------------------- YAML documents


def test_an_alias_bomb_is_refused_without_expanding_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert len(BOMB) < 600
    line = _refused_train(tmp_path, capsys, _config_file(tmp_path, BOMB))
    assert f"more than {MAX_NODES} values once its aliases are expanded" in line
    assert "config.yaml" in line and "remove the aliases" in line


def test_deep_nesting_is_refused_not_a_recursion_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    deep = "algorithm: maml-trpo\nenv:\n  kwargs:\n    x: " + "[" * 50_000 + "]" * 50_000
    line = _refused_train(tmp_path, capsys, _config_file(tmp_path, deep + "\n"))
    assert f"nested deeper than {MAX_DEPTH} levels (line 4)" in line
    line = _refused_train(tmp_path, capsys, CONFIG, "--set", "env.kwargs.x=" + "[" * 5000)
    assert f"nested deeper than {MAX_DEPTH} levels" in line and len(line) < 300


def test_nesting_by_aliases_and_recursive_aliases_are_refused(tmp_path: Path) -> None:
    levels = 60  # each alone is fine; one inside the other is 120 levels
    nested = "[" * levels + "1" + "]" * levels
    (tmp_path / "a.yaml").write_text(f"a: &a {nested}\nb: {'[' * levels}*a{']' * levels}\n")
    with pytest.raises(ConfigError, match=f"deeper than {MAX_DEPTH} levels once its aliases"):
        read_mapping(tmp_path / "a.yaml")
    with pytest.raises(ConfigError, match="recursive alias, line 1"):
        apply_overrides({}, ["env.kwargs.x=&a [1, *a]"])
    with pytest.raises(ConfigError, match=f"at most {MAX_DEPTH}"):
        apply_overrides({}, ["env" + ".x" * 1000 + "=1"])


def test_a_duplicate_key_names_the_key_and_both_lines(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = "algorithm: maml-trpo\nrun:\n  seed: 1\n  iterations: 2\n  seed: 2\n"
    line = _refused_train(tmp_path, capsys, _config_file(tmp_path, text))
    assert line.endswith("config.yaml: duplicate key 'seed' (lines 3 and 5): keep one"), line
    line = _refused_train(tmp_path, capsys, CONFIG, "--set", "env.kwargs={a: 1, a: 2}")
    assert "duplicate key 'a' (twice on line 1)" in line


def test_a_merge_key_may_still_be_overridden(tmp_path: Path) -> None:
    path = tmp_path / "merge.yaml"
    path.write_text("base: &base {seed: 1, iterations: 2}\nrun:\n  <<: *base\n  seed: 3\n")
    assert read_mapping(path)["run"] == {"seed": 3, "iterations": 2}


# --------------------------------------------------------------------------- numbers


@pytest.mark.parametrize(("override", "key"), [
    ("run.seed=99999999999999999999999", "run.seed"),
    ("run.iterations=-9223372036854775809", "run.iterations"),
    (f"maml-trpo.inner_lr={10**400}", "maml-trpo.inner_lr"),
    ("env.kwargs={goals: [1, 18446744073709551616]}", "env.kwargs.goals[1]"),
])
def test_integers_beyond_64_bits_name_the_key(
        override: str, key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = _refused_train(tmp_path, capsys, CONFIG, "--set", override)
    assert f"config key '{key}' must be an integer of 64 bits" in line, line
    assert len(line) < 250


def test_an_integer_of_thousands_of_digits_is_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = "algorithm: maml-trpo\nrun:\n  seed: " + "7" * 5000 + "\n"
    line = _refused_train(tmp_path, capsys, _config_file(tmp_path, text))
    assert "(line 3) has 5000 digits; a config key takes at most 19" in line
    assert len(line) < 250


# --------------------------------------------------------------------------- messages


def test_messages_shorten_the_values_they_quote(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    huge = "[" + ", ".join(["1"] * 20_000) + "]"
    line = _refused_train(tmp_path, capsys, CONFIG, "--set", f"policy.activation={huge}")
    assert "config key 'policy.activation' must be one of 'tanh', 'relu'; got [1, 1," in line
    assert len(line) < 250
    line = _refused_train(tmp_path, capsys, CONFIG, "--set", "policy." + "k" * 10_000 + "=1")
    assert "unknown config key 'policy.kkk" in line and len(line) < 250
    line = _refused_train(tmp_path, capsys, CONFIG, "--set", f"policy.hidden_sizes=[-1, {huge}]")
    assert len(line) < 250


def test_shorten_is_bounded_whatever_the_value() -> None:
    assert shorten([100000, 100000]) == "[100000, 100000]"
    assert shorten(list(range(10**6))) == "[0, 1, 2, 3, 4, 5, 6, 7, ...]"
    assert shorten(10**5000) == "<an integer of about 5001 digits>"
    assert len(shorten("x" * 10**6)) == 60


# --------------------------------------------------------------------------- memory


def test_a_policy_too_big_for_memory_is_refused_before_it_is_allocated(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = _refused_train(tmp_path, capsys, CONFIG, "--set", "policy.hidden_sizes=[100000,100000]")
    assert line == (
        "fastadapt: error: policy.hidden_sizes [100000, 100000] make a network of 1.0e+10 "
        "parameters: about 112 GiB with its gradients and optimizer state, more than this "
        "machine's 24 GiB of memory: use smaller layers")


@pytest.mark.parametrize(("override", "expected"), [
    ("maml-trpo.tasks_per_iteration=1000000000",
     "training holds 1000000000 tasks at once (maml-trpo.tasks_per_iteration) x 4 "
     "episodes x 8 steps: about"),
    ("env.horizon=1000000000", "3 tasks at once (maml-trpo.tasks_per_iteration) x 4 episodes "
                              "x 1000000000 steps: about"),
    ("maml-trpo.tasks_per_iteration=1e9", "must be an int, got 1000000000.0 (float)"),
])
def test_an_iteration_too_big_for_memory_is_refused(
        override: str, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _refused_train(tmp_path, capsys, CONFIG, "--set", override)
    assert expected in line, line


@pytest.mark.parametrize(("config", "override", "expected"), [
    ("rl2/2d-navigation", "rl2.hidden_size=100000",
     "rl2.hidden_size [100000, 100000] make a network of 1.0e+10 parameters"),
    ("pearl/sparse-point-robot", "pearl.hidden_sizes=[100000, 100000]",
     "pearl.hidden_sizes [100000, 100000] make a network of 1.0e+10 parameters"),
    ("pearl/sparse-point-robot", "pearl.train_tasks=1000000000",
     "training holds 1000000000 tasks at once (pearl.train_tasks)"),
])
def test_each_algorithms_own_sizes_are_checked(
        config: str, override: str, expected: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "new"
    assert main(["train", config, "--run-dir", str(run_dir), "--set", override]) == 2
    assert expected in one_line_error(capsys)
    assert not run_dir.exists()


def test_a_run_that_fits_passes_and_the_machine_is_measured(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.undo()
    limit = memory.physical_memory()
    assert limit is None or limit > 2**26
    monkeypatch.setattr(memory, "physical_memory", lambda: GIB)
    run = tmp_path / "run"
    assert main(["train", CONFIG, "--run-dir", str(run), "--iterations", "1", *TINY]) == 0


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("bounds") / "run"
    assert main(["train", CONFIG, "--run-dir", str(run), "--iterations", "1", *TINY]) == 0
    return run


@pytest.mark.parametrize(("tasks", "expected"), [
    ("1000000000", "the meta-test holds 1000000000 held-out tasks (evaluate --tasks or "
                   "evaluate.num_tasks) x 80 episodes x 8 steps: about 20 TiB, more than this "
                   "machine's 24 GiB of memory: evaluate on fewer tasks or episodes"),
    (str(2**70), "tasks must be <= 9223372036854775807 (64 bits), got 1180591620717411303424"),
])
def test_evaluate_on_too_many_tasks_is_refused_before_they_are_drawn(
        tasks: str, expected: str, finished_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = {p: p.read_bytes() for p in finished_run.rglob("*") if p.is_file()}
    start = time.monotonic()
    assert main(["evaluate", str(finished_run), "--tasks", tasks]) == 2
    assert time.monotonic() - start < SECONDS
    assert one_line_error(capsys) == f"fastadapt: error: {expected}"
    assert {p: p.read_bytes() for p in finished_run.rglob("*") if p.is_file()} == before
