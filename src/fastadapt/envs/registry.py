"""Task families by name, and their gymnasium ids ``fastadapt/<Name>-v0``.

The Meta-World families (``MetaWorld-ML1-<env>``, ``MetaWorld-ML10``; the ``metaworld``
extra) are registered when :mod:`fastadapt.envs.metaworld` is imported, which
:func:`family_names` and :func:`make_family` do on demand: importing Meta-World takes about a
second, so commands that never use it do not pay for it.
"""

from __future__ import annotations

import difflib
import importlib.util
from collections.abc import Callable
from typing import Any

import gymnasium as gym

from fastadapt.envs.bandit import BernoulliBandit
from fastadapt.envs.base import TaskEnv, TaskFamily
from fastadapt.envs.locomotion import AntDir, AntGoal, AntVel, HalfCheetahDir, HalfCheetahVel
from fastadapt.envs.navigation import Navigation2D
from fastadapt.envs.tabular_mdp import TabularMDP
from fastadapt.errors import ConfigError, UnknownEnvError

FamilyFactory = Callable[..., TaskFamily[Any]]

METAWORLD_PREFIX = "MetaWorld-"
"""Names of the Meta-World families start with it."""

_FAMILIES: dict[str, FamilyFactory] = {
    "HalfCheetahVel": HalfCheetahVel,
    "HalfCheetahDir": HalfCheetahDir,
    "AntVel": AntVel,
    "AntDir": AntDir,
    "AntGoal": AntGoal,
    "Navigation2D": Navigation2D,
    "Bandit": BernoulliBandit,
    "TabularMDP": TabularMDP,
}


def register_family(name: str, factory: FamilyFactory) -> None:
    """Add a task family (and its gymnasium id ``fastadapt/<name>-v0``)."""
    _FAMILIES[name] = factory
    _register_gym_id(name)


def metaworld_installed() -> bool:
    """Whether the ``metaworld`` package can be imported (checked without importing it)."""
    return importlib.util.find_spec("metaworld") is not None


def _load_metaworld() -> None:
    """Register the Meta-World families (importing Meta-World) if it is installed."""
    if metaworld_installed():
        import fastadapt.envs.metaworld  # noqa: F401  (registers the families)


def family_names() -> list[str]:
    """Registered family names, sorted (the Meta-World ones when it is installed)."""
    _load_metaworld()
    return sorted(_FAMILIES)


def make_family(name: str, **kwargs: Any) -> TaskFamily[Any]:
    """Build the task family ``name`` with its keyword arguments.

    Raises:
        UnknownEnvError: ``name`` is not registered (the message suggests the closest names),
            or is a Meta-World family and Meta-World is not installed.
        ConfigError: an unknown keyword or a value of the wrong type (``env.kwargs``).
    """
    if name not in _FAMILIES and name.startswith(METAWORLD_PREFIX):
        if not metaworld_installed():
            raise UnknownEnvError(
                f"env {name!r} needs Meta-World, which is not installed: "
                "pip install 'fastadapt[metaworld]'"
            )
        _load_metaworld()
    if name not in _FAMILIES:
        close = difflib.get_close_matches(name, list(_FAMILIES), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        known = [n for n in family_names() if not n.startswith(METAWORLD_PREFIX + "ML1-")]
        if len(known) < len(_FAMILIES):
            known.append(f"{METAWORLD_PREFIX}ML1-<env> for the Meta-World v3 envs")
        raise UnknownEnvError(f"unknown env {name!r}{hint} (known: {', '.join(known)})")
    try:
        return _FAMILIES[name](**kwargs)
    except TypeError as err:  # unknown keyword, or e.g. '<' between a str and an int
        raise ConfigError(f"env.kwargs {kwargs} do not fit env {name!r}: {err}") from err


def gym_id(name: str) -> str:
    """The gymnasium id of family ``name``: ``fastadapt/<name>-v0``."""
    return f"fastadapt/{name}-v0"


def describe_families() -> list[dict[str, str]]:
    """One row per registered family (built with default arguments), sorted by name.

    Returns:
        Dicts with keys ``name``, ``gym_id``, ``task_space``, ``horizon``,
        ``observation_space``, ``action_space`` and ``reference`` (all strings, for printing).
    """
    rows = []
    for name in family_names():
        family = make_family(name)
        rows.append(
            {
                "name": name,
                "gym_id": gym_id(name),
                "task_space": family.task_space,
                "horizon": str(family.horizon),
                "observation_space": _describe_space(family.observation_space),
                "action_space": _describe_space(family.action_space),
                "reference": family.reference,
            }
        )
    return rows


def _describe_space(space: gym.spaces.Space[Any]) -> str:
    """``str(space)``, or ``Box((39,), float32)`` where per-entry bounds would print arrays."""
    text = str(space)
    if isinstance(space, gym.spaces.Box) and "[" in text:
        return f"Box({space.shape}, {space.dtype})"
    return text


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


for _name in list(_FAMILIES):
    _register_gym_id(_name)
