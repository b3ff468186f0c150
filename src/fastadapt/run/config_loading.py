"""Reading and writing a :class:`~fastadapt.config.TrainConfig`: YAML files, the configs that
ship with the package, ``--set`` overrides, plugins, renamed keys and older formats.

A config file names its ``algorithm`` and holds that algorithm's section under the section's
key (``maml-trpo:``, ``rl2:``, ``finetune:``, ...), plus ``env``, ``policy``, ``run``,
``evaluate`` and optionally ``plugins``. A section of another algorithm, or a key this release
renamed, is a one-line error naming the key to use. The config a run saves starts with
``format: 2``; the all-sections config that fastadapt 0.1.0 saved in its run directories is
recognised and converted (:mod:`fastadapt.run.format_0_1`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from fastadapt.algorithms.registry import algorithm_class, section_names
from fastadapt.config import (
    AlgorithmConfig,
    EnvConfig,
    EvalConfig,
    PolicyConfig,
    RunConfig,
    TrainConfig,
)
from fastadapt.errors import ConfigError
from fastadapt.plugins import load_plugins
from fastadapt.quoting import shorten, shorten_text
from fastadapt.run.format_0_1 import is_0_1_config, migrate_0_1
from fastadapt.run.yaml_config import apply_overrides, from_dict, read_mapping, to_dict

CONFIG_FORMAT = 2
CHANGES_KEY = "changes"
"""A run's saved config lists under this key the changes ``--resume`` made
(:mod:`fastadapt.run.resume`); it is a record, not a setting, and is not read into the config."""
"""The format of the configs this release writes (0.1.0's, without the key, is 1)."""
_COMMON: dict[str, type[Any]] = {"env": EnvConfig, "policy": PolicyConfig, "run": RunConfig,
                                 "evaluate": EvalConfig}
_RENAMED_KEYS = {"meta_batch_size": "tasks_per_iteration"}


def _plugins_of(data: Mapping[str, Any], extra: Iterable[str]) -> tuple[str, ...]:
    listed = data.get("plugins", [])
    if isinstance(listed, str) or not isinstance(listed, list | tuple) or not all(
            isinstance(module, str) for module in listed):
        raise ConfigError("config key 'plugins' must be a list of module names, got "
                          f"{shorten(listed)}")
    return tuple(dict.fromkeys([*listed, *extra]))


def _check_format(data: dict[str, Any]) -> None:
    version = data.pop("format", CONFIG_FORMAT)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ConfigError(f"config key 'format' must be a positive int, got {shorten(version)}")
    if version > CONFIG_FORMAT:
        raise ConfigError(f"this config has format {version}, written by a newer fastadapt; "
                          f"this one reads format {CONFIG_FORMAT} and older: upgrade fastadapt")


def _stray_section_error(key: str, algorithm: str, section: type[AlgorithmConfig]
                         ) -> ConfigError:
    """The one line for a top-level ``key`` that is not this algorithm's section."""
    renamed, name = key.replace("_", "-"), section.section
    if key == "maml":
        return ConfigError(
            f"config section 'maml' was renamed: its keys now go under the algorithm's own "
            f"section '{name}:' (maml.meta_batch_size is {name}.tasks_per_iteration)")
    if key in ("trpo", "ppo"):
        if key in {field.name for field in dataclasses.fields(section)}:
            return ConfigError(f"config section '{key}' moved into the algorithm's section: "
                               f"'{name}.{key}'")
        return ConfigError(f"config section '{key}' is not read by algorithm {shorten(algorithm)} "
                           f"(the algorithms with {key.upper()} settings read them inside "
                           "their own section, e.g. maml-trpo.trpo, rl2.ppo): remove it")
    if key != renamed and renamed in section_names():
        return ConfigError(f"config section '{key}' was renamed: '{renamed}'")
    readers = section_names().get(key)
    if readers:
        return ConfigError(f"config section '{key}' is read by {', '.join(readers)}, not by "
                           f"algorithm {shorten(algorithm)}, whose section is '{name}': remove it "
                           f"or change algorithm")
    known = ", ".join(["algorithm", "plugins", *_COMMON, name])
    return ConfigError(f"unknown config key '{shorten_text(key)}'; valid keys: {known}")


def train_config_from_dict(data: Mapping[str, Any], plugins: Iterable[str] = ()
                           ) -> TrainConfig:
    """Build a :class:`TrainConfig` from a config's mapping (plugins imported first).

    Args:
        data: the config as YAML gives it, overrides applied.
        plugins: modules to import besides the config's own ``plugins:`` (``--plugin``).

    Raises:
        ConfigError: an unknown algorithm, a section that is not the algorithm's, a renamed
            key (the message names the new one), or any error of
            :func:`~fastadapt.run.yaml_config.from_dict`.
        PluginError: a plugin cannot be imported or registers a taken name.
    """
    data = dict(data)
    _check_format(data)
    data.pop(CHANGES_KEY, None)
    if is_0_1_config(data):
        data = migrate_0_1(data)
    modules = _plugins_of(data, plugins)
    load_plugins(modules)
    algorithm = data.get("algorithm", TrainConfig.algorithm)
    if not isinstance(algorithm, str):
        raise ConfigError(f"config key 'algorithm' must be a str, got {shorten(algorithm)}")
    cls = algorithm_class(algorithm)
    section = cls.config_class.section
    for key in data:
        if key not in ("algorithm", "plugins", section, *_COMMON):
            raise _stray_section_error(str(key), algorithm, cls.config_class)
    section_data = data.get(section, {})
    if isinstance(section_data, Mapping):
        for old, new in _RENAMED_KEYS.items():
            if old in section_data:
                raise ConfigError(f"config key '{section}.{old}' was renamed: "
                                  f"'{section}.{new}'")
    common = {key: from_dict(kind, _mapping(data.get(key, {}), key), key)
              for key, kind in _COMMON.items()}
    return TrainConfig(algorithm=algorithm, algorithm_config=from_dict(
        cls.config_class, _mapping(section_data, section), section), plugins=modules, **common)


def _mapping(value: Any, key: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"config section '{key}' must be a mapping, got {shorten(value)}")
    return value


def train_config_to_dict(config: TrainConfig) -> dict[str, Any]:
    """The mapping :func:`train_config_from_dict` reads back to an equal config: ``format``,
    ``algorithm``, ``plugins`` (if any), the common sections and the algorithm's own."""
    config = resolve(config)
    data: dict[str, Any] = {"format": CONFIG_FORMAT, "algorithm": config.algorithm}
    if config.plugins:
        data["plugins"] = list(config.plugins)
    data["env"], data["policy"] = to_dict(config.env), to_dict(config.policy)
    data[config.section.section] = to_dict(config.section)
    data["run"], data["evaluate"] = to_dict(config.run), to_dict(config.evaluate)
    return data


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested mapping as ``{"a.b.c": value}`` (lists are values)."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def flat_config(config: TrainConfig) -> dict[str, Any]:
    """``config`` as ``{"section.key": value}``, as it is saved: what ``--resume`` and
    ``sweep`` compare with a run's saved config."""
    return flatten(train_config_to_dict(config))


def resolve(config: TrainConfig) -> TrainConfig:
    """``config`` with its plugins imported and its algorithm's section filled in (the
    defaults when unset), checked against the registered algorithm.

    Raises:
        ConfigError: an unknown algorithm, or a section of another algorithm's class.
        PluginError: a plugin cannot be imported.
    """
    load_plugins(config.plugins)
    expected = algorithm_class(config.algorithm).config_class
    section = config.algorithm_config
    if section is None:
        return dataclasses.replace(config, algorithm_config=expected())
    if type(section) is not expected:
        raise ConfigError(f"algorithm {config.algorithm!r} reads a {expected.__name__} "
                          f"section ('{expected.section}:'), got {type(section).__name__}")
    return config


def packaged_config_names() -> list[str]:
    """The configs that ship with fastadapt, as ``<algorithm>/<name>``."""
    root = resources.files("fastadapt") / "configs"
    names = []
    for folder in root.iterdir():
        if folder.is_dir():
            names += [f"{folder.name}/{item.name[:-5]}" for item in folder.iterdir()
                      if item.name.endswith(".yaml")]
    return sorted(names)


def packaged_config_path(name: str) -> Path | None:
    """The file of the packaged config ``name`` (``maml-trpo/2d-navigation``), or ``None``."""
    stem = name[:-5] if name.endswith(".yaml") else name
    candidate = resources.files("fastadapt") / "configs" / f"{stem}.yaml"
    return Path(str(candidate)) if candidate.is_file() else None


def config_path(source: str | Path) -> Path:
    """The file of a config given as a path or as a packaged config's name.

    Raises:
        ConfigError: neither a file nor a packaged config (the message says how to list them).
    """
    path = Path(source)
    if path.exists():  # a directory fails as a file that cannot be read, naming the path
        return path
    packaged = packaged_config_path(str(source))
    if packaged is not None:
        return packaged
    raise ConfigError(f"config not found: {source} is neither a file nor a packaged config "
                      "(fastadapt configs lists those, e.g. maml-trpo/2d-navigation)")


def load_train_config(source: str | Path, overrides: Sequence[str] = (),
                      plugins: Iterable[str] = ()) -> TrainConfig:
    """Read a config file (or packaged config), apply ``--set`` overrides, build it.

    Raises:
        ConfigError, PluginError: as :func:`train_config_from_dict`, or the file is missing
            or is not valid YAML.
    """
    data = read_mapping(config_path(source))
    return train_config_from_dict(apply_overrides(data, overrides), plugins)


def describe_packaged_configs() -> list[dict[str, str]]:
    """One row per packaged config: ``name``, ``algorithm``, ``env`` and ``purpose`` (the
    first line of its header comment)."""
    rows = []
    for name in packaged_config_names():
        path = packaged_config_path(name)
        assert path is not None
        text = path.read_text(encoding="utf-8")
        data = read_mapping(path)
        purpose = next((line.lstrip("# ").strip() for line in text.splitlines()
                        if line.startswith("#")), "")
        env = data.get("env", {}).get("name", EnvConfig.name) if isinstance(
            data.get("env"), dict) else EnvConfig.name
        rows.append({"name": name, "algorithm": str(data.get("algorithm", TrainConfig.algorithm)),
                     "env": str(env), "purpose": purpose})
    return rows
