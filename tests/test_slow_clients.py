"""Slow and vanished clients: a stalled body is cut off with 408, a client that leaves is not an outage."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time

from ingest.app import create_app
from tests.helpers import metric, signed_headers, wait_until_sync


async def _raw_request(port: int, head_body: bytes, *, then_close: bool) -> tuple[bytes, float]:
    """Send raw bytes; return what the server answers before closing, and how long that took (s)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    writer.write(head_body)
    await writer.drain()
    if then_close:
        writer.close()
        return b"", 0.0
    answer = await asyncio.wait_for(reader.read(), timeout=20)  # until the server closes the connection
    writer.close()
    return answer, time.monotonic() - started


def _head(settings, length: int) -> bytes:
    headers = signed_headers(settings, b"x" * length)
    lines = [f"{k}: {v}" for k, v in headers.items()]
    return (
        f"POST /webhooks/vapi HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n" + "\r\n".join(lines) + "\r\n\r\n"
    ).encode()


async def test_a_stalled_body_gets_408_and_the_connection_closes(aiohttp_client, settings, broker, pool):
    """Headers complete, 10 of 100 body bytes, then silence: 408 within the body timeout, and the server closes."""
    client = await aiohttp_client(create_app(dataclasses.replace(settings, body_timeout_s=0.5), broker=broker))

    answer, took_s = await _raw_request(client.port, _head(settings, 100) + b'{"message"', then_close=False)

    assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
    assert b"body not received within 0.5 s" in answer
    assert 0.5 <= took_s < 5
    assert 0 == await pool.fetchval("SELECT count(*) FROM webhook_delivery_log")


def test_a_client_that_leaves_mid_body_is_client_closed_not_unavailable(env, org_for_env, tmp_path):
    """Against the real web process: a client that disconnects mid-body is counted as client_closed, and the
    unavailable count (which pages someone as a database outage) does not move; each is one INFO line, with
    no error-level traceback (issue 18)."""
    from ingest.settings import Settings
    from tests.helpers import SECRET
    from tests.procs import get, start, stop, wait_for

    env = {**env, "VAPI_DEFAULT_ORG_ID": org_for_env}
    web = start("serve", env, tmp_path / "web.log")
    try:
        base = f"http://127.0.0.1:{env['PORT']}"
        wait_for(f"{base}/readyz")
        signer = Settings(webhook_secrets=(SECRET.encode(),))
        for _ in range(3):
            asyncio.run(_raw_request(int(env["PORT"]), _head(signer, 1000) + b'{"message"', then_close=True))
        wait_until_sync(
            lambda: (
                metric(get(f"{base}/metrics"), "vapi_webhooks_received_total", outcome="client_closed", type="none")
                >= 3
            ),
            timeout_s=10,
            interval_s=0.1,
            what="three closed clients counted",
        )
        metrics = get(f"{base}/metrics")
    finally:
        stop(web)
    lines = [json.loads(line) for line in (tmp_path / "web.log").read_text().splitlines() if line.startswith("{")]
    closed = [line for line in lines if line.get("outcome") == "client_closed"]
    assert 3 == metric(metrics, "vapi_webhooks_received_total", outcome="client_closed", type="none")
    assert 0 == metric(metrics, "vapi_webhooks_received_total", outcome="unavailable", type="none")
    assert (3, {"info"}) == (len(closed), {line["level"] for line in closed})
    assert [] == [line for line in lines if line["level"] in ("error", "critical") or "exception" in line]


def test_stalled_headers_and_idle_connections_are_closed(env, tmp_path):
    """A client that never finishes its headers, and one that never sends anything, are closed after
    HTTP_KEEPALIVE_TIMEOUT_S (aiohttp's default is an hour)."""
    from tests.procs import start, stop, wait_for

    env = {**env, "HTTP_KEEPALIVE_TIMEOUT_S": "1"}
    web = start("serve", env, tmp_path / "web.log")
    try:
        wait_for(f"http://127.0.0.1:{env['PORT']}/healthz")
        partial, partial_s = asyncio.run(
            _raw_request(int(env["PORT"]), b"POST /webhooks/vapi HTTP/1.1\r\nHost: x\r\n", then_close=False)
        )
        silent, silent_s = asyncio.run(_raw_request(int(env["PORT"]), b"", then_close=False))
    finally:
        stop(web)
    assert (b"", b"") == (partial, silent)
    assert 0.9 <= partial_s < 5 and 0.9 <= silent_s < 5
