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
from collections.abc import Callable, Iterable, Mapping
from typing import Generic, NamedTuple, TypeVar

from fastadapt.errors import PluginError

T = TypeVar("T")


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


class Registry(Generic[T]):
    """Names of one kind of object (task families, algorithms), from three sources, as
    gymnasium registers its envs: built-ins given as ``"module:attribute"`` paths, imported on
    first use; the entry points of ``group``, read once at the first lookup; and
    :meth:`register`, which a plugin module calls when imported.

    Args:
        kind: what a name names, for messages (``"task family"``).
        group: the entry-point group (``fastadapt.families``).
        builtin: fastadapt's own names and their objects or paths.
        check: ``(name, object, source) -> object``, the object checked (raises
            :class:`~fastadapt.errors.PluginError` naming ``source`` if it is unusable).
        on_register: called with each new name (e.g. to register a gymnasium id).
    """

    def __init__(self, kind: str, group: str, builtin: Mapping[str, T | str],
                 check: Callable[[str, object, str], T],
                 on_register: Callable[[str], None] | None = None) -> None:
        self.kind, self.group = kind, group
        self.targets: dict[str, T | str] = dict(builtin)
        """Each name's object, or its path until first used."""
        self.sources: dict[str, str] = dict.fromkeys(builtin, "fastadapt")
        """Who registered each name (``fastadapt``, ``the plugin <distribution>``, a module)."""
        self.entry_points_read = False
        self._check, self._on_register = check, on_register
        for name in builtin:
            self._registered(name)

    def _registered(self, name: str) -> None:
        if self._on_register is not None:
            self._on_register(name)

    def register(self, name: str, target: T | str, source: str = "") -> None:
        """Make ``target`` (an object, or its ``"module:attribute"`` path) known as ``name``.

        Registering the same object (or a path to it) under the same name again does nothing.

        Raises:
            PluginError: ``name`` is taken by another object (the message names both
                sources), or the object fails the check.
        """
        source = source or (target if isinstance(target, str)
                            else getattr(target, "__module__", repr(target)))
        if not isinstance(target, str):
            self._check(name, target, source)
        known = self.targets.get(name)
        if known is not None:
            if known == target or resolve_target(known) is resolve_target(target):
                return  # the same again (an entry point and an import of its module)
            raise PluginError(f"{self.kind} {name!r} is registered twice: by "
                              f"{self.sources[name]} and by {source}")
        self.targets[name], self.sources[name] = target, source
        self._registered(name)

    def read_entry_points(self) -> None:
        """Register what installed distributions declare in :attr:`group` (once)."""
        if self.entry_points_read:
            return
        self.entry_points_read = True
        for point in entry_points(self.group):
            self.register(point.name, point.value, f"the plugin {point.dist_name}")

    def names(self) -> list[str]:
        """Every registered name, sorted (entry points included)."""
        self.read_entry_points()
        return sorted(self.targets)

    def get(self, name: str) -> T | None:
        """The object registered as ``name`` (imported and checked on first use), or
        ``None`` if the name is unknown.

        Raises:
            PluginError: its module cannot be imported, or the object fails the check.
        """
        self.read_entry_points()
        target = self.targets.get(name)
        if not isinstance(target, str):
            return target
        module, _, attribute = target.partition(":")
        try:
            loaded = getattr(importlib.import_module(module), attribute)
        except (ImportError, AttributeError) as err:
            raise PluginError(f"{self.kind} {name!r} of {self.sources[name]} cannot be imported "
                              f"from {target}: {type(err).__name__}: {err}") from err
        checked = self._check(name, loaded, self.sources[name])
        self.targets[name] = checked
        return checked
