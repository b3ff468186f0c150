"""The meta-test protocol: adaptation curves on the fixed held-out tasks (``fastadapt
evaluate``).

For each of ``N`` held-out tasks (``family.test_tasks(N)``, the same for every run and every
algorithm) the run's algorithm adapts from its final parameters, as it does
(:meth:`~fastadapt.algorithms.base.Algorithm.meta_test`): by ``K`` inner gradient steps on
``E`` episodes each (the MAML family, Finn et al. 2017, §5.3; the transfer baselines fine-tune
the same way with ``finetune.inner_lr``), or by the ``K + 1`` episodes of trials (RL²).

``evaluation.json`` holds ``returns_mean[k]``, the mean over tasks of the mean episode return
at point ``k``, and ``returns_ci95[k]``, the half-width of its normal 95% confidence interval
over tasks; ``per_task_returns`` (``N x (K + 1)``); ``episodes_per_step``, how many episodes of
experience on the task each point adds (the x-axis of ``fastadapt compare``); ``adapts_by``
(``gradient_steps`` or ``episodes``); the tasks; for families that report success
(Meta-World) ``success_rate_mean[k]``, ``success_rate_ci95[k]`` and
``per_task_success_rates``; for MuJoCo families ``unstable_episodes`` (episodes ended by a
physics blow-up); for families with positions example ``trajectories``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fastadapt.algorithms.base import Algorithm, MetaTestProtocol
from fastadapt.algorithms.memory import check_meta_test_memory
from fastadapt.errors import ConfigError, FastAdaptError
from fastadapt.evaluation.evaluation_file import read_evaluation
from fastadapt.evaluation.statistics import summarize_returns, summarize_successes
from fastadapt.quoting import shorten
from fastadapt.run.checkpoint import atomic_write, remove_leftovers
from fastadapt.run.loading import build_run_algorithm, load_final_policy, policy_fingerprint
from fastadapt.run.lock import RunLock
from fastadapt.run.rundir import EVALUATION_FILE, load_run_config
from fastadapt.run.yaml_loader import INT64
from fastadapt.sampling import make_sampler

__all__ = ["OTHER_PROTOCOLS", "evaluate", "evaluate_run", "meta_test"]

OTHER_PROTOCOLS = ("metaworld_protocol",)
"""Keys of ``evaluation.json`` that hold another protocol's result of the same policy
(:mod:`fastadapt.evaluation.metaworld_protocol`): kept when ours is written again."""


def meta_test(algorithm: Algorithm[Any], num_tasks: int, protocol: MetaTestProtocol, seed: int
              ) -> dict[str, Any]:
    """The adaptation curves of ``algorithm``'s current parameters on ``num_tasks`` held-out
    tasks, summarised for ``evaluation.json`` (see the module docstring).

    The episodes are sampled by the config's ``run.sampler`` (``run.workers`` processes or Ray
    actors): every sampler returns the same batches for a seed, so the result does not depend
    on it, only the wall time does.
    """
    family, run = algorithm.family, algorithm.config.run
    check_meta_test_memory(family, algorithm.horizon, num_tasks, protocol)  # before drawing
    tasks = family.test_tasks(num_tasks)
    protocol = protocol._replace(seed=seed)
    with make_sampler(run.sampler, family, algorithm.policy, algorithm.horizon, seed,
                      run.workers, run.ray_address) as sampler:
        curves = algorithm.meta_test(sampler, tasks, protocol)
    task_dicts = [family.task_to_dict(task) for task in tasks]
    result: dict[str, Any] = {
        "env": family.name,
        "num_tasks": num_tasks,
        "adaptation_steps": protocol.adaptation_steps,
        "episodes_per_task": protocol.episodes_per_task,
        **curves.extra,
        "episodes_per_step": curves.episodes_per_step,
        "adapts_by": algorithm.adapts_by,
        "seed": seed,
        **summarize_returns(curves.returns),
        "tasks": task_dicts,
    }
    if curves.successes is not None:  # families that report success (Meta-World)
        result.update(summarize_successes(curves.successes))
    if curves.unstable_episodes is not None:  # MuJoCo families
        result["unstable_episodes"] = curves.unstable_episodes
    if curves.trajectories is not None:  # families with positions
        result["trajectories"] = [{"task": task, **paths} for task, paths
                                  in zip(task_dicts, curves.trajectories, strict=False)]
    return result


def _count(value: int | None, name: str, minimum: int) -> int | None:
    """A CLI count checked like a config key (``None``: not given): at least ``minimum``, at
    most 64 bits (what numpy and torch take; memory is checked once the run's sizes are
    known, :func:`~fastadapt.algorithms.memory.check_meta_test_memory`)."""
    if value is not None and (isinstance(value, bool) or value < minimum):
        raise ConfigError(f"{name} must be >= {minimum}, got {shorten(value)}")
    if value is not None and value > INT64[1]:
        raise ConfigError(f"{name} must be <= {INT64[1]} (64 bits), got {shorten(value)}")
    return value


def evaluate_run(
    run_dir: Path | str,
    num_tasks: int | None = None,
    adaptation_steps: int | None = None,
    episodes_per_task: int | None = None,
    seed: int = 0,
    eval_episodes_per_task: int | None = None,
    sampler: str | None = None,
    workers: int | str | None = None,
    plugins: Iterable[str] = (),
) -> Path:
    """Meta-test a run's final parameters; writes and returns ``run_dir/evaluation.json``.

    Unset arguments take the run config's ``evaluate`` section (RL²: ``adaptation_steps``
    defaults to ``rl2.episodes_per_trial - 1``); ``eval_episodes_per_task`` (episodes sampled
    with the finally adapted policy) defaults to the episodes per step. ``sampler`` /
    ``workers`` replace the run's ``run.sampler`` / ``run.workers`` for this evaluation (the
    result is the same; only the wall time changes). The result also records the run's
    ``algorithm``. The previous ``evaluation.json`` is replaced only once the new one is
    complete.

    Raises:
        ConfigError: a count below its minimum (tasks, episodes: 1; steps, seed: 0),
            ``eval_episodes_per_task`` for an algorithm without it (RL²), an invalid
            ``sampler`` or ``workers``.
        CheckpointError: not a run directory, or its policy is missing or corrupt.
        RunLockedError: another process writes to the run directory (a training).
    """
    run_dir = Path(run_dir)
    for value, name, minimum in ((num_tasks, "tasks", 1), (adaptation_steps,
                                 "adaptation steps", 0), (episodes_per_task, "episodes", 1),
                                 (eval_episodes_per_task, "eval episodes", 1), (seed, "seed", 0)):
        _count(value, name, minimum)
    overrides = [f"run.{key}={value}" for key, value in
                 (("sampler", sampler), ("workers", workers)) if value is not None]
    config = load_run_config(run_dir, overrides, plugins)
    with RunLock(run_dir, "fastadapt evaluate"):  # one writer: not beside a training
        algorithm = build_run_algorithm(config)
        load_final_policy(algorithm, run_dir)
        defaults = config.evaluate
        protocol = MetaTestProtocol(
            algorithm.default_adaptation_steps() if adaptation_steps is None
            else adaptation_steps,
            defaults.episodes_per_task if episodes_per_task is None else episodes_per_task,
            eval_episodes_per_task)
        tasks = defaults.num_tasks if num_tasks is None else num_tasks
        result = {"algorithm": config.algorithm, **meta_test(algorithm, tasks, protocol, seed),
                  "policy_sha256": policy_fingerprint(algorithm)}
        result.update(_results_kept(run_dir, result["policy_sha256"]))
        path = run_dir / EVALUATION_FILE
        remove_leftovers(run_dir)  # of an earlier write that was killed
        atomic_write(path, json.dumps(result, indent=1).encode("utf-8"), "evaluation")
    return path


def _results_kept(run_dir: Path, fingerprint: str) -> dict[str, Any]:
    """Other protocols' results in ``run_dir``'s ``evaluation.json`` (:data:`OTHER_PROTOCOLS`)
    that belong to the same policy (``policy_sha256``), to keep beside the new result; those of
    another policy (a run trained further since) are dropped."""
    try:
        previous = read_evaluation(run_dir)
    except FastAdaptError:  # none yet, or one the readers refuse: nothing to keep
        return {}
    return {key: previous[key] for key in OTHER_PROTOCOLS
            if isinstance(previous.get(key), dict)
            and previous[key].get("policy_sha256") == fingerprint}


def evaluate(run_dir: Path | str, **options: Any) -> dict[str, Any]:
    """Meta-test a run (options as :func:`evaluate_run`) and return ``evaluation.json``'s
    content."""
    path = evaluate_run(run_dir, **options)
    result: dict[str, Any] = read_evaluation(path.parent)
    return result
