"""Task families by name, and their gymnasium ids ``fastadapt/<Name>-v0``."""

from __future__ import annotations

import difflib
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


def family_names() -> list[str]:
    """Registered family names, sorted."""
    return sorted(_FAMILIES)


def make_family(name: str, **kwargs: Any) -> TaskFamily[Any]:
    """Build the task family ``name`` with its keyword arguments.

    Raises:
        UnknownEnvError: ``name`` is not registered (the message suggests the closest names).
        ConfigError: an unknown keyword or a value of the wrong type (``env.kwargs``).
    """
    if name not in _FAMILIES:
        close = difflib.get_close_matches(name, list(_FAMILIES), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownEnvError(f"unknown env {name!r}{hint} (known: {', '.join(family_names())})")
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
                "observation_space": str(family.observation_space),
                "action_space": str(family.action_space),
                "reference": family.reference,
            }
        )
    return rows


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
