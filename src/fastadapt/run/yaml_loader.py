"""Reading YAML with PyYAML's safe loader, bounded, plus one fix.

The fix: numbers in exponent notation without a dot or without an exponent sign (``1e-2``,
``3e5``, ``1.0e5``), which YAML 1.1 reads as strings, are read as floats, as YAML 1.2 and every
user expect.

The bounds hold while the document is composed, before any value is built: nesting deeper
than :data:`MAX_DEPTH` (PyYAML recurses per level), more than :data:`MAX_NODES` values once
aliases are expanded (a "billion laughs" of a few hundred bytes; counted per node, memoised,
so the count costs what the document is written with), an alias inside the list or mapping
it names, a key written twice in a mapping, and an integer of more digits than Python
converts are each a :class:`YAMLLimitError` whose message names the line.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from fastadapt.quoting import shorten

__all__ = ["INT64", "MAX_DEPTH", "MAX_NODES", "YAMLLimitError", "parse_yaml"]

MAX_DEPTH = 100
"""Deepest nesting of lists and mappings a config may have (a config needs a few levels)."""
MAX_NODES = 100_000
"""Most values (scalars, lists, mappings) a config may hold, aliases counted each time they are
used: a few hundred bytes of aliases cannot expand to billions of values (a config needs a
few hundred)."""
INT64 = (-(2**63), 2**63 - 1)
"""The integers a config key may hold (numpy and torch read them as 64-bit integers)."""


class YAMLLimitError(yaml.YAMLError):
    """A YAML document beyond the bounds; the message says which and where."""


class _Loader(yaml.SafeLoader):
    """Safe YAML loader that reads ``1e-2``-style numbers as floats (YAML 1.2) and bounds the
    document as it is composed: nesting, values after alias expansion (:data:`MAX_DEPTH`,
    :data:`MAX_NODES`), recursive aliases, duplicate keys and integers of more digits than
    Python converts are :class:`YAMLLimitError` s naming the line."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        # PyYAML recurses per level: the limit is checked before it can overflow the stack
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                line = self.peek_event().start_mark.line + 1  # type: ignore[no-untyped-call]
                raise YAMLLimitError(f"lists and mappings nested deeper than {MAX_DEPTH} "
                                     f"levels (line {line}); a config needs a few: flatten it")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self) -> yaml.Node | None:
        node = super().compose_document()
        if node is not None:
            _measure(node, 1, {}, set())
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        """The mapping of ``node``; a key written twice is an error naming both lines (a
        ``<<`` merge may still be overridden: that is what it is for)."""
        seen: dict[Any, int] = {}
        for key_node, _ in node.value if isinstance(node, yaml.MappingNode) else ():
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError:  # unhashable: PyYAML's own error follows
                continue
            if first is not None:
                lines = f"twice on line {line}" if first == line else f"lines {first} and {line}"
                raise YAMLLimitError(f"duplicate key {shorten(key)} ({lines}): keep one")
            seen[key] = line
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping

    def construct_bounded_int(self, node: yaml.ScalarNode) -> int:
        """An integer, or an error for one of more digits than Python converts."""
        try:
            value: int = self.construct_yaml_int(node)
        except ValueError as err:
            raise YAMLLimitError(f"the integer {shorten(node.value)} (line "
                                 f"{node.start_mark.line + 1}) has {len(str(node.value))} "
                                 "digits; a config key takes at most 19") from err
        return value


def _measure(node: yaml.Node, depth: int, sizes: dict[int, tuple[int, int]],
             active: set[int]) -> tuple[int, int]:
    """``(values, levels)`` of ``node`` with its aliases expanded, memoised per node so that an
    alias bomb costs the nodes it is written with, not the billions it stands for.

    Raises:
        YAMLLimitError: more than :data:`MAX_NODES` values or :data:`MAX_DEPTH` levels once
            expanded, or an alias inside the node it names.
    """
    known = sizes.get(id(node))
    if known is None:
        if id(node) in active:
            raise YAMLLimitError("an alias refers to a list or mapping that contains it (a "
                                 f"recursive alias, {_line(node)}): write the values out")
        if depth > MAX_DEPTH:
            raise YAMLLimitError(_too_deep(node))
        active.add(id(node))
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [item for pair in node.value for item in pair]
        measured = [_measure(child, depth + 1, sizes, active) for child in children]
        active.discard(id(node))
        known = (1 + sum(values for values, _ in measured),
                 1 + max((levels for _, levels in measured), default=0))
        sizes[id(node)] = known
    values, levels = known
    if values > MAX_NODES:
        raise YAMLLimitError(f"more than {MAX_NODES} values once its aliases are expanded "
                             f"({_line(node)}; each use of an alias counts its values again); "
                             "a config needs a few hundred: remove the aliases")
    if depth + levels - 1 > MAX_DEPTH:
        raise YAMLLimitError(_too_deep(node))
    return known


def _line(node: yaml.Node) -> str:
    return f"line {node.start_mark.line + 1}"


def _too_deep(node: yaml.Node) -> str:
    return (f"lists and mappings nested deeper than {MAX_DEPTH} levels once its aliases are "
            f"expanded ({_line(node)}); a config needs a few: flatten it")


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_bounded_int)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def parse_yaml(text: str) -> Any:
    """The value of the YAML document ``text``, read safely and within the bounds.

    Raises:
        YAMLLimitError: a bound is passed (see the module docstring).
        yaml.YAMLError: ``text`` is not valid YAML.
    """
    return yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader
