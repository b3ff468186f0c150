"""``fastadapt train``: the meta-training loop with logging, checkpoints and resume.

A run directory holds ``config.yaml`` (resolved), ``metrics.jsonl``, ``tensorboard/``,
``checkpoints/iter_NNNNNN.{safetensors,json}`` and, at the end, ``policy.safetensors``.
Checkpoints carry the parameters and every random stream, so ``--resume`` continues exactly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fastadapt.envs.base import TaskFamily
from fastadapt.envs.registry import make_family
from fastadapt.errors import CheckpointError, NonFiniteError
from fastadapt.meta.maml import MAMLTRPO, collect_meta_batch
from fastadapt.policies.mlp import Policy, make_policy
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
from fastadapt.run.schema import TrainConfig
from fastadapt.sampling.vector import VectorSampler
from fastadapt.types import Params

CONFIG_FILE = "config.yaml"
POLICY_FILE = "policy.safetensors"
_PARAM_PREFIX = "policy/"


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


def load_run_config(run_dir: Path) -> TrainConfig:
    """The resolved config of a run directory."""
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory {run_dir} does not exist")
    if not (run_dir / CONFIG_FILE).exists():
        raise CheckpointError(f"{run_dir} is not a run directory (no {CONFIG_FILE})")
    return load_config(TrainConfig, run_dir / CONFIG_FILE)


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
    path = run_dir / POLICY_FILE
    if path.exists():
        params, _ = load_tensors(path)
    else:
        marker = latest_checkpoint(run_dir / "checkpoints")
        if marker is None:
            raise CheckpointError(f"{run_dir} has neither {POLICY_FILE} nor a checkpoint")
        tensors, _ = load_checkpoint(marker)
        params = _strip(tensors)
        path = marker
    return check_params(params, experiment.initial_params(), path)


def _strip(tensors: dict[str, torch.Tensor]) -> Params:
    # clone: own, writable storage rather than views into the file's buffer
    n = len(_PARAM_PREFIX)
    return {k[n:]: v.clone() for k, v in tensors.items() if k.startswith(_PARAM_PREFIX)}


class _State:
    """Everything that changes during a run (what a checkpoint stores)."""

    def __init__(self, experiment: Experiment) -> None:
        seed = experiment.config.run.seed
        self.theta = experiment.initial_params()
        self.iteration = 0
        self.env_steps = 0
        self.task_rng = np.random.default_rng([seed, 0])
        self.sampler = VectorSampler(experiment.family, experiment.policy, experiment.horizon, seed)

    def save(self, run_dir: Path, keep_last: int) -> Path:
        tensors = {_PARAM_PREFIX + n: p for n, p in self.theta.items()}
        tensors["rng/actions"] = self.sampler.generator.get_state()
        meta = {
            "env_steps": self.env_steps,
            "task_rng": self.task_rng.bit_generator.state,
            "env_rng": self.sampler.env_rng.bit_generator.state,
        }
        return save_checkpoint(run_dir / "checkpoints", self.iteration, tensors, meta, keep_last)

    def restore(self, marker: Path, experiment: Experiment) -> None:
        tensors, meta = load_checkpoint(marker)
        params = check_params(_strip(tensors), experiment.initial_params(), marker)
        try:
            self.task_rng.bit_generator.state = meta["task_rng"]
            self.sampler.env_rng.bit_generator.state = meta["env_rng"]
            self.sampler.generator.set_state(tensors["rng/actions"])
            self.iteration, self.env_steps = int(meta["iteration"]), int(meta["env_steps"])
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise CheckpointError(f"{marker} is incomplete or corrupt: {err}") from err
        self.theta = params


def _prepare_run_dir(config: TrainConfig, run_dir: Path, resume: bool) -> None:
    if resume:
        save_config(config, run_dir / CONFIG_FILE)  # e.g. a raised run.iterations
        return
    if (run_dir / METRICS_FILE).exists() or (run_dir / "checkpoints").exists():
        raise CheckpointError(
            f"{run_dir} already holds a run; pass --resume to continue it or choose "
            "another --run-dir (nothing was changed)"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir / CONFIG_FILE)


def train(config: TrainConfig, run_dir: Path, resume: bool = False, show_progress: bool = True
          ) -> Path:
    """Meta-train ``config`` into ``run_dir``; returns the path of ``policy.safetensors``.

    Raises:
        CheckpointError: ``run_dir`` holds a run and ``resume`` is false, or its checkpoint
            is corrupt / does not match the config.
        NonFiniteError: the loss stayed non-finite for ``run.max_nonfinite_iterations``
            iterations (the current, finite parameters are checkpointed first).
    """
    torch.set_num_threads(config.run.num_threads)
    _prepare_run_dir(config, run_dir, resume)
    experiment = build_experiment(config)
    state = _State(experiment)
    if resume:
        marker = latest_checkpoint(run_dir / "checkpoints")
        if marker is not None:
            state.restore(marker, experiment)
        truncate_metrics(run_dir, state.iteration)
    algorithm = MAMLTRPO(experiment.policy, config.maml, config.trpo)
    with MetricsLogger(run_dir, config.run.tensorboard) as logger, TrainProgress(
        config.run.iterations, state.iteration, enabled=show_progress
    ) as progress:
        _loop(experiment, algorithm, state, run_dir, logger, progress)
    save_tensors(run_dir / POLICY_FILE, state.theta, {"iteration": str(state.iteration)})
    return run_dir / POLICY_FILE


def _loop(experiment: Experiment, algorithm: MAMLTRPO, state: _State, run_dir: Path,
          logger: MetricsLogger, progress: TrainProgress) -> None:
    config = experiment.config
    nonfinite_streak = 0
    while state.iteration < config.run.iterations:
        start = time.perf_counter()
        tasks = experiment.family.sample_tasks(state.task_rng, config.maml.meta_batch_size)
        meta_batch = collect_meta_batch(
            state.sampler, experiment.policy, state.theta, tasks, config.maml
        )
        state.theta, metrics = algorithm.step(state.theta, meta_batch)
        seconds = time.perf_counter() - start
        state.iteration += 1
        state.env_steps += meta_batch.env_steps
        returns = meta_batch.returns
        record = {
            "iteration": state.iteration,
            "seconds": seconds,
            "env_steps": state.env_steps,
            "env_steps_per_second": meta_batch.env_steps / seconds,
            "return_before": returns[0],
            "return_after": returns[-1],
            "returns": returns,
            **metrics,
        }
        logger.log(record)
        progress.update(record)
        nonfinite_streak = nonfinite_streak + 1 if metrics["nonfinite"] else 0
        if nonfinite_streak >= config.run.max_nonfinite_iterations:
            marker = state.save(run_dir, config.run.keep_checkpoints)
            raise NonFiniteError(
                f"loss or gradient was NaN/inf for {nonfinite_streak} consecutive iterations "
                f"(up to iteration {state.iteration}); no update was applied; the last good "
                f"parameters are in {marker.with_suffix('.safetensors')}"
            )
        last = state.iteration == config.run.iterations
        if last or state.iteration % config.run.checkpoint_every == 0:
            state.save(run_dir, config.run.keep_checkpoints)
