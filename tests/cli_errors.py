"""The check every bad-input test of the CLI makes: one line on stderr, no traceback."""

from __future__ import annotations

import pytest


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    """The CLI's error line (``fastadapt: error: ...``), asserting it is one line and no
    traceback."""
    err = capsys.readouterr().err.strip()
    assert err.startswith("fastadapt: error: "), err
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    return err
