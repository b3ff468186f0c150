"""Typed, frozen-dataclass configurations read from YAML.

A configuration is a (possibly nested) dataclass whose fields carry type annotations and
defaults. :func:`load_config` reads a YAML file, applies ``--set a.b=value`` overrides and
builds the dataclass with :func:`from_dict`, which checks every key and every value against the
annotations and names the offending dotted key in the :class:`~fastadapt.errors.ConfigError`
it raises. Range checks belong in the dataclass's ``__post_init__``; their ``ConfigError``
propagates unchanged.

Supported field types: ``int`` (64 bits, as numpy and torch take them; so are the integers
anywhere in an ``Any`` value), ``float`` (finite; an int is accepted and converted), ``bool``,
``str``, ``X | None``, unions of those, ``tuple[X, ...]`` and ``tuple[X, Y]`` (from YAML lists),
``list[X]``, ``dict[str, X]`` (``dict[str, Any]`` is passed through), ``Literal[...]``,
``Any`` and nested dataclasses. A bool is never accepted where a number is expected.

YAML is read with PyYAML's safe loader, bounded (nesting, alias expansion, duplicate keys) and
reading ``1e-2`` as a float: :mod:`fastadapt.run.yaml_loader`. The values an error message
quotes are shortened (:func:`fastadapt.quoting.shorten`).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import os
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from fastadapt.errors import ConfigError, FieldError
from fastadapt.quoting import shorten, shorten_text
from fastadapt.run.yaml_loader import INT64, MAX_DEPTH, YAMLLimitError, parse_yaml

__all__ = ["apply_overrides", "dump_yaml", "from_dict", "load_config", "read_mapping",
           "save_config", "to_dict"]

T = TypeVar("T")

_NONE_TYPE = type(None)
_UNION_ORIGINS: tuple[Any, ...] = (Union, types.UnionType)

# Accepted Python types per scalar annotation (a bool is an int in Python: rejected separately).
_SCALARS: dict[type, tuple[type, ...]] = {
    bool: (bool,),
    int: (int,),
    float: (int, float),
    str: (str,),
}
_ARTICLES = {bool: "a bool", int: "an int", float: "a float", str: "a str"}


# --------------------------------------------------------------------------- building


def from_dict(cls: type[T], data: Mapping[str, Any], where: str = "") -> T:
    """Build the dataclass ``cls`` from a mapping, checking keys and value types.

    Args:
        cls: a dataclass type; nested dataclass fields are built recursively.
        data: field values by name, as YAML gives them. Missing keys take the defaults.
        where: dotted path of ``data`` inside the whole config (``""`` at the top), used in
            error messages.

    Returns:
        The dataclass instance (its ``__post_init__`` has run).

    Raises:
        ConfigError: an unknown key (with a close-match suggestion), a value of the wrong type,
            a missing required key, or whatever ``__post_init__`` raises.
    """
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"from_dict needs a dataclass type, got {cls!r}")
    if not isinstance(data, Mapping):
        section = f"config section '{where}'" if where else "config"
        raise ConfigError(f"{section} must be a mapping, got {_show(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            raise ConfigError(_unknown_key_message(str(key), list(fields), where))
    hints = get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for name, field in fields.items():
        path = _join(where, name)
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], path)
        elif _is_required(field):
            raise ConfigError(f"missing config key '{path}'")
    try:
        return cls(**kwargs)
    except FieldError as err:  # a range check names the field; the path is known here
        raise err.within(where) from None


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _show(value: object) -> str:
    """``'abc' (str)``: a value (shortened, :func:`~fastadapt.quoting.shorten`) and its type."""
    return f"{shorten(value)} ({type(value).__name__})"


def _is_required(field: dataclasses.Field[Any]) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


def _unknown_key_message(key: str, valid: list[str], where: str) -> str:
    message = f"unknown config key '{_join(where, shorten_text(key))}'"
    close = difflib.get_close_matches(key[:100], valid, n=1)
    if close:
        return f"{message}; did you mean '{_join(where, close[0])}'?"
    return f"{message}; valid keys: {', '.join(valid)}"


def _convert(tp: Any, value: Any, path: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and return it converted."""
    if tp is Any:
        _check_integers(value, path)
        return value
    origin = get_origin(tp) or tp
    if origin in _UNION_ORIGINS:
        return _convert_union(get_args(tp), value, path)
    if origin is Literal:
        return _convert_literal(get_args(tp), value, path)
    if origin in (tuple, list):
        return _convert_sequence(origin, get_args(tp), value, path)
    if origin is dict:
        return _convert_mapping(get_args(tp), value, path)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"config section '{path}' must be a mapping, got {_show(value)}")
        return from_dict(tp, value, path)
    return _convert_scalar(tp, value, path)


def _convert_scalar(tp: type, value: Any, path: str) -> Any:
    if tp not in _SCALARS:
        raise TypeError(f"unsupported config field type {tp!r} for '{path}'")
    accepted = isinstance(value, _SCALARS[tp]) and not (isinstance(value, bool) and tp is not bool)
    if not accepted:
        raise ConfigError(f"config key '{path}' must be {_describe(tp)}, got {_show(value)}")
    _check_integers(value, path)
    if tp is float and not math.isfinite(value):
        raise ConfigError(f"config key '{path}' must be a finite float, got {value}")
    return float(value) if tp is float else value


def _check_integers(value: Any, path: str) -> None:
    """Refuse integers beyond 64 bits in ``value`` (and in the lists and mappings it holds):
    numpy and torch cannot take them.

    Raises:
        ConfigError: naming the key and the value.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        if not INT64[0] <= value <= INT64[1]:
            raise ConfigError(f"config key '{path}' must be an integer of 64 bits (-2**63 to "
                              f"2**63-1), got {shorten(value)}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_integers(item, f"{path}[{i}]")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _check_integers(item, _join(path, shorten_text(str(key))))


def _convert_union(args: tuple[Any, ...], value: Any, path: str) -> Any:
    if value is None and _NONE_TYPE in args:
        return None
    arms = [arm for arm in args if arm is not _NONE_TYPE]
    if len(arms) == 1:  # ``X | None``: the error of X is the most precise one
        return _convert(arms[0], value, path)
    for arm in arms:
        try:
            return _convert(arm, value, path)
        except ConfigError:
            continue
    expected = " or ".join(_describe(arm) for arm in args)
    raise ConfigError(f"config key '{path}' must be {expected}, got {_show(value)}")


def _convert_literal(choices: tuple[Any, ...], value: Any, path: str) -> Any:
    # ``type(...) is`` keeps True from matching a Literal[1] choice.
    if any(type(value) is type(choice) and value == choice for choice in choices):
        return value
    listed = ", ".join(repr(choice) for choice in choices)
    raise ConfigError(f"config key '{path}' must be one of {listed}; got {_show(value)}")


def _convert_sequence(origin: type, args: tuple[Any, ...], value: Any, path: str) -> Any:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise ConfigError(f"config key '{path}' must be a list, got {_show(value)}")
    if origin is tuple and args and args[-1] is not Ellipsis and len(args) != len(value):
        raise ConfigError(
            f"config key '{path}' must be a list of {len(args)} items, got {len(value)}"
        )
    if not args:
        item_types: list[Any] = [Any] * len(value)
    elif origin is list or args[-1] is Ellipsis:
        item_types = [args[0]] * len(value)
    else:
        item_types = list(args)
    pairs = enumerate(zip(item_types, value, strict=True))
    items = [_convert(t, v, f"{path}[{i}]") for i, (t, v) in pairs]
    return tuple(items) if origin is tuple else items


def _convert_mapping(args: tuple[Any, ...], value: Any, path: str) -> dict[Any, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"config key '{path}' must be a mapping, got {_show(value)}")
    key_type, value_type = args if args else (Any, Any)
    result: dict[Any, Any] = {}
    for key, item in value.items():
        item_path = _join(path, shorten_text(str(key)))
        if key_type is str and not isinstance(key, str):
            raise ConfigError(f"config key '{item_path}': keys must be strings, got {_show(key)}")
        result[key] = _convert(value_type, item, item_path)
    return result


def _describe(tp: Any) -> str:
    """Human words for an annotation: ``a float``, ``a list of int``, ``null``."""
    if tp is _NONE_TYPE:
        return "null"
    if tp in _ARTICLES:
        return _ARTICLES[tp]
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(choice) for choice in get_args(tp))
    if origin in (tuple, list):
        return "a list"
    if origin is dict or dataclasses.is_dataclass(tp):
        return "a mapping"
    return repr(tp)


# --------------------------------------------------------------------------- serialising


def to_dict(cfg: Any) -> dict[str, Any]:
    """Turn a config dataclass into plain dicts, lists and scalars (YAML/JSON serialisable).

    Args:
        cfg: a dataclass instance (nested dataclasses are converted too).

    Returns:
        Field values by name; tuples become lists, so ``from_dict`` reads the result back.
    """
    if not (dataclasses.is_dataclass(cfg) and not isinstance(cfg, type)):
        raise TypeError(f"to_dict needs a dataclass instance, got {cfg!r}")
    result: dict[str, Any] = _plain(cfg)
    return result


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    return value


# --------------------------------------------------------------------------- files, overrides


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Set dotted keys from ``"a.b.c=value"`` strings, as the CLI's ``--set`` gives them.

    Each value is parsed as YAML, so ``1e-2`` is the float 0.01, ``true`` a bool, ``[64, 64]`` a
    list and ``null`` None; anything else stays a string. Missing sections are created; types
    and key names are checked later by :func:`from_dict`.

    Args:
        data: the config as read from YAML; not modified.
        overrides: ``"dotted.key=value"`` strings, applied in order.

    Returns:
        A new dict with the overrides applied.

    Raises:
        ConfigError: an override without ``=`` or with an empty key part, a key deeper than
            :data:`~fastadapt.run.yaml_loader.MAX_DEPTH`, a value that is not valid YAML or
            passes a bound of :mod:`~fastadapt.run.yaml_loader`, or a key that goes through a
            value that is not a section.
    """
    result = copy.deepcopy(dict(data))
    for override in overrides:
        keys, value = _parse_override(override)
        node = result
        for depth, key in enumerate(keys[:-1]):
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                section = ".".join(keys[: depth + 1])
                raise ConfigError(
                    f"override '{shorten_text(override)}': '{shorten_text(section)}' is "
                    f"{_show(child)}, not a section"
                )
            node = child
        node[keys[-1]] = value
    return result


def _parse_override(override: str) -> tuple[list[str], Any]:
    key, sep, text = override.partition("=")
    keys = [part.strip() for part in key.split(".")]
    if not sep or not all(keys):
        raise ConfigError(f"malformed override '{shorten_text(override)}': expected "
                          "'dotted.key=value'")
    if len(keys) > MAX_DEPTH:
        raise ConfigError(f"override '{shorten_text(override)}' names a key {len(keys)} "
                          f"levels deep; a config has at most {MAX_DEPTH}")
    try:
        value = parse_yaml(text)
    except YAMLLimitError as err:
        raise ConfigError(f"override '{shorten_text(override)}': {err}") from err
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise ConfigError(f"override '{shorten_text(override)}': value is not valid YAML "
                          f"({problem})") from err
    return keys, value


def read_mapping(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The mapping at the top level of a YAML file (an empty file is ``{}``).

    Raises:
        ConfigError: the file is missing or unreadable, is not valid YAML (the message gives
            the line), passes a bound of :mod:`~fastadapt.run.yaml_loader` (nesting, aliases,
            a duplicate key), or its top level is not a mapping.
    """
    from fastadapt.files import CONFIG_MAX_BYTES, read_file  # bounded: a FIFO never blocks

    file = Path(path)
    raw = read_file(file, "cannot read config file", CONFIG_MAX_BYTES, error=ConfigError,
                    missing=f"config file not found: {file}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"cannot read config file {file}: not UTF-8 text (byte "
                          f"{raw[err.start]:#04x} at offset {err.start})") from err
    try:
        data = parse_yaml(text)
    except yaml.YAMLError as err:
        raise ConfigError(_yaml_error_message(file, err)) from err
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {file} must hold a mapping at the top level, got {type(data).__name__}"
        )
    return data


def load_config(cls: type[T], path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> T:
    """Read a YAML config file, apply overrides and build the config dataclass.

    Args:
        cls: the config dataclass type.
        path: YAML file whose top level is a mapping (an empty file means all defaults).
        overrides: ``"dotted.key=value"`` strings, see :func:`apply_overrides`.

    Returns:
        The config, checked by :func:`from_dict`.

    Raises:
        ConfigError: any error of :func:`read_mapping` or :func:`from_dict`.
    """
    return from_dict(cls, apply_overrides(read_mapping(path), overrides))


def _yaml_error_message(file: Path, err: yaml.YAMLError) -> str:
    if isinstance(err, YAMLLimitError):
        return f"config file {file}: {err}"
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    if mark is None:
        return f"invalid YAML in {file}: {problem}"
    return f"invalid YAML in {file} at line {mark.line + 1}, column {mark.column + 1}: {problem}"


def dump_yaml(data: Mapping[str, Any]) -> str:
    """``data`` as block-style YAML in insertion order (what :func:`read_mapping` reads)."""
    return yaml.safe_dump(dict(data), sort_keys=False, default_flow_style=False)


def save_config(cfg: Any, path: str | os.PathLike[str]) -> None:
    """Write a config dataclass as YAML that :func:`load_config` reads back to an equal config.

    Args:
        cfg: a config dataclass instance.
        path: the file to write; its parent directory must exist.
    """
    Path(path).write_text(dump_yaml(to_dict(cfg)), encoding="utf-8")
