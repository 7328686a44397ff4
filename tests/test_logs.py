"""Log lines for a person: coloured only on a terminal, as NO_COLOR and FORCE_COLOR say (issue 18)."""

from __future__ import annotations

import io
import os
import pty

import pytest
import structlog

from ingest import logs

ESC = "\x1b["


def _line(stream, monkeypatch, **env: str) -> str:
    for name in ("NO_COLOR", "FORCE_COLOR"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    logs.configure(fmt="console", stream=stream)
    structlog.get_logger("test").info("webhook_received", outcome="accepted")
    stream.flush()
    return stream.getvalue() if isinstance(stream, io.StringIO) else os.read(stream.reader, 4096).decode()


class _Terminal(io.TextIOWrapper):
    """A text stream on a pseudo-terminal, so ``isatty()`` is true; ``reader`` is the other end."""

    def __init__(self) -> None:
        self.reader, writer = pty.openpty()
        super().__init__(os.fdopen(writer, "wb"), encoding="utf-8", line_buffering=True)


@pytest.fixture(autouse=True)
def _json_again():
    yield
    logs.configure(fmt="json")


def test_console_lines_into_a_pipe_or_file_have_no_colour_codes(monkeypatch):
    """Not a terminal (honcho's pipe, a file, journald): plain text."""
    assert ESC not in _line(io.StringIO(), monkeypatch)


def test_console_lines_on_a_terminal_are_coloured_unless_no_color(monkeypatch):
    """A terminal gets colour; NO_COLOR turns it off there too."""
    assert ESC in _line(_Terminal(), monkeypatch)
    assert ESC not in _line(_Terminal(), monkeypatch, NO_COLOR="1")


def test_force_color_colours_a_pipe(monkeypatch):
    """FORCE_COLOR (set by `make run` when its own output is a terminal) colours lines going into a pipe."""
    assert ESC in _line(io.StringIO(), monkeypatch, FORCE_COLOR="1")
