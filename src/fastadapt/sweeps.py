"""Multi-seed sweeps: ``N`` seeds (and a grid of overrides) of one config as ordinary run
directories, trained and evaluated as Ray Tune trials (``fastadapt sweep``). Orchestration,
beside the CLI: it drives the trainer (:mod:`fastadapt.run.trainer`) and the meta-test
(:mod:`fastadapt.evaluation.protocol`).

``sweep("maml-trpo/2d-navigation", seeds=5, grid={"maml-trpo.inner_lr": ["0.05", "0.1"]},
root="runs/sweep")`` makes one run directory per (grid point, seed) under ``root``, named
``<config>[,<key>=<value>...]-seed<s>`` (seeds ``1..N``), each trained with ``fastadapt
train``'s trainer and then evaluated with the config's ``evaluate`` section, so ``plot``,
``compare``, ``report`` and ``--resume`` work on them as on any run. Ray Tune schedules the
runs, one CPU each (``run.num_threads`` 1 unless overridden), on a local Ray instance or on
the cluster of ``run.ray_address``.

A sweep resumes: run it again with the same arguments and an evaluated run is skipped, a
trained one only evaluated, an interrupted one continued from its last checkpoint, the others
started. Every config of the sweep is built before anything starts, so a grid key that does not
exist is one line and nothing is written. A sweep holds a lock on ``root`` while it runs (one
sweep per root; each run's trainer locks its own directory), a config file is handed to the
trials by its absolute path (they run in another working directory), and a run that fails is
reported by its own error's line, not Ray's wrapper.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import re
import shutil
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

from fastadapt.config import TrainConfig
from fastadapt.errors import ConfigError, FastAdaptError, StorageError, SweepError
from fastadapt.evaluation.evaluation_file import read_evaluation
from fastadapt.evaluation.protocol import evaluate_run
from fastadapt.run.config_loading import (
    flat_config,
    load_train_config,
    resolve,
)
from fastadapt.run.lock import RunLock
from fastadapt.run.names import seed_run_name
from fastadapt.run.rundir import CONFIG_FILE, EVALUATION_FILE, POLICY_FILE, load_run_config
from fastadapt.run.trainer import train
from fastadapt.sampling.worker_pool import first_line

__all__ = ["SweepRun", "plan", "run_status", "sweep"]

Status = Literal["done", "evaluate", "resume", "new"]


class SweepRun(NamedTuple):
    """One run of a sweep: its directory's name, the overrides that make its config (what a
    trial is given) and that config, resolved."""

    name: str
    overrides: tuple[str, ...]
    config: TrainConfig


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=+-]+", "_", text)


def sweep_stem(config: str) -> str:
    """The start of a sweep's run names: a config file's own name (``my-nav.yaml`` ->
    ``my-nav``, wherever it lies), a packaged config's with its folder
    (``maml-trpo/2d-navigation`` -> ``maml-trpo-2d-navigation``); never starting with a dash
    or a dot, so ``report NAME-seed*`` cannot read as an option."""
    path = Path(config)
    name = path.stem if path.is_file() else str(config).removesuffix(".yaml").replace("/", "-")
    return _slug(name).lstrip("-._") or "sweep"


def plan(config: str, seeds: int, overrides: Sequence[str] = (),
         grid: Mapping[str, Sequence[str]] | None = None, plugins: Iterable[str] = ()
         ) -> list[SweepRun]:
    """The runs of a sweep, every config built (and so checked) once.

    Raises:
        ConfigError: ``seeds < 1``, an empty grid axis, or a config that cannot be built
            (an unknown key, a bad value: the message names it).
    """
    if seeds < 1:
        raise ConfigError(f"sweep needs --seeds >= 1, got {seeds}")
    grid = dict(grid or {})
    for key, values in grid.items():
        if not values:
            raise ConfigError(f"sweep grid key {key!r} has no values")
    stem = sweep_stem(config)
    runs = []
    for point in itertools.product(*([(key, value) for value in values]
                                     for key, values in grid.items())):
        label = "".join(f",{_slug(key)}={_slug(value)}" for key, value in point)
        for seed in range(1, seeds + 1):
            run_overrides = ("run.num_threads=1", *overrides,
                             *(f"{key}={value}" for key, value in point), f"run.seed={seed}")
            try:
                built = resolve(load_train_config(config, run_overrides, plugins))
            except ConfigError as err:
                where = f" (grid point {', '.join(f'{k}={v}' for k, v in point)})" if point else ""
                raise ConfigError(f"sweep{where}: {err}") from None
            runs.append(SweepRun(seed_run_name(f"{stem}{label}", seed), run_overrides, built))
    return runs


def run_status(run_dir: Path) -> Status:
    """``done`` (evaluated), ``evaluate`` (trained), ``resume`` (started) or ``new``."""
    if (run_dir / EVALUATION_FILE).is_file():
        return "done"
    if (run_dir / POLICY_FILE).is_file():
        return "evaluate"
    if (run_dir / CONFIG_FILE).is_file():
        return "resume"
    return "new"


def check_same_config(run: SweepRun, run_dir: Path, plugins: Iterable[str]) -> None:
    """A run directory the sweep would skip or continue must hold this run's config
    (``run.iterations`` aside: a sweep may be extended).

    Raises:
        ConfigError: it holds another config (the differing keys are named).
        CheckpointError: its ``config.yaml`` cannot be read.
    """
    if run_status(run_dir) == "new":
        return
    planned = flat_config(run.config)
    saved = flat_config(load_run_config(run_dir, plugins=plugins))
    differ = sorted(key for key in planned.keys() | saved.keys()
                    if key != "run.iterations" and planned.get(key) != saved.get(key))
    if differ:
        shown = ", ".join(f"{key}: {saved.get(key)!r} there, {planned.get(key)!r} here"
                          for key in differ[:3])
        raise ConfigError(f"{run_dir} holds a run of another config ({shown}); sweep into "
                          "another --root, or make the key a --grid axis")


def run_one(config: str, overrides: Sequence[str], run_dir: str, plugins: Sequence[str]
            ) -> dict[str, Any]:
    """Train (or continue) and evaluate one run of a sweep; a Ray Tune trial runs it.

    Returns:
        ``{"run": run_dir, "status": what it found, "return_after": the meta-test's last
        point}``.
    """
    path = Path(run_dir)
    status = run_status(path)
    if status in ("new", "resume"):
        if status == "new" and path.exists():  # an empty directory left by a killed start
            with contextlib.suppress(OSError):
                path.rmdir()
        train(load_train_config(config, overrides, plugins), path, resume=status == "resume",
              show_progress=False)
    if status != "done":
        evaluate_run(path, plugins=plugins)
    evaluation = read_evaluation(path, ("returns_mean",))
    return {"run": run_dir, "status": status, "return_after": evaluation["returns_mean"][-1]}


def _trial(params: dict[str, Any]) -> dict[str, Any]:
    """A Ray Tune trial: one run of the sweep (``params["run"]``, from :func:`sweep`)."""
    run = params["run"]
    return run_one(run["config"], run["overrides"], run["run_dir"], run["plugins"])


def import_tune() -> Any:
    """``ray.tune``.

    Raises:
        SweepError: Ray Tune is not installed (the message says how to install it).
    """
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # local: loopback only
    try:
        from ray import tune
    except ImportError as err:
        raise SweepError(f"fastadapt sweep needs Ray Tune: pip install 'fastadapt[tune]' "
                         f"[{err}]") from None
    return tune


def sweep(config: str, seeds: int, root: Path | str, overrides: Sequence[str] = (),
          grid: Mapping[str, Sequence[str]] | None = None, plugins: Sequence[str] = (),
          workers: int | None = None) -> list[Path]:
    """Train and evaluate every run of the sweep not yet evaluated (see the module
    docstring); returns all its run directories.

    Args:
        workers: runs at a time (default: the machine's CPUs, or the cluster's).

    Raises:
        ConfigError: as :func:`plan`, ``workers < 1``, or a run directory of the sweep that
            holds another config (:func:`check_same_config`).
        SweepError: Ray Tune is missing, or runs failed (the message names them and the
            first one's own error in one line; rerunning the sweep continues them).
        RunLockedError: another sweep works in ``root`` (the message names its pid).
        StorageError: ``root`` cannot be made.
        SamplerError: Ray cannot start, or ``run.ray_address`` does not answer.
        KeyboardInterrupt: Tune stopped before every run finished (Ctrl-C is not caught: it
            ends the sweep at once, the runs keeping their checkpoints).
    """
    if workers is not None and workers < 1:
        raise ConfigError(f"sweep needs --workers >= 1, got {workers}")
    runs = plan(config, seeds, overrides, grid, plugins)
    tune = import_tune()
    root = Path(root).resolve()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise StorageError.of(err, f"the sweep's directory {root}") from err
    with RunLock(root, "fastadapt sweep"):
        for run in runs:
            check_same_config(run, root / run.name, plugins)
        pending = [run for run in runs if run_status(root / run.name) != "done"]
        if pending:
            _run_trials(tune, _absolute(config), pending, root, list(plugins), workers,
                        runs[0].config.run.ray_address)
    return [root / run.name for run in runs]


def _absolute(config: str) -> str:
    """A config file's absolute path (trials run in another working directory); a packaged
    config's name as it is."""
    return str(Path(config).resolve()) if Path(config).exists() else config


_QUIET_TUNE = {"TUNE_DISABLE_SIGINT_HANDLER": "1", "RAY_AIR_NEW_OUTPUT": "0"}
"""Tune's settings while a sweep runs: Ctrl-C is not caught (it ends the sweep at once, with
the CLI's one line), and the legacy output engine, which ``verbose=0`` silences."""


@contextlib.contextmanager
def _quiet_tune() -> Iterator[None]:
    """Tune without its tables, per-trial tracebacks and SIGINT handler (:data:`_QUIET_TUNE`;
    a failed run is reported by :func:`sweep` in one line). Restores both afterwards."""
    saved = {key: os.environ.get(key) for key in _QUIET_TUNE}
    logger = logging.getLogger("ray.tune")
    level = logger.level
    os.environ.update(_QUIET_TUNE)
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _run_trials(tune: Any, config: str, runs: list[SweepRun], root: Path, plugins: list[str],
                workers: int | None, address: str | None) -> None:
    """Every run of ``runs`` as a Tune trial (``config``: as a trial can read it).

    Raises:
        SweepError: runs failed: how many, their names, and the first one's own error.
        KeyboardInterrupt: Tune ended before every run finished (a signal it caught).
    """
    import ray

    from fastadapt.sampling.ray_sampler import init_ray

    owns = not ray.is_initialized()
    temp_dir = init_ray(ray, address, workers or os.cpu_count() or 1) if owns else None
    try:
        params = [{"config": config, "overrides": list(run.overrides),
                   "run_dir": str(root / run.name), "plugins": plugins} for run in runs]
        tuner = tune.Tuner(
            tune.with_resources(_trial, {"cpu": 1}),
            param_space={"run": tune.grid_search(params)},
            tune_config=tune.TuneConfig(max_concurrent_trials=workers),
            run_config=tune.RunConfig(name=time.strftime("%Y%m%d-%H%M%S"),
                                      storage_path=str(root / ".tune"), verbose=0),
        )
        with _quiet_tune():
            results = tuner.fit()
        failed = [(Path(result.config["run"]["run_dir"]).name, result.error)
                  for result in results if result.error is not None]
    finally:
        if owns:
            ray.shutdown()
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)
    if failed:
        names = ", ".join(name for name, _ in failed)
        name, error = failed[0]
        raise SweepError(f"{len(failed)} of {len(runs)} runs failed ({names}); {name}: "
                         f"{_trial_error_line(error)}; rerun the sweep to continue them")
    if any(run_status(root / run.name) != "done" for run in runs):
        raise KeyboardInterrupt  # Tune stopped early: a signal it still catches (SIGUSR1)


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _trial_error_line(error: BaseException) -> str:
    """What a trial raised, in one line: a fastadapt error's message, else ``Type: first
    line``, out of Ray's wrappers (a ``RayTaskError`` holds it as ``cause``) and without
    colour codes."""
    seen: set[int] = set()
    while isinstance(getattr(error, "cause", None), BaseException) and id(error) not in seen:
        seen.add(id(error))
        error = error.cause  # type: ignore[attr-defined]
    if isinstance(error, FastAdaptError):
        lines = str(error).strip().splitlines()
        line = lines[0] if lines else type(error).__name__
    else:
        line = first_line(error)
    return _ANSI.sub("", line)
