"""``fastadapt train``: the meta-training loop with logging, checkpoints and resume.

A run directory holds ``config.yaml`` (resolved), ``metrics.jsonl``, ``tensorboard/``,
``checkpoints/iter_NNNNNN.{safetensors,json}`` and, at the end, ``policy.safetensors``.
Checkpoints carry the parameters and every random stream, so ``--resume`` continues exactly.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fastadapt.envs.base import TaskFamily
from fastadapt.envs.registry import make_family
from fastadapt.errors import CheckpointError, NonFiniteError
from fastadapt.meta.maml import MAMLConfig, collect_meta_batch
from fastadapt.meta.oracle import OracleFamily
from fastadapt.policies.mlp import Policy, make_policy
from fastadapt.run.algorithms import OuterAlgorithm, make_algorithm
from fastadapt.run.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    load_tensors,
    save_checkpoint,
    save_tensors,
)
from fastadapt.run.config import load_config, save_config
from fastadapt.run.logging import METRICS_FILE, MetricsLogger, truncate_metrics
from fastadapt.run.progress import TrainProgress
from fastadapt.run.runtime import configure_process
from fastadapt.run.schema import RunConfig, TrainConfig
from fastadapt.sampling import SeededSampler, make_sampler
from fastadapt.sampling.base import check_sampler_state
from fastadapt.sampling.success import SuccessRecorder
from fastadapt.types import Params

CONFIG_FILE = "config.yaml"
POLICY_FILE = "policy.safetensors"
_PARAM_PREFIX = "policy/"
_OUTER_PREFIX = "outer/"
_INNER_LR_PREFIX = "inner_lr/"


@dataclass
class Experiment:
    """The objects a config describes: task family, policy module and episode length."""

    config: TrainConfig
    family: TaskFamily[Any]
    policy: Policy
    horizon: int

    def initial_params(self) -> Params:
        """The policy module's freshly initialised parameters (seeded by ``run.seed``)."""
        return {n: p.detach().clone() for n, p in self.policy.named_parameters()}


def build_experiment(config: TrainConfig) -> Experiment:
    """Build the family and the policy of ``config`` (policy weights seeded by ``run.seed``)."""
    family = make_family(config.env.name, **config.env.kwargs)
    if config.algorithm == "oracle":
        family = OracleFamily(family)
    torch.manual_seed(config.run.seed)
    obs_dim = int(np.prod(family.observation_space.shape))
    policy = make_policy(
        obs_dim,
        family.action_space,
        config.policy.hidden_sizes,
        config.policy.activation,
        config.policy.init_std,
    )
    horizon = config.env.horizon or family.horizon
    return Experiment(config, family, policy, horizon)


def load_run_config(run_dir: Path, overrides: Sequence[str] = ()) -> TrainConfig:
    """The resolved config of a run directory, with ``overrides`` (``"run.workers=4"``)."""
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory {run_dir} does not exist")
    if not (run_dir / CONFIG_FILE).exists():
        raise CheckpointError(f"{run_dir} is not a run directory (no {CONFIG_FILE})")
    return load_config(TrainConfig, run_dir / CONFIG_FILE, overrides)


def check_params(params: Params, expected: Params, source: Path) -> Params:
    """``params`` in the policy module's order (files store names sorted; the order fixes how
    parameters are flattened for TRPO, hence the exact bits of a resumed run).

    Raises:
        CheckpointError: names or shapes differ from the config's policy.
    """
    if set(params) != set(expected):
        raise CheckpointError(
            f"{source} does not match the config's policy: parameters "
            f"{sorted(params)} in the file, {sorted(expected)} expected"
        )
    for name, tensor in expected.items():
        if params[name].shape != tensor.shape:
            raise CheckpointError(
                f"{source} does not match the config's policy: {name!r} has shape "
                f"{list(params[name].shape)} in the file, {list(tensor.shape)} expected"
            )
    return {name: params[name] for name in expected}


def load_policy_params(run_dir: Path, experiment: Experiment) -> Params:
    """Final meta-parameters of a run (``policy.safetensors``, else the latest checkpoint)."""
    return load_params(run_dir, experiment.initial_params())


def load_params(run_dir: Path, expected: Params) -> Params:
    """Final parameters of a run, checked against (and ordered like) ``expected``."""
    params, path = _final_tensors(run_dir, _PARAM_PREFIX)
    return check_params(params, expected, path)


def load_inner_lr(run_dir: Path, expected: Params) -> Params | None:
    """Meta-SGD's learned per-parameter inner rates of a run (``None`` for other runs)."""
    rates, path = _final_tensors(run_dir, _INNER_LR_PREFIX)
    return check_params(rates, expected, path) if rates else None


def _final_tensors(run_dir: Path, prefix: str) -> tuple[Params, Path]:
    """The tensors under ``prefix`` of ``policy.safetensors`` (parameters without a prefix),
    else of the latest checkpoint."""
    path = run_dir / POLICY_FILE
    if path.exists():
        tensors, _ = load_tensors(path)
        if prefix == _PARAM_PREFIX:
            return {k: v for k, v in tensors.items() if "/" not in k}, path
        return _strip(tensors, prefix), path
    marker = latest_checkpoint(run_dir / "checkpoints")
    if marker is None:
        raise CheckpointError(f"{run_dir} has neither {POLICY_FILE} nor a checkpoint")
    tensors, _ = load_checkpoint(marker)
    if prefix == _INNER_LR_PREFIX:
        prefix = _OUTER_PREFIX + prefix
    return _strip(tensors, prefix), marker


def _strip(tensors: dict[str, torch.Tensor], prefix: str = _PARAM_PREFIX) -> Params:
    # clone: own, writable storage rather than views into the file's buffer
    n = len(prefix)
    return {k[n:]: v.clone() for k, v in tensors.items() if k.startswith(prefix)}


def starting_params(run: RunConfig, fresh: Params) -> Params:
    """``fresh`` parameters, or those of the run ``run.init_from`` (checked against and
    ordered like ``fresh``).

    Raises:
        CheckpointError: ``run.init_from`` holds no parameters, or not this policy's.
    """
    if run.init_from is None:
        return fresh
    try:
        return load_params(Path(run.init_from), fresh)
    except CheckpointError as err:
        raise CheckpointError(f"run.init_from: {err}") from err


def starts_afresh(run_dir: Path, resume: bool) -> bool:
    """Whether a run begins from its initial parameters, where ``run.init_from`` applies: a
    new run, or a resumed one that stopped before its first checkpoint was written."""
    return not resume or not any((run_dir / "checkpoints").glob("iter_*.json"))


class _State:
    """Everything that changes during a run (what a checkpoint stores)."""

    def __init__(self, experiment: Experiment, warm_start: bool = True) -> None:
        """``warm_start``: begin from ``run.init_from``'s parameters if set (not when a
        checkpoint will replace them, see :func:`starts_afresh`)."""
        seed = experiment.config.run.seed
        self.theta = experiment.initial_params()
        if warm_start:
            self.theta = starting_params(experiment.config.run, self.theta)
        self.iteration = 0
        self.env_steps = 0
        self.task_rng = np.random.default_rng([seed, 0])
        self.sampler_state: dict[str, int] = {"seed": seed, "calls": 0}
        """The sampler's random state (its seed and call counter; the same for every kind)."""

    def save(self, run_dir: Path, keep_last: int, sampler: SeededSampler,
             algorithm: OuterAlgorithm) -> Path:
        self.sampler_state = sampler.state_dict()
        tensors = {_PARAM_PREFIX + n: p for n, p in self.theta.items()}
        tensors.update({_OUTER_PREFIX + n: t for n, t in algorithm.state_dict().items()})
        meta = {
            "env_steps": self.env_steps,
            "task_rng": self.task_rng.bit_generator.state,
            "sampler": self.sampler_state,
        }
        return save_checkpoint(run_dir / "checkpoints", self.iteration, tensors, meta, keep_last)

    def restore(self, marker: Path, experiment: Experiment, algorithm: OuterAlgorithm) -> None:
        tensors, meta = load_checkpoint(marker)
        params = check_params(_strip(tensors), experiment.initial_params(), marker)
        if "sampler" not in meta and "env_rng" in meta:
            raise CheckpointError(
                f"{marker} was written by an older fastadapt (per-sampler random streams); "
                "it cannot be resumed bit-exactly: start a new run"
            )
        try:
            self.task_rng.bit_generator.state = meta["task_rng"]
            self.sampler_state = check_sampler_state(meta["sampler"])
            self.iteration, self.env_steps = int(meta["iteration"]), int(meta["env_steps"])
            algorithm.load_state_dict(_strip(tensors, _OUTER_PREFIX))
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise CheckpointError(f"{marker} is incomplete or corrupt: {err}") from err
        self.theta = params


def _prepare_run_dir(config: TrainConfig, run_dir: Path) -> None:
    if (run_dir / METRICS_FILE).exists() or (run_dir / "checkpoints").exists():
        raise CheckpointError(
            f"{run_dir} already holds a run; pass --resume to continue it or choose "
            "another --run-dir (nothing was changed)"
        )
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CheckpointError(f"cannot create run directory {run_dir}: {err.strerror}") from err
    save_config(config, run_dir / CONFIG_FILE)


def _resume(state: _State, experiment: Experiment, run_dir: Path, algorithm: OuterAlgorithm
            ) -> None:
    """Restore the latest checkpoint; only then rewrite the config and the metrics file, so a
    refused resume (corrupt checkpoint, other architecture) leaves the run as it was."""
    checkpoints = run_dir / "checkpoints"
    marker = latest_checkpoint(checkpoints)
    if marker is not None:
        state.restore(marker, experiment, algorithm)
    elif checkpoints.is_dir() and any(checkpoints.glob("iter_*.json")):
        raise CheckpointError(
            f"no loadable checkpoint in {checkpoints}: every iter_*.json is corrupt "
            "(nothing was changed)"
        )
    save_config(experiment.config, run_dir / CONFIG_FILE)  # e.g. a raised run.iterations
    truncate_metrics(run_dir, state.iteration)


def train(config: TrainConfig, run_dir: Path, resume: bool = False, show_progress: bool = True
          ) -> Path:
    """Meta-train ``config`` into ``run_dir``; returns the path of ``policy.safetensors``.

    Raises:
        ConfigError: a new run's config sets a section its algorithm ignores
            (:meth:`TrainConfig.check_new_run`).
        CheckpointError: ``run_dir`` holds a run and ``resume`` is false, or its checkpoint
            is corrupt / does not match the config.
        NonFiniteError: the loss stayed non-finite for ``run.max_nonfinite_iterations``
            iterations (the current, finite parameters are checkpointed first).
    """
    if not resume:
        config.check_new_run()
    configure_process(config.run.num_threads, config.run.retain_freed_memory)
    if config.algorithm == "rl2":
        from fastadapt.run.rl2_runner import train_rl2

        return train_rl2(config, run_dir, resume, show_progress)
    if config.algorithm == "random-init":  # nothing to train: one iteration measures theta_0
        config = replace(config, run=replace(config.run, iterations=1))
    experiment = build_experiment(config)  # a bad env or policy fails before any file is made
    # so does a bad run.init_from
    state = _State(experiment, warm_start=starts_afresh(run_dir, resume))
    if not resume:
        _prepare_run_dir(config, run_dir)
    algorithm = make_algorithm(config, experiment.policy, state.theta)
    if resume:
        _resume(state, experiment, run_dir, algorithm)
    run = config.run
    with make_sampler(
        run.sampler, experiment.family, experiment.policy, experiment.horizon, run.seed,
        run.workers, run.ray_address,
    ) as sampler, MetricsLogger(run_dir, run.tensorboard) as logger, TrainProgress(
        run.iterations, state.iteration, enabled=show_progress
    ) as progress:
        sampler.load_state_dict(state.sampler_state)
        _loop(experiment, algorithm, state, sampler, run_dir, logger, progress)
    final = dict(state.theta)
    inner_lr = algorithm.inner_lr()
    if isinstance(inner_lr, dict):  # Meta-SGD: the learned rates belong to the result
        final.update({_INNER_LR_PREFIX + n: lr for n, lr in inner_lr.items()})
    save_tensors(run_dir / POLICY_FILE, final, {"iteration": str(state.iteration)})
    return run_dir / POLICY_FILE


def sampling_config(config: TrainConfig) -> MAMLConfig:
    """How episodes are sampled and adapted: ``maml:`` for MAML, ``finetune:`` for the
    transfer baselines (their fine-tuning is MAML's inner step, first-order)."""
    return config.maml if config.is_maml else config.finetune.adaptation_config()


def _loop(experiment: Experiment, algorithm: OuterAlgorithm, state: _State,
          sampler: SeededSampler, run_dir: Path, logger: MetricsLogger, progress: TrainProgress
          ) -> None:
    config = experiment.config
    sampling = sampling_config(config)
    inner_steps = None if config.is_maml else 0  # pretraining: no adaptation
    nonfinite_streak = 0
    while state.iteration < config.run.iterations:
        start = time.perf_counter()
        tasks = experiment.family.sample_tasks(state.task_rng, sampling.meta_batch_size)
        recorder = SuccessRecorder(sampler)  # success rates of families that report them
        meta_batch = collect_meta_batch(
            recorder, experiment.policy, state.theta, tasks, sampling, inner_steps,
            algorithm.inner_lr(), inner_loop=algorithm.inner_loop(state.theta, len(tasks)),
        )
        state.theta, metrics = algorithm.step(state.theta, meta_batch)
        metrics = {**metrics, **recorder.before_after()}
        seconds = time.perf_counter() - start
        state.iteration += 1
        state.env_steps += meta_batch.env_steps
        record = iteration_record(state.iteration, seconds, state.env_steps,
                                  meta_batch.env_steps, meta_batch.returns, metrics)
        del meta_batch  # its inner loop's caches must not outlive the step into the next
        nonfinite_streak = log_and_checkpoint(
            config.run, record, nonfinite_streak,
            lambda: state.save(run_dir, config.run.keep_checkpoints, sampler, algorithm), logger,
            progress,
        )


def iteration_record(iteration: int, seconds: float, env_steps: int, new_env_steps: int,
                     returns: list[float], metrics: dict[str, float]) -> dict[str, Any]:
    """One line of ``metrics.jsonl``: ``returns`` are the mean episode returns along the
    adaptation (MAML: after 0..K inner steps; RL²: episodes 1..N of a trial)."""
    return {
        "iteration": iteration,
        "seconds": seconds,
        "env_steps": env_steps,
        "env_steps_per_second": new_env_steps / seconds,
        "return_before": returns[0],
        "return_after": returns[-1],
        "returns": returns,
        **metrics,
    }


def log_and_checkpoint(run: RunConfig, record: dict[str, Any], nonfinite_streak: int,
                       save: Callable[[], Path], logger: MetricsLogger, progress: TrainProgress
                       ) -> int:
    """Log an iteration's ``record``, then checkpoint with ``save`` when one is due.

    Returns:
        The updated count of consecutive iterations with ``record["nonfinite"]``.

    Raises:
        NonFiniteError: that count reached ``run.max_nonfinite_iterations`` (saved first).
    """
    logger.log(record)
    progress.update(record)
    iteration = record["iteration"]
    nonfinite_streak = nonfinite_streak + 1 if record["nonfinite"] else 0
    if nonfinite_streak >= run.max_nonfinite_iterations:
        marker = save()
        raise NonFiniteError(
            f"loss or gradient was NaN/inf for {nonfinite_streak} consecutive iterations "
            f"(up to iteration {iteration}); no update was applied; the last good "
            f"parameters are in {marker.with_suffix('.safetensors')}"
        )
    if iteration == run.iterations or iteration % run.checkpoint_every == 0:
        save()
    return nonfinite_streak
