"""Plugins: task families and algorithms defined in other packages.

Two ways in, as pytest and gymnasium find theirs:

- **entry points** of an installed package, in the groups ``fastadapt.families`` and
  ``fastadapt.algorithms`` (name = the family's or algorithm's name, value =
  ``"package.module:Object"``), found without any setting;
- **modules** named by a config's ``plugins:`` list or the CLI's ``--plugin MODULE``, imported
  before the run is built; importing them registers what they define
  (:func:`fastadapt.register_family`, :func:`fastadapt.register_algorithm`). The list is saved
  with the run, so ``evaluate``, ``--resume``, ``plot`` and ``compare`` import them again.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Iterable
from typing import NamedTuple

from fastadapt.errors import PluginError


class EntryPoint(NamedTuple):
    """An entry point of an installed distribution."""

    name: str
    value: str
    """``"module:attribute"``."""
    dist_name: str
    """The distribution that declares it."""


def entry_points(group: str) -> list[EntryPoint]:
    """The entry points of ``group`` declared by installed distributions, in name order."""
    found = []
    for point in importlib.metadata.entry_points(group=group):
        dist = getattr(point, "dist", None)
        found.append(EntryPoint(point.name, point.value, getattr(dist, "name", "?")))
    return sorted(found)


def load_plugins(modules: Iterable[str]) -> None:
    """Import each plugin module (registering what it defines); a module already imported is
    not imported again.

    Raises:
        PluginError: a module cannot be imported (one line with the cause).
    """
    for module in modules:
        name = module.strip()
        if not name:
            raise PluginError("plugins: a plugin is a module name, got an empty one")
        try:
            importlib.import_module(name)
        except PluginError:
            raise
        except Exception as err:  # the plugin's own error, reported as one line
            lines = str(err).strip().splitlines()
            detail = f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__
            raise PluginError(f"plugin {name!r} cannot be imported: {detail}") from err


def resolve_target(target: object) -> object:
    """The object a ``"module:attribute"`` path names (imported), or ``target`` itself if it is
    not a path; ``None`` if the path cannot be imported (so it matches nothing)."""
    if not isinstance(target, str):
        return target
    module, _, attribute = target.partition(":")
    try:
        return getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError):
        return None
