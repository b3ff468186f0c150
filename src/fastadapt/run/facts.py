"""What the readers of a run (``plot``, ``compare``, ``report``) need to know about its
algorithm, recorded in the run directory so that they read files only: ``facts.json``.

The trainer writes it when a run starts or resumes (:func:`write_facts`): the algorithm's
name, how it adapts (``adapts_by``: the unit of a meta-test point), the steps of an episode
(``horizon``) and the parameter updates of one training iteration (``None``: not counted).
Run directories written before it existed (fastadapt 0.1.0 and 0.2.0) are read through their
``config.yaml`` and the algorithm registry instead (:func:`read_facts`): a plugin's algorithm
or family must then be importable (its config's ``plugins:`` or the CLI's ``--plugin``, which
the CLI imports once, before it reads any run).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, NamedTuple

from fastadapt.algorithms.base import AdaptsBy, Algorithm
from fastadapt.algorithms.registry import algorithm_class
from fastadapt.config import TrainConfig
from fastadapt.envs.registry import make_family
from fastadapt.errors import CheckpointError
from fastadapt.files import atomic_write, is_integer, read_json
from fastadapt.run.rundir import load_run_config

__all__ = ["FACTS_FILE", "AdaptsBy", "RunFacts", "facts_of", "read_facts", "write_facts"]

FACTS_FILE = "facts.json"


class RunFacts(NamedTuple):
    """What a run's readers need of its algorithm (see the module docstring)."""

    algorithm: str
    adapts_by: AdaptsBy
    """``"gradient_steps"`` or ``"episodes"``: what a point of the meta-test curve is."""
    horizon: int
    """Steps per episode."""
    updates_per_iteration: int | None
    """Parameter updates of one training iteration (``None``: not counted)."""


def facts_of(config: TrainConfig, algorithm: Algorithm[Any]) -> RunFacts:
    """The facts of a run of ``config`` trained by ``algorithm``."""
    cls = type(algorithm)
    return RunFacts(config.algorithm, cls.adapts_by, int(algorithm.horizon),
                    cls.updates_per_iteration(config.section))


def write_facts(run_dir: Path, config: TrainConfig, algorithm: Algorithm[Any]) -> None:
    """Write ``run_dir/facts.json`` (the trainer, when a run starts or resumes).

    Raises:
        StorageError: it cannot be written.
    """
    data = json.dumps(facts_of(config, algorithm)._asdict(), indent=1) + "\n"
    atomic_write(run_dir / FACTS_FILE, data.encode("utf-8"), "run facts")


def _checked(data: Any, path: Path) -> RunFacts:
    """``data`` read from ``path`` as :class:`RunFacts`.

    Raises:
        CheckpointError: it is not what :func:`write_facts` writes.
    """
    updates = data.get("updates_per_iteration") if isinstance(data, dict) else None
    ok = (isinstance(data, dict) and isinstance(data.get("algorithm"), str)
          and data["algorithm"] and data.get("adapts_by") in ("gradient_steps", "episodes")
          and is_integer(data.get("horizon"), 1)
          and (updates is None or is_integer(updates, 0)))  # random-init: no update
    if not ok:
        raise CheckpointError(f"{path} is not a valid facts file (algorithm, adapts_by, "
                              f"horizon, updates_per_iteration); remove it to read the "
                              f"run's config instead")
    return RunFacts(data["algorithm"], data["adapts_by"], data["horizon"],
                    data["updates_per_iteration"])


def read_facts(run_dir: Path) -> RunFacts:
    """A run's facts: its ``facts.json``, or (a run written before it existed) from its
    ``config.yaml`` through the registries (a plugin's algorithm or family must have been
    imported, or be named by the config's ``plugins:``).

    Raises:
        CheckpointError: not a run directory; a ``facts.json`` that cannot be read or is not
            valid.
        ConfigError, PluginError: its algorithm or family is unknown (a plugin not installed).
    """
    path = run_dir / FACTS_FILE
    if os.path.lexists(path):
        return _checked(read_json(path, "cannot read the run facts"), path)
    config = load_run_config(run_dir)
    cls = algorithm_class(config.algorithm)
    horizon = config.env.horizon
    if horizon is None:
        horizon = make_family(config.env.name, **config.env.kwargs).horizon
    return RunFacts(config.algorithm, cls.adapts_by, int(horizon),
                    cls.updates_per_iteration(config.section))
