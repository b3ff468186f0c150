"""The one trainer every algorithm runs in: ``fastadapt train``.

The trainer owns the run directory (:mod:`fastadapt.run.rundir`), the stream of training
tasks and its random generator, the sampler, metrics (``metrics.jsonl``, TensorBoard), the
progress bar, checkpoints, ``--resume``, ``run.init_from``, non-finite handling and the final
policy file. The algorithm (:class:`~fastadapt.algorithms.base.Algorithm`) supplies one
training iteration at a time. Checkpoints carry the parameters, the algorithm's state and every
random stream, so ``--resume`` continues exactly. It holds the run directory's lock
(:mod:`fastadapt.run.lock`) from the moment it reads a checkpoint (or makes the directory) to
the end, and never starts a run over that a checkpoint should continue
(:mod:`fastadapt.run.resume`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fastadapt.algorithms.base import Algorithm, Iteration
from fastadapt.config import RunConfig, TrainConfig
from fastadapt.errors import CheckpointError, NonFiniteError, SamplerError, StorageError
from fastadapt.run.checkpoint import check_checkpoint_files, latest_checkpoint, remove_leftovers
from fastadapt.run.config_loading import resolve, train_config_to_dict
from fastadapt.run.facts import write_facts
from fastadapt.run.loading import build_run_algorithm, load_final_policy, load_policy
from fastadapt.run.lock import RunLock
from fastadapt.run.logging import MetricsLogger, truncate_metrics
from fastadapt.run.progress import TrainProgress
from fastadapt.run.resume import (
    change_records,
    check_progress_is_checkpointed,
    config_changes,
    earlier_changes,
    fixed_keys_changed,
)
from fastadapt.run.rundir import (
    CHECKPOINTS,
    CONFIG_FILE,
    check_new_run_dir,
    load_run_config,
    prepare_run_dir,
    read_checkpoint,
    save_policy_file,
    save_run_config,
    starts_afresh,
    write_checkpoint,
)
from fastadapt.run.wandb_sink import import_wandb
from fastadapt.run.yaml_config import read_mapping
from fastadapt.sampling import SeededSampler, make_sampler
from fastadapt.sampling.base import check_sampler_state

__all__ = ["iteration_record", "train", "warm_start"]


def warm_start(algorithm: Algorithm[Any], run: RunConfig) -> None:
    """Start from the final parameters of the run ``run.init_from`` (only the parameters).

    Raises:
        CheckpointError: that run holds no parameters, or not this policy's.
    """
    assert run.init_from is not None
    try:
        load_final_policy(algorithm, Path(run.init_from), parameters_only=True)
    except CheckpointError as err:
        raise CheckpointError(f"run.init_from: {err}") from err


class _RunState:
    """What changes during a run besides the algorithm: counters and random streams (what a
    checkpoint's ``meta`` holds; the progress bar is :class:`TrainProgress`)."""

    def __init__(self, seed: int) -> None:
        self.iteration = 0
        self.env_steps = 0
        self.task_rng = np.random.default_rng([seed, 0])
        self.sampler_state: dict[str, int] = {"seed": seed, "calls": 0}
        """The sampler's random state (its seed and call counter; the same for every kind)."""

    def meta(self) -> dict[str, Any]:
        return {"env_steps": self.env_steps, "task_rng": self.task_rng.bit_generator.state,
                "sampler": self.sampler_state}

    def restore(self, meta: dict[str, Any]) -> None:
        self.task_rng.bit_generator.state = meta["task_rng"]
        self.sampler_state = check_sampler_state(meta["sampler"])
        self.iteration, self.env_steps = int(meta["iteration"]), int(meta["env_steps"])


def iteration_record(iteration: int, seconds: float, env_steps: int, result: Iteration
                     ) -> dict[str, Any]:
    """One line of ``metrics.jsonl``: ``returns`` are the mean episode returns along the
    adaptation (MAML: after 0..K inner steps; RL²: episodes 1..N of a trial), then the
    algorithm's metrics and ``nonfinite`` (1.0: the update was not applied)."""
    return {
        "iteration": iteration,
        "seconds": seconds,
        "env_steps": env_steps,
        "env_steps_per_second": result.env_steps / seconds,
        "return_before": result.returns[0],
        "return_after": result.returns[-1],
        "returns": result.returns,
        **result.metrics,
        "nonfinite": float(result.nonfinite),
    }


class Trainer:
    """Trains one run directory; see the module docstring.

    Args:
        config: the resolved run config.
        run_dir: the run directory (made for a new run; continued with ``resume``).
        resume: continue from its latest checkpoint.
        show_progress: draw the progress bar.
        lock: the run directory's lock, if the caller took it (before it read the config);
            else the trainer takes it.

    Raises:
        ConfigError, UnknownEnvError, FamilyError, PluginError: a bad setting, before any
            file is written.
        CheckpointError: ``run_dir`` holds a run and ``resume`` is false, its checkpoint is
            corrupt or of another policy, it shows progress but has no checkpoint to resume
            from (:mod:`fastadapt.run.resume`), or ``run.init_from`` is unusable.
        ConfigError: a resume changes a key that defines the run (``run.seed``, ``env.*``).
        RunLockedError: another process writes to ``run_dir`` (checked here on resume, as
            the directory is made for a new run).
    """

    def __init__(self, config: TrainConfig, run_dir: Path, resume: bool,
                 show_progress: bool, lock: RunLock | None = None) -> None:
        run = config.run
        self.config, self.run_dir, self.show_progress = config, run_dir, show_progress
        self.algorithm = build_run_algorithm(config)
        self.iterations = self.algorithm.iterations(run.iterations)
        self.state = _RunState(run.seed)
        self.resume = resume
        self.lock = lock or RunLock(run_dir, "fastadapt train" + " --resume" * resume)
        self.changes: list[Any] = []
        if run.wandb is not None:
            import_wandb()  # missing: one line before anything is written
        if not resume:
            check_new_run_dir(run_dir)
            if run.init_from is not None:
                warm_start(self.algorithm, run)
            return
        self.lock.acquire()  # before the saved config and checkpoint are read
        try:
            # the saved config with its own plugins: a --plugin added now is a change
            self._check_changes(load_run_config(run_dir))
            if run.init_from is not None and starts_afresh(run_dir, resume):
                warm_start(self.algorithm, run)
            self._restore()
        except BaseException:
            self.lock.release()
            raise

    @property
    def iteration(self) -> int:
        """The iterations done: where training continues (0 for a new run)."""
        return self.state.iteration

    def close(self) -> None:
        """Let the run directory go without training (:meth:`run` does it at its end)."""
        self.lock.release()

    def _check_changes(self, saved: TrainConfig) -> None:
        """Refuse changes of the keys that define the run; keep a record of the others."""
        data = read_mapping(self.run_dir / CONFIG_FILE)
        changes = config_changes(saved, self.config)
        fixed_keys_changed(changes, self.run_dir)
        self.changes = earlier_changes(data, self.run_dir)
        self._new_changes = changes
        self._first_checkpoint = min(saved.run.checkpoint_every, saved.run.iterations)

    def _restore(self) -> None:
        """Restore the latest checkpoint (nothing is written: the run directory is updated
        only once the sampler runs, so a refused resume leaves it as it was)."""
        checkpoints = self.run_dir / CHECKPOINTS
        if checkpoints.exists() and not checkpoints.is_dir():
            raise CheckpointError(f"cannot resume {self.run_dir}: {checkpoints} is not a "
                                  "directory; move it away to continue from the records' start, "
                                  "or start a new run (nothing was changed)")
        check_checkpoint_files(checkpoints)
        marker = latest_checkpoint(checkpoints)
        if marker is not None:
            checkpoint = read_checkpoint(marker)
            load_policy(self.algorithm, checkpoint.policy, marker)
            try:
                self.algorithm.load_state_dict(checkpoint.state)
                self.state.restore(checkpoint.meta)
            except (KeyError, TypeError, ValueError, RuntimeError) as err:
                raise CheckpointError(f"{marker} is incomplete or corrupt: {err}") from err
        elif checkpoints.is_dir() and any(checkpoints.glob("iter_*.json")):
            raise CheckpointError(
                f"no loadable checkpoint in {checkpoints}: every iter_*.json is corrupt "
                "(nothing was changed)"
            )
        else:
            check_progress_is_checkpointed(self.run_dir, self._first_checkpoint)
        self.changes = change_records(self._new_changes, self.state.iteration, self.changes)

    def _prepare(self) -> None:
        """A new run's directory (made and locked); a resumed run's updated config (e.g. a
        raised ``run.iterations``, with a record of each change), its metrics past the
        checkpoint removed and the temporary files of a killed write cleaned up."""
        if not self.resume:
            prepare_run_dir(self.config, self.run_dir, self.lock)
            write_facts(self.run_dir, self.config, self.algorithm)
            return
        for directory in (self.run_dir, self.run_dir / CHECKPOINTS):
            remove_leftovers(directory)
        save_run_config(self.config, self.run_dir, self.changes)
        write_facts(self.run_dir, self.config, self.algorithm)
        truncate_metrics(self.run_dir, self.state.iteration)

    def _save(self, sampler: SeededSampler) -> Path:
        algorithm, state = self.algorithm, self.state
        state.sampler_state = sampler.state_dict()
        policy = {**algorithm.parameters(), **algorithm.policy_extras()}
        return write_checkpoint(self.run_dir, state.iteration, policy, algorithm.state_dict(),
                                state.meta(), self.config.run.keep_checkpoints)

    def run(self, on_ready: Callable[[Path], object] | None = None) -> Path:
        """Train until ``run.iterations``; returns the path of ``policy.safetensors``.

        The sampler starts first: one that cannot (a Ray cluster that does not answer) fails
        before the run directory is made or changed. ``on_ready(run_dir)`` is called once the
        directory is ready, before the first iteration (the CLI names it there).

        Raises:
            NonFiniteError: the loss stayed non-finite for ``run.max_nonfinite_iterations``
                iterations (the current, finite parameters are checkpointed first).
            SamplerError: a worker died or failed; the message says how to resume.
            StorageError: a file could not be written (the files written before are kept).
        """
        try:
            return self._run(on_ready)
        finally:
            self.lock.release()

    def _run(self, on_ready: Callable[[Path], object] | None) -> Path:
        run, algorithm = self.config.run, self.algorithm
        with make_sampler(
            run.sampler, algorithm.family, algorithm.policy, algorithm.horizon, run.seed,
            run.workers, run.ray_address,
        ) as sampler:
            sampler.load_state_dict(self.state.sampler_state)
            self._prepare()
            if on_ready is not None:
                on_ready(self.run_dir)
            wandb_config = None if run.wandb is None else train_config_to_dict(self.config)
            with MetricsLogger(self.run_dir, run.tensorboard, run.wandb,
                               wandb_config) as logger, TrainProgress(
                self.iterations, self.state.iteration, enabled=self.show_progress
            ) as progress:
                try:
                    self._loop(sampler, logger, progress)
                    logger.flush()
                except SamplerError as err:
                    raise type(err)(f"{err}; the run's checkpoints are kept: continue it with "
                                    f"fastadapt train --resume {self.run_dir}") from err
                except StorageError as err:
                    raise StorageError(f"{err}; the files written before are kept: make room, "
                                       f"then continue with fastadapt train --resume "
                                       f"{self.run_dir}") from err
            policy = {**algorithm.parameters(), **algorithm.policy_extras()}
            return save_policy_file(self.run_dir, policy, self.state.iteration)

    def _loop(self, sampler: SeededSampler, logger: MetricsLogger, progress: TrainProgress
              ) -> None:
        run, state, algorithm = self.config.run, self.state, self.algorithm
        nonfinite_streak = 0
        while state.iteration < self.iterations:
            start = time.perf_counter()
            tasks = algorithm.training_tasks(state.task_rng,
                                             self.config.section.tasks_per_iteration)
            result = algorithm.train_iteration(sampler, tasks, state.iteration / run.iterations)
            state.iteration += 1
            state.env_steps += result.env_steps
            nonfinite_streak = nonfinite_streak + 1 if result.nonfinite else 0
            record = iteration_record(state.iteration, time.perf_counter() - start,
                                      state.env_steps, result)
            del result  # an iteration's caches must not outlive it into the next
            logger.log(record)
            progress.update(record)
            if nonfinite_streak >= run.max_nonfinite_iterations:
                marker = self._save(sampler)
                raise NonFiniteError(
                    f"loss or gradient was NaN/inf for {nonfinite_streak} consecutive "
                    f"iterations (up to iteration {state.iteration}); no update was applied; "
                    f"the last good parameters are in {marker.with_suffix('.safetensors')}"
                )
            if state.iteration == self.iterations or state.iteration % run.checkpoint_every == 0:
                self._save(sampler)


def train(config: TrainConfig, run_dir: Path | str, resume: bool = False,
          show_progress: bool = True) -> Path:
    """Meta-train ``config`` into ``run_dir``; returns the path of ``policy.safetensors``.

    Raises:
        ConfigError, UnknownEnvError, FamilyError, PluginError: a bad setting (nothing is
            written).
        CheckpointError: ``run_dir`` holds a run and ``resume`` is false, or its checkpoint
            is corrupt / does not match the config.
        NonFiniteError: the loss stayed non-finite for ``run.max_nonfinite_iterations``
            iterations (the current, finite parameters are checkpointed first).
    """
    return Trainer(resolve(config), Path(run_dir), resume, show_progress).run()
