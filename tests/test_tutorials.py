"""The tutorials (``docs/tutorials/*.md``) run as they are written, with tiny budgets.

A page's code blocks are taken by mktestdocs: its ``python`` blocks run in order in one
namespace (``check_md_file(page, memory=True)``), its ``bash`` blocks in order in one
``bash -euo pipefail`` shell, both in a temporary directory. A page is a walk-through in one of
the two, never both, so the order is the page's. The budgets reach the blocks as environment
variables that the pages show with their real defaults (``${ITERATIONS:-50}``,
``os.environ.get("ITERATIONS", "50")``). Blocks of other languages are not run: ``shell``
blocks (commands for other machines, or needing files of the reader's own) say so on the page;
``yaml`` blocks are configs, each loaded with :func:`fastadapt.load_config` once the page's
Python has registered what they name. The Ray page runs against a one-machine cluster started
here, a head node of 2 CPUs in its own temporary directory and on its own ports, which is
stopped at the end (never ``ray stop``: it would stop every Ray instance of the machine).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path

import pytest
from mktestdocs import check_md_file, grab_code_blocks

import fastadapt
from fastadapt.algorithms import registry as algorithm_registry
from fastadapt.envs import registry as family_registry

TUTORIALS = Path(__file__).resolve().parents[1] / "docs" / "tutorials"
BIN = Path(sys.executable).parent
"""Where this interpreter's ``fastadapt`` and ``ray`` commands are."""

_TINY = {"ITERATIONS": "1", "META_BATCH": "2", "EPISODES": "2", "TASKS": "2"}
BUDGETS: dict[str, dict[str, str]] = {
    "family": _TINY,
    "algorithm": {**_TINY, "HORIZON": "10"},
    "reproduce": {**_TINY, "HORIZON": "10", "SEEDS": "2"},
    "ray": {**_TINY, "HORIZON": "10", "SEEDS": "2", "WORKERS": "2"},
    "agent-loop": {**_TINY, "HORIZON": "10", "RUN": "runs/cheetah-vel", "MW_RUN": "runs/reach",
                   "MW_HORIZON": "10", "EVALS": "1"},
}
"""Each page's budget variables in CI; every variable a page reads is set here."""
REQUIRES = {"reproduce": ("ray", "rliable"), "ray": ("ray", "rliable"),
            "agent-loop": ("metaworld",)}
"""Extras a page's commands need (``fastadapt[tune,report]``, ``fastadapt[ray]``,
``fastadapt[metaworld]``)."""

SHELL_SECONDS = 300
"""Longest a page's shell blocks may take (generous: the machine may be shared)."""
HEAD_START_SECONDS = 120


_BUDGET_VARIABLE = re.compile(r'\$\{(\w+):-|os\.environ\.get\("(\w+)"')
"""A budget variable with its default, as the pages write it in bash or in Python."""


def _blocks(page: Path, language: str) -> list[str]:
    return list(grab_code_blocks(page.read_text(encoding="utf-8"), lang=language))


def _budget_variables(code: str) -> set[str]:
    return {bash or python for bash, python in _BUDGET_VARIABLE.findall(code)}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _run_shell(blocks: list[str], cwd: Path, env: dict[str, str]) -> None:
    """The blocks in order in one ``bash -euo pipefail``; its whole process group is killed
    if it runs past :data:`SHELL_SECONDS`."""
    with subprocess.Popen(["bash", "-euo", "pipefail", "-c", "\n".join(blocks)], cwd=cwd,
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          start_new_session=True) as shell:
        try:
            output, _ = shell.communicate(timeout=SHELL_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(shell.pid, signal.SIGKILL)
            output, _ = shell.communicate()
            pytest.fail(f"the shell blocks ran past {SHELL_SECONDS} s:\n{output[-6000:]}")
    assert shell.returncode == 0, f"the shell blocks failed:\n{output[-6000:]}"


def _reports_a_node(env: dict[str, str]) -> bool:
    """Whether ``ray status`` lists an active node yet (the page's first command shows it)."""
    try:
        status = subprocess.run([str(BIN / "ray"), "status"], env=env, capture_output=True,
                                text=True, check=False, timeout=30)
    except subprocess.TimeoutExpired:
        return False
    return status.returncode == 0 and "Active:" in status.stdout


@contextlib.contextmanager
def _one_machine_cluster(log: Path) -> Iterator[dict[str, str]]:
    """A Ray head node of 2 CPUs with token authentication, on free ports and in its own
    temporary directory; yields the environment that joins it (``run.ray_address=auto``
    resolves to ``RAY_ADDRESS``), once ``ray status`` lists the node. Terminating ``ray start
    --block`` stops its processes."""
    port = _free_port()
    token = secrets.token_hex(16)
    joining = {"RAY_ADDRESS": f"127.0.0.1:{port}", "RAY_AUTH_MODE": "token",
               "RAY_AUTH_TOKEN": token}
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
    # A short path: Ray's AF_UNIX sockets live under it (about 100 bytes at most).
    temp_dir = tempfile.mkdtemp(prefix="fa-tutorial-", dir="/tmp")
    command = [str(BIN / "ray"), "start", "--head", "--block", f"--port={port}",
               f"--temp-dir={temp_dir}", "--num-cpus=2", "--include-dashboard=false",
               f"--ray-client-server-port={_free_port()}", f"--dashboard-port={_free_port()}",
               "--disable-usage-stats"]
    with log.open("w") as output:
        head = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + HEAD_START_SECONDS
        while not ("Ray runtime started" in log.read_text(errors="replace")
                   and _reports_a_node({**env, **joining})):
            if head.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the Ray head node did not start:\n{log.read_text()[-4000:]}")
            time.sleep(1.0)
        yield joining
    finally:
        head.terminate()
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:  # then its processes (raylet, GCS) go too
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture()
def registries(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a page registers (a family, an algorithm) is forgotten after the test."""
    for names in (family_registry.FAMILIES, algorithm_registry.ALGORITHMS):
        monkeypatch.setattr(names, "targets", dict(names.targets))
        monkeypatch.setattr(names, "sources", dict(names.sources))


@pytest.mark.usefixtures("registries")
@pytest.mark.parametrize("name", sorted(BUDGETS))
def test_tutorial_runs_as_written(name: str, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    page = TUTORIALS / f"{name}.md"
    python, shell = _blocks(page, "python"), _blocks(page, "bash")
    assert python or shell, f"{page} has no python or bash block: nothing of it would run"
    assert not (python and shell), f"{page} mixes python and bash blocks: which runs first?"
    unset = _budget_variables("\n".join(python + shell)) - set(BUDGETS[name])
    assert not unset, f"{page} reads {sorted(unset)}: give them tiny values in BUDGETS"
    missing = [module for module in REQUIRES.get(name, ()) if find_spec(module) is None]
    if missing:
        pytest.skip(f"{page.name} needs {', '.join(missing)}: pip install "
                    "'fastadapt[ray,tune,report]'")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # no page may join another Ray by chance
    for key, value in BUDGETS[name].items():
        monkeypatch.setenv(key, value)
    if python:
        check_md_file(page, memory=True)
    if shell:
        env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
        with contextlib.ExitStack() as stack:
            if name == "ray":
                env.update(stack.enter_context(_one_machine_cluster(tmp_path / "ray-head.log")))
            _run_shell(shell, tmp_path, env)
    for index, block in enumerate(_blocks(page, "yaml")):
        config = tmp_path / f"block-{index}.yaml"
        config.write_text(block, encoding="utf-8")
        fastadapt.load_config(config)
