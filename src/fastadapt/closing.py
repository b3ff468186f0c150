"""A context manager that calls ``close()`` on exit, for objects that own resources."""

from __future__ import annotations

from types import TracebackType
from typing import TypeVar

_C = TypeVar("_C", bound="Closeable")


class Closeable:
    """``with obj: ...`` closes ``obj`` on exit, also on errors and Ctrl-C."""

    def close(self) -> None:
        """Release what the object holds (nothing by default)."""

    def __enter__(self: _C) -> _C:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
