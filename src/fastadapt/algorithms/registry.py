"""Algorithms by name: the built-in ones, plugins' (entry points) and those registered at run
time, as gymnasium registers envs (``envs/registration.py``).

A name maps to an :class:`~fastadapt.algorithms.base.Algorithm` subclass, or to the
``"module:Class"`` path of one, imported when the name is first used (the built-ins and entry
points of the group ``fastadapt.algorithms``), so listing names imports nothing heavy.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

import torch

from fastadapt.algorithms.base import Algorithm
from fastadapt.algorithms.memory import check_training_memory
from fastadapt.config import AlgorithmConfig, TrainConfig
from fastadapt.envs.registry import make_family
from fastadapt.errors import ConfigError, PluginError
from fastadapt.plugins import Registry

ENTRY_POINT_GROUP = "fastadapt.algorithms"
_COMMON_SECTIONS = ("algorithm", "env", "policy", "run", "evaluate", "plugins")

_BUILTIN: dict[str, str] = {
    "maml-trpo": "fastadapt.algorithms.maml.algorithm:MAMLTRPOAlgorithm",
    "maml-vpg": "fastadapt.algorithms.maml.algorithm:MAMLVPG",
    "maml-ppo": "fastadapt.algorithms.maml.algorithm:MAMLPPO",
    "promp": "fastadapt.algorithms.maml.algorithm:ProMP",
    "meta-sgd": "fastadapt.algorithms.maml.algorithm:MetaSGD",
    "rl2": "fastadapt.algorithms.rl2.algorithm:RL2",
    "pearl": "fastadapt.algorithms.pearl.algorithm:PEARL",
    "finetune": "fastadapt.algorithms.transfer.algorithm:Finetune",
    "random-init": "fastadapt.algorithms.transfer.algorithm:RandomInit",
    "oracle": "fastadapt.algorithms.transfer.algorithm:Oracle",
}


def _check(name: str, cls: object, source: str) -> type[Algorithm[Any]]:
    """``cls`` if it is an algorithm class with a usable config section.

    Raises:
        PluginError: it is not an :class:`Algorithm` subclass, or its section is unnamed or
            takes a common section's key.
    """
    if not (isinstance(cls, type) and issubclass(cls, Algorithm)):
        raise PluginError(f"algorithm {name!r} of {source} is {cls!r}, not a subclass of "
                          "fastadapt.Algorithm")
    config_class = getattr(cls, "config_class", None)
    if not (isinstance(config_class, type) and issubclass(config_class, AlgorithmConfig)):
        raise PluginError(f"algorithm {name!r} of {source} needs config_class, a subclass of "
                          "fastadapt.AlgorithmConfig")
    section = config_class.section
    if not section or section in _COMMON_SECTIONS:
        raise PluginError(f"algorithm {name!r} of {source}: its config class "
                          f"{config_class.__name__} must name its section (section = "
                          f"{name!r}), not {section!r}")
    return cls


ALGORITHMS: Registry[type[Algorithm[Any]]] = Registry("algorithm", ENTRY_POINT_GROUP, _BUILTIN,
                                                      _check)
"""Every algorithm by name."""


def register_algorithm(name: str, algorithm: type[Algorithm[Any]] | str, source: str = ""
                       ) -> None:
    """Make ``algorithm`` (a class, or its ``"module:Class"`` path) trainable as ``name``.

    Registering the same class (or path) under the same name again does nothing.

    Raises:
        PluginError: ``name`` is taken by another algorithm (the message names both
            sources), or the class is not an :class:`Algorithm` with a named section.
    """
    ALGORITHMS.register(name, algorithm, source)


def algorithm_names() -> list[str]:
    """Registered algorithm names, sorted."""
    return ALGORITHMS.names()


def algorithm_class(name: str) -> type[Algorithm[Any]]:
    """The algorithm class registered as ``name`` (imported on first use).

    Raises:
        ConfigError: ``name`` is not registered (the message suggests close names and says
            how to add one).
        PluginError: its module cannot be imported, or it is not an algorithm class.
    """
    cls = ALGORITHMS.get(name)
    if cls is None:
        known = ALGORITHMS.names()
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(
            f"unknown algorithm {name!r}{hint} (known: {', '.join(known)}; "
            "a plugin adds one: an entry point in the group 'fastadapt.algorithms', "
            "plugins: [module] in the config or --plugin MODULE)")
    return cls


def section_names() -> dict[str, list[str]]:
    """Each config section's key and the algorithms that read it (for error messages)."""
    sections: dict[str, list[str]] = {}
    for name in algorithm_names():
        try:
            section = algorithm_class(name).config_class.section
        except (ConfigError, PluginError):
            continue
        sections.setdefault(section, []).append(name)
    return sections


def build_algorithm(config: TrainConfig, device: torch.device) -> Algorithm[Any]:
    """The algorithm of a resolved ``config`` on its task family, on ``device`` (a bad env,
    policy or setting fails here, before any file is written; so does a network or an
    iteration that cannot fit in memory, before it is allocated:
    :func:`~fastadapt.algorithms.memory.check_training_memory`).

    Raises:
        ConfigError, UnknownEnvError, FamilyError, PluginError: one line naming the cause.
    """
    family = make_family(config.env.name, **config.env.kwargs)
    cls = algorithm_class(config.algorithm)
    check_training_memory(config, family)
    return cls(family, config, device)


def describe_algorithms() -> list[dict[str, str]]:
    """One row per registered algorithm, sorted by name: ``name``, ``section`` (its config
    section's key), ``adapts_by``, ``source`` and ``summary`` (its docstring's first
    sentence, plain)."""
    rows = []
    for name in algorithm_names():
        try:
            cls = algorithm_class(name)
        except (ConfigError, PluginError) as err:  # a broken plugin is listed, not fatal
            rows.append({"name": name, "section": "?", "adapts_by": "?",
                         "source": ALGORITHMS.sources[name],
                         "summary": f"(cannot be loaded: {err})"})
            continue
        rows.append({"name": name, "section": cls.config_class.section,
                     "adapts_by": cls.adapts_by, "source": ALGORITHMS.sources[name],
                     "summary": plain_summary(cls.__doc__)})
    return rows


def plain_summary(docstring: str | None) -> str:
    """A docstring's first sentence as plain text: reST roles and literals unwrapped
    (``:class:`MAMLTRPO``` -> ``MAMLTRPO``), its lines joined."""
    paragraph = (docstring or "").strip().split("\n\n")[0]
    text = " ".join(paragraph.split())
    text = re.sub(r":[a-z]+:`~?([^`]+)`", lambda m: m.group(1).rpartition(".")[2], text)
    text = text.replace("``", "")
    end = re.search(r"(?<=[.!?])\s+(?=[A-Z(])", text)
    return text[:end.start()] if end else text
