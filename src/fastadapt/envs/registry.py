"""Task families by name, and their gymnasium ids ``fastadapt/<Name>-v0``.

A name maps to a factory (usually the family's class) called with ``env.kwargs``. Besides the
built-in families, plugins add theirs through entry points of the group ``fastadapt.families``
(read when a name is first looked up) or :func:`register_family` in a module the config's
``plugins:`` (``--plugin``) imports. The Meta-World families (``MetaWorld-ML1-<env>``,
``MetaWorld-ML10``, ``-ML25``, ``-ML45``; the ``metaworld`` extra) are registered when first
needed: importing Meta-World takes about a second, so commands that never use it do not pay
for it.

Every family is checked against the contract of :mod:`fastadapt.envs.contract` the first time
it is built in a process (with given keyword arguments).
"""

from __future__ import annotations

import difflib
import importlib.util
import inspect
from typing import Any

import gymnasium as gym

from fastadapt.envs.bandit import BernoulliBandit
from fastadapt.envs.base import FamilyFactory, TaskEnv, TaskFamily
from fastadapt.envs.contract import check_family
from fastadapt.envs.locomotion import AntDir, AntGoal, AntVel, HalfCheetahDir, HalfCheetahVel
from fastadapt.envs.navigation import Navigation2D
from fastadapt.envs.point_robot import SparsePointRobot
from fastadapt.envs.tabular_mdp import TabularMDP
from fastadapt.errors import (
    ConfigError,
    FamilyError,
    FastAdaptError,
    PluginError,
    UnknownEnvError,
)
from fastadapt.plugins import Registry
from fastadapt.quoting import shorten, shorten_text

ENTRY_POINT_GROUP = "fastadapt.families"
METAWORLD_PREFIX = "MetaWorld-"
"""Names of the Meta-World families start with it."""

_BUILTIN: dict[str, FamilyFactory] = {
    "HalfCheetahVel": HalfCheetahVel,
    "HalfCheetahDir": HalfCheetahDir,
    "AntVel": AntVel,
    "AntDir": AntDir,
    "AntGoal": AntGoal,
    "Navigation2D": Navigation2D,
    "SparsePointRobot": SparsePointRobot,
    "Bandit": BernoulliBandit,
    "TabularMDP": TabularMDP,
}
_checked: set[tuple[str, str]] = set()
_metaworld = {"loaded": False}


def _callable(name: str, factory: object, source: str) -> FamilyFactory:
    """``factory`` if it can be called to build a family.

    Raises:
        PluginError: it is not callable.
    """
    if not callable(factory):
        raise PluginError(f"task family {name!r} of {source}: {factory!r} is not a class or "
                          "factory")
    return factory


def gym_id(name: str) -> str:
    """The gymnasium id of family ``name``: ``fastadapt/<name>-v0``."""
    return f"fastadapt/{name}-v0"


def _make_task_env(**kwargs: Any) -> TaskEnv[Any]:
    """Gymnasium entry point: ``family``, optional ``task`` and ``horizon``, then family kwargs."""
    family = kwargs.pop("family")
    task = kwargs.pop("task", None)
    horizon = kwargs.pop("horizon", None)
    return make_family(family, **kwargs).make_env(task, horizon)


def _register_gym_id(name: str) -> None:
    env_id = gym_id(name)
    if env_id not in gym.registry:
        gym.register(id=env_id, entry_point=_make_task_env, kwargs={"family": name})


FAMILIES: Registry[FamilyFactory] = Registry("task family", ENTRY_POINT_GROUP, _BUILTIN,
                                             _callable, on_register=_register_gym_id)
"""Every task family's factory by name."""


def register_family(name: str, factory: FamilyFactory | str, source: str = "") -> None:
    """Make the family built by ``factory(**kwargs)`` (or the ``"module:factory"`` path of one)
    trainable as ``name``, with the gymnasium id ``fastadapt/<name>-v0``.

    Registering the same factory under the same name again does nothing.

    Raises:
        PluginError: ``name`` is taken by another factory (the message names both sources).
    """
    FAMILIES.register(name, factory, source)


def metaworld_installed() -> bool:
    """Whether the ``metaworld`` package can be imported (checked without importing it)."""
    return importlib.util.find_spec("metaworld") is not None


def _load_metaworld() -> None:
    """Register the Meta-World families (importing Meta-World) if it is installed."""
    if _metaworld["loaded"] or not metaworld_installed():
        return
    _metaworld["loaded"] = True
    from fastadapt.envs.metaworld import family_factories

    for name, factory in family_factories().items():
        FAMILIES.register(name, factory, "fastadapt (Meta-World)")


def family_names() -> list[str]:
    """Registered family names, sorted (the Meta-World ones when it is installed)."""
    _load_metaworld()
    return FAMILIES.names()


def family_source(name: str) -> str:
    """Who registered ``name`` (``fastadapt``, or a plugin)."""
    return FAMILIES.sources.get(name, "?")


def _unknown(name: str) -> UnknownEnvError:
    names = family_names()
    close = difflib.get_close_matches(name, names, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    known = [n for n in names if not n.startswith(METAWORLD_PREFIX + "ML1-")]
    if len(known) < len(names):
        known.append(f"{METAWORLD_PREFIX}ML1-<env> for the Meta-World v3 envs")
    return UnknownEnvError(
        f"unknown env {name!r}{hint} (known: {', '.join(known)}; a plugin adds one: an entry "
        "point in the group 'fastadapt.families', or register_family in a module named by "
        "plugins: in the config or --plugin MODULE)")


def _factory(name: str) -> FamilyFactory:
    """The factory registered as ``name`` (imported on first use)."""
    if name.startswith(METAWORLD_PREFIX) and FAMILIES.get(name) is None:
        if not metaworld_installed():
            raise UnknownEnvError(f"env {name!r} needs Meta-World, which is not installed: "
                                  "pip install 'fastadapt[metaworld]'")
        _load_metaworld()
    factory = FAMILIES.get(name)
    if factory is None:
        raise _unknown(name)
    return factory


def make_family(name: str, check: bool = True, **kwargs: Any) -> TaskFamily[Any]:
    """Build the task family ``name`` with its keyword arguments, checked against the family
    contract (:mod:`fastadapt.envs.contract`) the first time in this process (unless
    ``check`` is false: listing families builds each without stepping it).

    Raises:
        UnknownEnvError: ``name`` is not registered (the message suggests the closest names
            and says how to register one), or is a Meta-World family and Meta-World is not
            installed.
        ConfigError: keywords the factory does not take (``env.kwargs``), or values it
            refuses as a wrong type.
        FamilyError: the factory fails otherwise, does not build a
            :class:`~fastadapt.envs.base.TaskFamily`, or the family breaks its contract.
        PluginError: a plugin's family cannot be imported.
    """
    factory = _factory(name)
    try:
        inspect.signature(factory).bind(**kwargs)
    except TypeError as err:
        raise ConfigError(f"env.kwargs {shorten(kwargs)} do not fit env {name!r}: "
                          f"{shorten_text(str(err), 200)}") from err
    except ValueError:  # no signature to inspect (a builtin): let the call decide
        pass
    try:
        family = factory(**kwargs)
    except (ConfigError, FamilyError, UnknownEnvError):
        raise
    except TypeError as err:
        raise FamilyError(f"task family {name!r} cannot be built with env.kwargs "
                          f"{shorten(kwargs)}: {err}") from err
    if not isinstance(family, TaskFamily):
        raise FamilyError(f"task family {name!r}: its factory returned "
                          f"{type(family).__name__}, not a fastadapt TaskFamily")
    key = (name, repr(sorted(kwargs.items())))
    if check and key not in _checked:
        check_family(family, name)
        _checked.add(key)
    return family


def describe_families() -> list[dict[str, str]]:
    """One row per registered family (built with default arguments), sorted by name.

    Returns:
        Dicts with keys ``name``, ``gym_id``, ``task_space``, ``horizon``,
        ``observation_space``, ``action_space``, ``reference`` and ``source`` (all strings,
        for printing). A plugin's family that cannot be built is listed with the reason in
        ``task_space`` and ``?`` elsewhere.
    """
    rows = []
    for name in family_names():
        try:
            family = make_family(name, check=False)
        except FastAdaptError as err:
            rows.append({"name": name, "gym_id": gym_id(name),
                         "task_space": f"(cannot be built: {err})", "horizon": "?",
                         "observation_space": "?", "action_space": "?", "reference": "?",
                         "source": family_source(name)})
            continue
        rows.append(
            {
                "name": name,
                "gym_id": gym_id(name),
                "task_space": family.task_space,
                "horizon": str(family.horizon),
                "observation_space": _describe_space(family.observation_space),
                "action_space": _describe_space(family.action_space),
                "reference": family.reference,
                "source": family_source(name),
            }
        )
    return rows


def _describe_space(space: gym.spaces.Space[Any]) -> str:
    """``str(space)``, or ``Box((39,), float32)`` where per-entry bounds would print arrays."""
    text = str(space)
    if isinstance(space, gym.spaces.Box) and "[" in text:
        return f"Box({space.shape}, {space.dtype})"
    return text
