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
    if isinstance(stream, io.StringIO):
        return stream.getvalue()
    try:
        return os.read(stream.reader, 4096).decode()
    finally:
        stream.close()
        os.close(stream.reader)


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


async def test_a_failed_enqueue_is_logged_with_its_count_and_message_id_and_left_to_the_sweeper(pool, org_id):
    """Redis refusing the send (nothing listens on its port): one ``delivery_enqueue_failed`` warning naming how
    many deliveries and which message, and the rows marked not enqueued, so the sweeper sends them."""
    import asyncio
    import uuid

    from aiohttp import web
    from structlog.testing import capture_logs

    from ingest.appkeys import DB_POOL, ENQUEUER, TASKS
    from ingest.webhook.background import enqueue_in_background
    from tests.procs import free_port
    from workers.broker import Lane, build_broker
    from workers.enqueuer import AsyncEnqueuer

    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    broker = build_broker(dead_redis)
    app = web.Application()
    app[DB_POOL], app[ENQUEUER], app[TASKS] = pool, AsyncEnqueuer(broker, dead_redis), set()
    message_id = str(uuid.uuid4())
    ids = [
        await pool.fetchval(
            "INSERT INTO webhook_delivery_log (org_id, event_type, event_id, payload, job_id, enqueued_at)"
            " VALUES ($1, 'status-update', $2, '{}', $3, now()) RETURNING id",
            org_id,
            f"status-update:c{i}",
            message_id,
        )
        for i in range(3)
    ]
    try:
        with capture_logs() as logged:
            enqueue_in_background(app, ids, message_id, Lane.LIVE)
            await asyncio.gather(*app[TASKS])
    finally:
        await app[ENQUEUER].close()
        broker.close()

    failed = [e for e in logged if e["event"] == "delivery_enqueue_failed"]
    assert len(failed) == 1
    assert (failed[0]["log_level"], failed[0]["deliveries"], failed[0]["message_id"]) == ("warning", 3, message_id)
    assert "error" in failed[0]
    assert 0 == await pool.fetchval("SELECT count(enqueued_at) FROM webhook_delivery_log WHERE id = ANY($1)", ids)
