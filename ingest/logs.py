"""structlog set-up: one JSON line per event off a TTY, console lines on one."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog
from aiohttp.http_exceptions import HttpProcessingError

from workers import sanitize


def _redact_processor(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    # Stored payloads are redacted before storage; this is the second line, for log events.
    redacted: MutableMapping[str, Any] = sanitize.redact(dict(event_dict))
    return redacted


def _malformed_http_is_a_client_error(record: logging.LogRecord) -> bool:
    """aiohttp logs a request it cannot parse (bad header bytes) as an error with a traceback.

    The client already got a 400; for us it is a one-line warning, not an
    unhandled exception.
    """
    exc = record.exc_info[1] if record.exc_info else None
    if isinstance(exc, HttpProcessingError) and (exc.code or 500) < 500:
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.msg, record.args, record.exc_info = "malformed_http_request", (), None
        record.__dict__["reason"] = exc.message
    return True


def _colors(out: TextIO) -> bool:
    """Colour console lines only on a terminal, as the NO_COLOR and FORCE_COLOR conventions say: NO_COLOR
    (any value) turns colour off, FORCE_COLOR (any value) on; ``make run`` sets FORCE_COLOR when its own
    output is a terminal, since honcho hands each process a pipe."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return out.isatty()


def configure(*, level: str = "INFO", fmt: str = "json", stream: TextIO | None = None) -> None:
    """Route structlog (and stdlib logging, e.g. Dramatiq's) to one stream in one format.

    Args:
        stream: Where lines go; stderr if omitted.
    """
    out = stream or sys.stderr
    renderer: Any = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=_colors(out))
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact_processor,
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(out),
        # Not cached: configure() may run again (tests, CLI) and must take effect.
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    handler.addFilter(_malformed_http_is_a_client_error)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's access log duplicates our one line per request; APScheduler
    # logs every run of every job at INFO.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
