"""``fastadapt train`` / ``evaluate`` for RL²: the run loop, checkpoints and the meta-test.

The run directory has the same layout as a MAML run (``config.yaml``, ``metrics.jsonl``,
``checkpoints/``, ``policy.safetensors``, ``evaluation.json``). A checkpoint stores the policy's
parameters, Adam's moments, the minibatch-shuffling generator and the random state of the
sampler and the task sampler, so ``--resume`` continues bit-exactly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from fastadapt.envs.base import TaskFamily
from fastadapt.envs.registry import make_family
from fastadapt.errors import CheckpointError, ConfigError
from fastadapt.meta.oracle import task_feature_size
from fastadapt.meta.rl2 import RL2PPO
from fastadapt.policies.recurrent import RecurrentPolicy, make_recurrent_policy
from fastadapt.run.checkpoint import latest_checkpoint, load_checkpoint, save_tensors
from fastadapt.run.checkpoint import save_checkpoint as write_checkpoint
from fastadapt.run.config import save_config
from fastadapt.run.logging import MetricsLogger, truncate_metrics
from fastadapt.run.progress import TrainProgress
from fastadapt.run.schema import TrainConfig
from fastadapt.run.train import (
    _PARAM_PREFIX,
    CONFIG_FILE,
    POLICY_FILE,
    _prepare_run_dir,
    _strip,
    check_params,
    iteration_record,
    log_and_checkpoint,
    starting_params,
    starts_afresh,
)
from fastadapt.sampling import SeededSampler, make_sampler
from fastadapt.sampling.base import check_sampler_state
from fastadapt.types import Params, Trials

_TRAJECTORY_TASKS = 4


@dataclass
class RL2Setup:
    """What an RL² config describes: the task family, the recurrent policy, the episode
    length."""

    config: TrainConfig
    family: TaskFamily[Any]
    policy: RecurrentPolicy
    horizon: int

    def initial_params(self) -> Params:
        """Freshly initialised parameters (seeded by ``run.seed``)."""
        return self.policy.params()


def build_rl2(config: TrainConfig) -> RL2Setup:
    """Build the family and the recurrent policy of ``config`` (weights seeded by ``run.seed``)."""
    family = make_family(config.env.name, **config.env.kwargs)
    if config.rl2.expected_rewards and not family.reports_expected_rewards:
        raise ConfigError(f"rl2.expected_rewards needs a family that reports the expected "
                          f"reward of each step (Bandit, TabularMDP); {family.name} does not")
    if config.rl2.transition_input and not isinstance(family.action_space, gym.spaces.Discrete):
        raise ConfigError(f"rl2.transition_input needs discrete actions; {family.name} has "
                          f"{family.action_space}")
    critic_features = _task_width(family, "rl2.task_critic") if config.rl2.task_critic else 0
    belief_features = (_task_width(family, "rl2.task_inference_coef")
                       if config.rl2.task_inference_coef > 0 else 0)
    torch.manual_seed(config.run.seed)
    obs_dim = int(np.prod(family.observation_space.shape))
    policy = make_recurrent_policy(obs_dim, family.action_space, config.rl2.hidden_size,
                                   config.policy.init_std, config.rl2.separate_value_gru,
                                   config.rl2.time_input, config.rl2.cell,
                                   config.rl2.transition_input, critic_features,
                                   belief_features)
    return RL2Setup(config, family, policy, config.env.horizon or family.horizon)


def _task_width(family: TaskFamily[Any], option: str) -> int:
    """How many task features ``option`` (``rl2.task_critic``'s value head,
    ``rl2.task_inference_coef``'s belief head) reads or predicts (one held-out task's).

    Raises:
        ConfigError: the family's tasks are not numbers only (Meta-World names its env).
    """
    try:
        return task_feature_size(family)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{option} needs tasks made of numbers; {family.name}'s are "
                          f"not ({err})") from err


class _RL2State:
    """Everything that changes during an RL² run (what a checkpoint stores)."""

    def __init__(self, setup: RL2Setup, warm_start: bool = True) -> None:
        """``warm_start``: begin from ``run.init_from``'s parameters if set (not when a
        checkpoint will replace them, see :func:`~fastadapt.run.train.starts_afresh`)."""
        config = setup.config
        seed = config.run.seed
        self.setup = setup
        self.iteration, self.env_steps = 0, 0
        self.task_rng = np.random.default_rng([seed, 0])
        self.sampler_state: dict[str, int] = {"seed": seed, "calls": 0}
        params = setup.initial_params()
        if warm_start:
            params = starting_params(config.run, params)
        self.algorithm = RL2PPO(setup.policy, params, config.rl2, config.ppo, seed)

    def save(self, run_dir: Path, keep_last: int, sampler: SeededSampler) -> Path:
        self.sampler_state = sampler.state_dict()
        tensors = {_PARAM_PREFIX + n: p for n, p in self.algorithm.current_params().items()}
        tensors.update(self.algorithm.state_tensors())
        meta = {
            "env_steps": self.env_steps,
            "task_rng": self.task_rng.bit_generator.state,
            "sampler": self.sampler_state,
        }
        return write_checkpoint(run_dir / "checkpoints", self.iteration, tensors, meta, keep_last)

    def restore(self, marker: Path) -> None:
        tensors, meta = load_checkpoint(marker)
        params = check_params(_strip(tensors), self.setup.initial_params(), marker)
        if "sampler" not in meta and "env_rng" in meta:
            raise CheckpointError(
                f"{marker} was written by fastadapt 0.1.0, whose RL² trials drew from other "
                "random streams; it cannot be resumed bit-exactly (evaluate works): start a "
                f"new run, e.g. with run.init_from={marker.parent.parent}"
            )
        try:
            self.task_rng.bit_generator.state = meta["task_rng"]
            self.sampler_state = check_sampler_state(meta["sampler"])
            self.algorithm.load_state_tensors(tensors)
            self.iteration, self.env_steps = int(meta["iteration"]), int(meta["env_steps"])
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise CheckpointError(f"{marker} is incomplete or corrupt: {err}") from err
        self.algorithm.load_params(params)

    def resume(self, run_dir: Path) -> None:
        """Restore the latest checkpoint, then rewrite the config and trim the metrics."""
        marker = latest_checkpoint(run_dir / "checkpoints")
        if marker is not None:
            self.restore(marker)
        save_config(self.setup.config, run_dir / CONFIG_FILE)
        truncate_metrics(run_dir, self.iteration)


def mean_episode_returns(trials: Trials, episodes_per_trial: int) -> list[float]:
    """Mean return of the ``k``-th episode of a trial over tasks and trials, ``k = 1..n``."""
    returns = trials.episode_returns(episodes_per_trial)  # [T, B, n]
    return [float(r) for r in returns.mean(dim=(0, 1))]


def trial_outcomes(trials: Trials, episodes_per_trial: int) -> dict[str, float]:
    """``success_rate_before`` / ``success_rate_after``: the fraction of the first and of the
    last episodes of the trials that succeeded, for families with success (Meta-World);
    ``unstable_episodes``: episodes ended by a physics blow-up, for MuJoCo families."""
    metrics: dict[str, float] = {}
    if trials.successes is not None:
        rates = trials.episode_successes(episodes_per_trial).mean(dim=(0, 1))  # [n]
        metrics.update(success_rate_before=float(rates[0]), success_rate_after=float(rates[-1]))
    if trials.unstable is not None:
        metrics["unstable_episodes"] = float(trials.unstable.sum())
    return metrics


def train_rl2(config: TrainConfig, run_dir: Path, resume: bool, show_progress: bool) -> Path:
    """Meta-train RL² into ``run_dir`` (see :func:`fastadapt.run.train.train`)."""
    setup = build_rl2(config)
    # a bad env, policy or run.init_from fails before any file is made
    state = _RL2State(setup, warm_start=starts_afresh(run_dir, resume))
    if not resume:
        _prepare_run_dir(config, run_dir)
    if resume:
        state.resume(run_dir)
    rl2, run = config.rl2, config.run
    with make_sampler(
        run.sampler, setup.family, setup.policy, setup.horizon, run.seed, run.workers,
        run.ray_address,
    ) as sampler, MetricsLogger(run_dir, run.tensorboard) as logger, TrainProgress(
        run.iterations, state.iteration, enabled=show_progress
    ) as progress:
        sampler.load_state_dict(state.sampler_state)
        streak = 0
        while state.iteration < run.iterations:
            start = time.perf_counter()
            tasks = setup.family.sample_tasks(state.task_rng, rl2.tasks_per_iteration)
            trials = sampler.sample_trials(state.algorithm.params, tasks,
                                           rl2.trials_per_task, rl2.episodes_per_trial)
            metrics = {**state.algorithm.step(trials, state.iteration / run.iterations),
                       **trial_outcomes(trials, rl2.episodes_per_trial)}
            state.iteration += 1
            state.env_steps += trials.num_env_steps
            record = iteration_record(
                state.iteration, time.perf_counter() - start, state.env_steps,
                trials.num_env_steps, mean_episode_returns(trials, rl2.episodes_per_trial),
                metrics,
            )
            streak = log_and_checkpoint(
                run, record, streak, lambda: state.save(run_dir, run.keep_checkpoints, sampler),
                logger, progress,
            )
    params = state.algorithm.current_params()
    save_tensors(run_dir / POLICY_FILE, params, {"iteration": str(state.iteration)})
    return run_dir / POLICY_FILE


def meta_test_rl2(setup: RL2Setup, params: Params, num_tasks: int, episodes_per_trial: int,
                  trials_per_task: int, seed: int) -> dict[str, Any]:
    """RL²'s adaptation curve on the held-out tasks: no gradient step, only the hidden state.

    ``per_task_returns[i][k]`` is the mean over ``trials_per_task`` trials of task ``i`` of the
    return of their ``k``-th episode; ``adaptation_steps = episodes_per_trial - 1`` and every
    step is one episode of experience (``episodes_per_step = 1``). Families that report
    success (Meta-World) add ``success_rate_mean[k]`` / ``success_rate_ci95[k]``: the fraction
    of the ``k``-th episodes that succeeded, by task, then summarized over tasks; MuJoCo
    families add ``unstable_episodes`` (episodes ended by a physics blow-up).

    Returns:
        The dict :func:`fastadapt.evaluate.meta_test` returns, with the same keys.
    """
    from fastadapt.evaluate import summarize_returns, summarize_successes

    family, run = setup.family, setup.config.run
    tasks = family.test_tasks(num_tasks)
    with make_sampler(run.sampler, family, setup.policy, setup.horizon, seed, run.workers,
                      run.ray_address) as sampler:
        trials = sampler.sample_trials(params, tasks, trials_per_task, episodes_per_trial)
    per_task = trials.episode_returns(episodes_per_trial).mean(dim=1).double()  # [N, K + 1]
    result: dict[str, Any] = {
        "env": family.name,
        "num_tasks": num_tasks,
        "adaptation_steps": episodes_per_trial - 1,
        "episodes_per_task": trials_per_task,
        "episodes_per_step": 1,
        "seed": seed,
        **summarize_returns(per_task),
        "tasks": [family.task_to_dict(task) for task in tasks],
    }
    if trials.successes is not None:  # families that report success (Meta-World)
        successes = trials.episode_successes(episodes_per_trial).mean(dim=1).double()
        result.update(summarize_successes(successes))  # [N, K + 1]
    if trials.unstable is not None:  # MuJoCo families: physics blow-ups, zero return after
        result["unstable_episodes"] = int(trials.unstable.sum())
    if family.name == "Navigation2D":
        result["trajectories"] = _navigation_trajectories(trials, result["tasks"], setup)
    return result


def _navigation_trajectories(trials: Trials, tasks: list[dict[str, Any]], setup: RL2Setup
                             ) -> list[dict[str, Any]]:
    """Positions in the first and the last episode of the first trial of the first tasks."""
    horizon = setup.horizon
    episodes = trials.masks.shape[2] // horizon
    examples = []
    for i, task in enumerate(tasks[:_TRAJECTORY_TASKS]):
        paths = []
        for episode in (0, episodes - 1):
            steps = slice(episode * horizon, (episode + 1) * horizon)
            alive = int(trials.masks[i, 0, steps].sum())
            paths.append(trials.inputs[i, 0, steps][:alive, :2].tolist())
        examples.append({"task": task, "before": paths[0], "after": paths[1]})
    return examples


def evaluate_rl2(config: TrainConfig, run_dir: Path, num_tasks: int,
                 adaptation_steps: int | None, episodes_per_task: int, seed: int
                 ) -> dict[str, Any]:
    """Meta-test an RL² run; ``adaptation_steps`` defaults to ``rl2.episodes_per_trial - 1``."""
    from fastadapt.run.train import load_params

    setup = build_rl2(config)
    params = load_params(run_dir, setup.initial_params())
    steps = config.rl2.episodes_per_trial - 1 if adaptation_steps is None else adaptation_steps
    if steps < 0:
        raise ConfigError(f"adaptation steps must be >= 0, got {steps}")
    return meta_test_rl2(setup, params, num_tasks, steps + 1, episodes_per_task, seed)
