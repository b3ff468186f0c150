"""How a ``fastadapt`` command meets its process: SIGTERM ends it as Ctrl-C does, and its
standard output failing (a full disk or device, a closed descriptor) is one error, not a
traceback or Python's ``Exception ignored ...`` at exit; a usage error is one line too
(:class:`ArgumentParser`).

:func:`sigterm_as_interrupt` makes SIGTERM raise :class:`~fastadapt.errors.Terminated` (a
``KeyboardInterrupt``) in the main thread, so a run takes Ctrl-C's way out: samplers close
their worker processes and Ray, the checkpoints written so far stay. :class:`GuardedOutput`
wraps ``sys.stdout`` so that its write errors become :class:`~fastadapt.errors.OutputError`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any, NoReturn, TextIO

from fastadapt.errors import OutputError, Terminated
from fastadapt.quoting import shorten_text

__all__ = ["ArgumentParser", "GuardedOutput", "discard_stdout", "integer_option",
           "sigterm_as_interrupt", "sigterm_received"]


class _Sigterm:
    """Whether SIGTERM arrived while the command ran: Ray turns the :class:`Terminated` the
    handler raises inside ``ray.wait`` into a plain ``KeyboardInterrupt``."""

    received = False


def sigterm_received() -> bool:
    """Whether SIGTERM arrived inside the last :func:`sigterm_as_interrupt` block."""
    return _Sigterm.received


def _raise_terminated(signum: int, frame: object) -> None:
    """SIGTERM handler: end the command as Ctrl-C does (once; a second SIGTERM kills)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _Sigterm.received = True
    raise Terminated


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Inside the block SIGTERM raises :class:`Terminated` in the main thread (see the module
    docstring). Left alone where SIGTERM is ignored or already handled (a caller's own
    handler), or outside the main thread; the default is back afterwards."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
        yield
        return
    _Sigterm.received = False
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


class GuardedOutput:
    """A text stream (the standard output) whose write errors, other than a vanished reader's
    ``BrokenPipeError``, become :class:`OutputError`: told apart from every other
    ``OSError``, one line. Everything else is the stream's own.

    Args:
        stream: the stream to write to.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def _call(self, method: str, *args: Any) -> Any:
        try:
            return getattr(self._stream, method)(*args)
        except BrokenPipeError:
            raise
        except OSError as err:
            raise OutputError(f"cannot write to standard output: {err.strerror or err}"
                              ) from err

    def write(self, text: str) -> int:
        """Write ``text``.

        Raises:
            OutputError: the stream cannot be written (the reason).
        """
        return int(self._call("write", text))

    def flush(self) -> None:
        """Flush the stream (raises as :meth:`write`)."""
        self._call("flush")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def discard_stdout() -> None:
    """Point the standard output's descriptor at ``/dev/null``, so that what is still
    buffered is not written again at exit (Python would print ``Exception ignored ...``)."""
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


class ArgumentParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, as every other error of the command."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"fastadapt: error: {shorten_text(message, 200)} (see {self.prog} "
                     "--help)\n")


def integer_option(text: str) -> int:
    """An integer option: ``40``, or ``1e3`` (an integral float, as configs take it)."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {shorten_text(text)!r}") from None
    if not value.is_integer():
        raise argparse.ArgumentTypeError(f"invalid int value: {shorten_text(text)!r}")
    return int(value)
