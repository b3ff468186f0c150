"""Meta-World's own meta-test protocol on a run (``fastadapt evaluate RUN --protocol
metaworld``): ``metaworld.evaluation.metalearning_evaluation`` scores the run's agent
(:class:`~fastadapt.integrations.metaworld.MetaWorldAgent`) on the test split of the run's
benchmark, made by Meta-World (``gym.make_vec("Meta-World/ML1-test", ...)``, ``ML10-test``,
``ML25-test``, ``ML45-test``) with the run's ``env.kwargs.benchmark_seed``, so that its test
goals are those of :meth:`~fastadapt.envs.metaworld.MetaWorldFamily.test_tasks`.

The result goes into ``RUN/evaluation.json`` under ``"metaworld_protocol"``, next to our
protocol's (:mod:`.protocol`); a run without an ``evaluation.json`` is first evaluated with
ours (the config's ``evaluate`` section), since every reader of the file needs it. How the two
protocols differ: the Meta-World results page (``docs/results/metaworld.md``).

Seeding: Meta-World seeds every sub-env with the benchmark seed (it also fixes the goals);
:func:`metaworld_evaluation` then seeds them all with ``seed`` (the order in which each
sub-env cycles through its goals) and the agent's noise with ``seed``: the same ``seed`` gives
the same numbers.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastadapt.algorithms.base import Algorithm
from fastadapt.errors import ConfigError
from fastadapt.evaluation.evaluation_file import read_evaluation
from fastadapt.evaluation.protocol import OTHER_PROTOCOLS, evaluate_run
from fastadapt.integrations.metaworld import MetaWorldAgent
from fastadapt.quoting import shorten
from fastadapt.run.checkpoint import atomic_write, remove_leftovers
from fastadapt.run.loading import build_run_algorithm, load_final_policy, policy_fingerprint
from fastadapt.run.lock import RunLock
from fastadapt.run.rundir import EVALUATION_FILE, load_run_config

if TYPE_CHECKING:
    import gymnasium as gym

    from fastadapt.envs.metaworld import MetaWorldFamily

__all__ = [
    "KEY",
    "PROTOCOLS",
    "MetaWorldSettings",
    "check_protocol",
    "evaluate_from_cli",
    "evaluate_run_metaworld",
    "make_test_envs",
    "metaworld_evaluation",
    "settings_from_options",
    "summary_line",
]

PROTOCOLS = ("fastadapt", "metaworld")
"""The protocols ``fastadapt evaluate --protocol`` runs."""
KEY = OTHER_PROTOCOLS[0]
"""Where ``evaluation.json`` holds Meta-World's protocol's result (``"metaworld_protocol"``,
kept when ours is written again for the same policy)."""
MAX_GOALS_PER_CLASS = 50


@dataclass(frozen=True)
class MetaWorldSettings:
    """The sizes of Meta-World's protocol (its defaults: ``metalearning_evaluation`` and the
    ``Meta-World/ML*-test`` vector envs)."""

    num_evals: int = 10
    """Rounds: each samples the next goal of every sub-env, adapts and evaluates."""
    adaptation_steps: int = 1
    """Calls of ``adapt`` per round, each after ``adaptation_episodes`` episodes."""
    adaptation_episodes: int = 10
    """Episodes per sub-env before each ``adapt`` (actions sampled)."""
    evaluation_episodes: int = 3
    """Episodes per test class scored after adapting (deterministic actions, each ends at
    success)."""
    meta_batch_size: int = 20
    """Sub-envs (a multiple of the test classes), each cycling through its share of goals."""
    total_tasks_per_cls: int = 40
    """Test goals per class (the first ones of the benchmark's test split)."""
    max_episode_steps: int = 500
    """Steps per episode (Meta-World's ``max_path_length``)."""

    def check(self, num_classes: int) -> None:
        """Raises ConfigError: a size below its minimum, or one that does not divide as
        Meta-World needs (checked before it asserts)."""
        for name, value in asdict(self).items():
            minimum = 0 if name == "adaptation_steps" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ConfigError(f"Meta-World protocol: {name} must be an integer >= "
                                  f"{minimum}, got {shorten(value)}")
        if self.meta_batch_size % num_classes:
            raise ConfigError(f"Meta-World protocol: meta_batch_size {self.meta_batch_size} "
                              f"must be a multiple of the {num_classes} test classes")
        envs_per_class = self.meta_batch_size // num_classes
        if (self.total_tasks_per_cls > MAX_GOALS_PER_CLASS
                or self.total_tasks_per_cls % envs_per_class):
            raise ConfigError(
                f"Meta-World protocol: total_tasks_per_cls {self.total_tasks_per_cls} must be "
                f"at most {MAX_GOALS_PER_CLASS} and a multiple of the {envs_per_class} sub-envs "
                "per test class (meta_batch_size / classes)")
        if self.max_episode_steps > 500:
            raise ConfigError(f"Meta-World protocol: max_episode_steps must be <= 500 "
                              f"(Meta-World's max_path_length), got {self.max_episode_steps}")


def _metaworld_family(algorithm: Algorithm[Any], run_dir: Path) -> MetaWorldFamily:
    """The run's family, checked to be a Meta-World benchmark.

    Raises:
        ConfigError: the run is not a Meta-World run.
    """
    family = algorithm.family
    if not family.name.startswith("MetaWorld-"):
        raise ConfigError(f"--protocol metaworld needs a Meta-World run; {run_dir} trained on "
                          f"{family.name}")
    from fastadapt.envs.metaworld import MetaWorldFamily

    if not isinstance(family, MetaWorldFamily):
        raise ConfigError(f"--protocol metaworld needs a Meta-World run; {run_dir} trained on "
                          f"{family.name} ({type(family).__name__})")
    return family


def make_test_envs(family: MetaWorldFamily, settings: MetaWorldSettings,
                   recurrent_info_in_obs: bool) -> gym.vector.SyncVectorEnv[Any, Any]:
    """Meta-World's test-split vector env of ``family``'s benchmark, seeded (goals included)
    with its ``benchmark_seed``.

    Raises:
        ConfigError: sizes Meta-World cannot divide (:meth:`MetaWorldSettings.check`).
    """
    import gymnasium as gym
    import metaworld  # noqa: F401  (registers the Meta-World/ vector envs)

    settings.check(len(family.classes("test")))
    name: dict[str, Any] = {"env_name": family.env_name} if family.benchmark == "ML1" else {}
    envs = gym.make_vec(
        f"Meta-World/{family.benchmark}-test", seed=family.benchmark_seed,
        total_tasks_per_cls=settings.total_tasks_per_cls,
        meta_batch_size=settings.meta_batch_size, vector_strategy="sync",
        max_episode_steps=settings.max_episode_steps,
        recurrent_info_in_obs=recurrent_info_in_obs, **name)
    assert isinstance(envs, gym.vector.SyncVectorEnv)  # vector_strategy="sync"
    return envs


def metaworld_evaluation(algorithm: Algorithm[Any], family: MetaWorldFamily,
                         settings: MetaWorldSettings, seed: int) -> dict[str, Any]:
    """Meta-World's ``metalearning_evaluation`` of ``algorithm``'s current parameters.

    Returns:
        ``success_rate`` and ``mean_return`` (Meta-World's means over rounds),
        ``per_task_success_rates`` (test class: rate), ``settings``, ``seed``,
        ``benchmark`` (``env_name`` for ML1), ``benchmark_seed`` and ``wall_time_s``.

    Raises:
        ConfigError: sizes Meta-World cannot divide.
        AgentError: the algorithm builds no agent.
    """
    from metaworld.evaluation import metalearning_evaluation

    start = time.perf_counter()
    agent = algorithm.make_agent(settings.meta_batch_size, seed)
    envs = make_test_envs(family, settings, agent.acts_on_rewards)
    try:
        envs.call("seed", seed)  # each sub-env's cycle through its goals
        success, mean_return, per_task = metalearning_evaluation(
            MetaWorldAgent(agent, recurrent_info_in_obs=agent.acts_on_rewards), envs,
            num_evals=settings.num_evals, adaptation_steps=settings.adaptation_steps,
            adaptation_episodes=settings.adaptation_episodes,
            evaluation_episodes=settings.evaluation_episodes)
    finally:
        envs.close()
    result: dict[str, Any] = {
        "protocol": "metaworld.evaluation.metalearning_evaluation",
        "benchmark": family.benchmark,
        **({"env_name": family.env_name} if family.benchmark == "ML1" else {}),
        "benchmark_seed": family.benchmark_seed,
        "success_rate": float(success),
        "mean_return": float(mean_return),
        "per_task_success_rates": {name: float(rate) for name, rate
                                   in sorted(per_task.items())},
        "settings": asdict(settings),
        "seed": seed,
        "wall_time_s": round(time.perf_counter() - start, 1),
    }
    return result


def evaluate_run_metaworld(run_dir: Path | str, settings: MetaWorldSettings | None = None,
                           seed: int = 0, sampler: str | None = None,
                           workers: int | str | None = None, plugins: tuple[str, ...] = (),
                           ) -> tuple[Path, dict[str, Any], bool]:
    """Score a run's final parameters with Meta-World's protocol and add the result to its
    ``evaluation.json`` under :data:`KEY` (our protocol's result kept; a run without the file
    is first evaluated with ours: ``sampler``, ``workers`` and ``seed`` go to it).

    Returns:
        The path of ``evaluation.json``, the result written under :data:`KEY`, and whether
        our protocol ran first.

    Raises:
        ConfigError: not a Meta-World run, or sizes Meta-World cannot divide.
        CheckpointError: not a run directory, its policy is missing or corrupt, or its
            ``evaluation.json`` is not a valid evaluation.
        RunLockedError: another process writes to the run directory (a training).
    """
    run_dir = Path(run_dir)
    settings = settings or MetaWorldSettings()
    if isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed must be >= 0, got {shorten(seed)}")
    config = load_run_config(run_dir, (), plugins)
    with RunLock(run_dir, "fastadapt evaluate --protocol metaworld"):
        algorithm = build_run_algorithm(config)
        family = _metaworld_family(algorithm, run_dir)
        settings.check(len(family.classes("test")))
        load_final_policy(algorithm, run_dir)
    fingerprint = policy_fingerprint(algorithm)
    ours_first = not (run_dir / EVALUATION_FILE).exists() or (
        read_evaluation(run_dir).get("policy_sha256") != fingerprint)
    if ours_first:  # every reader needs our result, of this policy (not of an older one)
        evaluate_run(run_dir, seed=seed, sampler=sampler, workers=workers, plugins=plugins)
    with RunLock(run_dir, "fastadapt evaluate --protocol metaworld"):
        result = {**metaworld_evaluation(algorithm, family, settings, seed),
                  "policy_sha256": fingerprint}
        evaluation = read_evaluation(run_dir)  # read now: the newest one is kept
        evaluation[KEY] = result
        path = run_dir / EVALUATION_FILE
        remove_leftovers(run_dir)
        atomic_write(path, json.dumps(evaluation, indent=1).encode("utf-8"), "evaluation")
    return path, result, ours_first


def settings_from_options(**options: int | None) -> MetaWorldSettings:
    """Meta-World's defaults with the given (not ``None``) sizes replaced."""
    return replace(MetaWorldSettings(), **{k: v for k, v in options.items() if v is not None})


def check_protocol(name: str) -> None:
    """Raises ConfigError: ``name`` is not one of :data:`PROTOCOLS`."""
    if name not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {shorten(name)} ({', '.join(PROTOCOLS)})")


CLI_SIZES = {"num_evals": "metaworld_evals", "adaptation_steps": "adaptation_steps",
             "adaptation_episodes": "episodes", "evaluation_episodes": "eval_episodes",
             "meta_batch_size": "meta_batch_size", "total_tasks_per_cls": "tasks",
             "max_episode_steps": "horizon"}
"""The ``fastadapt evaluate`` option behind each of :class:`MetaWorldSettings`' sizes."""
METAWORLD_ONLY = ("metaworld_evals", "meta_batch_size", "horizon")


def evaluate_from_cli(options: dict[str, Any]) -> list[str] | None:
    """``fastadapt evaluate`` with ``--protocol``: ``None`` for ours (checked to be given
    none of Meta-World's own options), else Meta-World's protocol run (sizes from
    :data:`CLI_SIZES`) and the lines to print.

    Raises:
        ConfigError: an unknown protocol, or an option of Meta-World's given to ours; and as
            :func:`evaluate_run_metaworld`.
    """
    check_protocol(options["protocol"])
    if options["protocol"] == "fastadapt":
        for option in METAWORLD_ONLY:
            if options[option] is not None:
                raise ConfigError(f"--{option.replace('_', '-')} is an option of --protocol "
                                  "metaworld")
        return None
    settings = settings_from_options(**{size: options[option]
                                        for size, option in CLI_SIZES.items()})
    path, result, ours_first = evaluate_run_metaworld(options["run_dir"], settings, options["seed"],
                                              options["sampler"], options["workers"],
                                              tuple(options["plugin"]))
    lines = [f"{path} was missing or of another policy: evaluated with fastadapt's protocol "
             "first (the config's evaluate section)"] if ours_first else []
    return [*lines, summary_line(result), f"written: {path}"]


def summary_line(result: dict[str, Any]) -> str:
    """One line of a :data:`KEY` result for ``fastadapt evaluate``."""
    settings = result["settings"]
    name = f"ML1 {result['env_name']}" if "env_name" in result else result["benchmark"]
    return (f"Meta-World's protocol on the {name} test goals: success "
            f"{100 * result['success_rate']:.1f}%, return {result['mean_return']:.1f} "
            f"({settings['num_evals']} rounds x {settings['meta_batch_size']} envs, "
            f"{settings['adaptation_episodes']} adaptation episodes x "
            f"{settings['adaptation_steps']} steps, {settings['evaluation_episodes']} "
            f"evaluation episodes; seed {result['seed']}, {result['wall_time_s']:.0f} s)")
