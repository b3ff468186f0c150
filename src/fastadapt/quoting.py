"""User values quoted in error messages, shortened: a message stays one readable line whatever
the value (a list of a million items, a key of a megabyte, an integer of a thousand digits)."""

from __future__ import annotations

import math
import reprlib

__all__ = ["MAX_QUOTED_CHARS", "shorten", "shorten_text"]

MAX_QUOTED_CHARS = 60
"""The longest quoted value, ``...`` included."""



class _Repr(reprlib.Repr):
    """:class:`reprlib.Repr` that also quotes integers too long for ``repr`` (Python refuses
    to print more than 4300 digits)."""

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() <= 4 * self.maxlong:
            return super().repr_int(x, level)
        digits = math.floor(x.bit_length() * math.log10(2)) + 1
        return f"{'-' if x < 0 else ''}<an integer of about {digits} digits>"


_REPR = _Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict = 3, 8, 8, 4
_REPR.maxstring = _REPR.maxlong = _REPR.maxother = MAX_QUOTED_CHARS


def shorten_text(text: str, limit: int = MAX_QUOTED_CHARS) -> str:
    """``text`` cut to ``limit`` characters, ending with ``...`` when it was cut.

    Args:
        text: what to quote.
        limit: the longest result (at least 4).
    """
    if len(text) <= limit:
        return text
    return text[: max(limit - 3, 1)] + "..."


def shorten(value: object, limit: int = MAX_QUOTED_CHARS) -> str:
    """``repr(value)`` for an error message, at most ``limit`` characters.

    Built by :mod:`reprlib` (the first items of a long list, the ends of a long string or
    number), so quoting a huge value costs no more than quoting a short one.
    """
    return shorten_text(_REPR.repr(value), limit)
