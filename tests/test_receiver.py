"""The receiver's answers to every row of the README's bad-input table, through real HTTP."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections import Counter

import asyncpg
import pytest

from ingest.app import create_app
from tests.helpers import SECRET, make_settings, post, received, signed_headers, status_update, wait_until


async def _count(pool: asyncpg.Pool, table: str = "webhook_delivery_log") -> int:
    return await pool.fetchval(f"SELECT count(*) FROM {table}")


async def test_wrong_credential_is_401_not_stored_and_counted(ingest_client, settings, pool):
    """A signature made with another secret gets 401, no row, and an unauthorized count."""
    client = ingest_client
    before = await received(client, "none", "unauthorized")
    body = json.dumps(status_update("c-1", "ringing")).encode()
    other = make_settings(settings.database_url, webhook_secrets=(b"not-the-secret",))

    resp = await client.post("/webhooks/vapi", data=body, headers=signed_headers(other, body))

    assert 401 == resp.status
    assert "error" in await resp.json()
    assert 0 == await _count(pool)
    assert before + 1 == await received(client, "none", "unauthorized")


async def test_missing_credential_is_401(ingest_client, pool):
    """No signature header at all gets 401."""
    client = ingest_client
    resp = await client.post("/webhooks/vapi", json=status_update("c-1", "ringing"))

    assert 401 == resp.status
    assert 0 == await _count(pool)


async def test_body_over_the_limit_is_413_not_stored(aiohttp_client, settings, broker, pool):
    """A body larger than VAPI_MAX_BODY_BYTES gets 413 and is not stored."""
    small = make_settings(settings.database_url, default_org_id=settings.default_org_id, max_body_bytes=2048)
    client = await aiohttp_client(create_app(small, broker=broker))
    before = await received(client, "none", "too_large")
    payload = status_update("c-1", "ringing", filler="x" * 5000)

    resp = await post(client, small, payload)

    assert 413 == resp.status
    assert 0 == await _count(pool)
    assert before + 1 == await received(client, "none", "too_large")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"nomessage": {}}', "no 'message' object"),
        (b'{"message": {"status": "ended"}}', "message.type"),
        (b'{"message": {"type": 42}}', "message.type"),
        (b"[" * 100000 + b"]" * 100000, "nested too deeply"),
    ],
)
async def test_malformed_body_is_400_with_reason(ingest_client, settings, pool, body, reason):
    """Bodies that are not Vapi server messages get 400 naming what is wrong."""
    client = ingest_client
    resp = await post(client, settings, body)

    assert 400 == resp.status
    assert reason in (await resp.json())["error"]
    assert 0 == await _count(pool)


async def test_non_json_content_type_is_415(ingest_client, settings, pool):
    """A signed body sent as text/plain gets 415 and is not stored."""
    client = ingest_client
    body = json.dumps(status_update("c-1", "ringing")).encode()
    headers = signed_headers(settings, body)
    headers["Content-Type"] = "text/plain"

    resp = await client.post("/webhooks/vapi", data=body, headers=headers)

    assert 415 == resp.status
    assert 0 == await _count(pool)


async def test_ignored_type_is_200_not_stored_and_counted(ingest_client, settings, pool):
    """A streaming type from VAPI_IGNORED_TYPES is acknowledged but never stored."""
    client = ingest_client
    before = await received(client, "speech-update", "ignored")
    resp = await post(client, settings, {"message": {"type": "speech-update", "status": "started", "role": "user"}})

    assert 200 == resp.status
    assert 0 == await _count(pool)
    assert before + 1 == await received(client, "speech-update", "ignored")


async def test_unknown_type_is_stored_completed_as_unhandled(ingest_client, settings, pool):
    """A message type Vapi may add later is kept, and marked completed as unhandled."""
    client = ingest_client
    before = await received(client, "other", "accepted")
    resp = await post(
        client, settings, {"message": {"type": "future.thing", "timestamp": 1763784256708, "call": {"id": "c-9"}}}
    )

    assert 200 == resp.status
    row = await pool.fetchrow("SELECT status, result FROM webhook_delivery_log")
    assert "completed" == row["status"]
    assert {"applied": False, "reason": "no handler for this message type"} == row["result"]
    assert before + 1 == await received(client, "other", "accepted")


@pytest.mark.parametrize("mtype", ["transfer-update", "assistant-request", "call.deleted"])
async def test_a_known_type_without_a_handler_is_completed_and_never_queued(ingest_client, settings, pool, mtype):
    """Types Vapi documents but nothing processes are stored completed, with no message id and nothing enqueued."""
    client = ingest_client
    resp = await post(client, settings, {"message": {"type": mtype, "timestamp": 1, "call": {"id": f"c-{mtype}"}}})

    assert 200 == resp.status
    row = await pool.fetchrow("SELECT status, job_id, enqueued_at, attempts FROM webhook_delivery_log")
    assert ("completed", None, None, 0) == (row["status"], row["job_id"], row["enqueued_at"], row["attempts"])


async def test_duplicate_is_200_and_adds_no_row(ingest_client, settings, pool):
    """The same status-update twice: both 200, one row, the second counted as duplicate."""
    client = ingest_client
    first = await post(client, settings, status_update("c-1", "ringing"))
    second = await post(client, settings, status_update("c-1", "ringing"))

    assert (200, 200) == (first.status, second.status)
    assert {"status": "duplicate"} == await second.json()
    assert 1 == await _count(pool)


async def test_no_tenant_is_202_and_quarantined_once(aiohttp_client, db_dsn, broker, pool):
    """Without a matching assistant, number or default org the message waits in quarantine."""
    no_default = make_settings(db_dsn)
    client = await aiohttp_client(create_app(no_default, broker=broker))
    payload = status_update("c-7", "ringing")
    payload["message"]["call"]["assistantId"] = "asst-unknown"

    first = await post(client, no_default, payload)
    again = await post(client, no_default, payload)

    assert (202, 202) == (first.status, again.status)
    assert "quarantined" == (await first.json())["status"]
    assert 0 == await _count(pool)
    row = await pool.fetchrow("SELECT event_type, assistant_id FROM webhook_quarantine")
    assert ("status-update", "asst-unknown") == (row["event_type"], row["assistant_id"])
    assert 1 == await _count(pool, "webhook_quarantine")


async def test_routing_prefers_assistant_then_number_then_default(client, settings, pool, org_id):
    """A mapped phone number routes to its org even when a default org is configured."""
    from db import orgs

    other = await orgs.create_org(pool, name="Other clinic")
    await orgs.add_phone_number(pool, other, "pn-other")
    by_number = status_update("c-n", "ringing")
    by_number["message"]["call"]["phoneNumberId"] = "pn-other"
    by_assistant = status_update("c-a", "ringing")
    by_assistant["message"]["call"].update(phoneNumberId="pn-other", assistantId="asst-test")

    await post(client, settings, by_number)
    await post(client, settings, by_assistant)

    rows = dict(await pool.fetch("SELECT event_id, org_id FROM webhook_delivery_log"))
    assert other == rows["status-update:c-n:ringing"]
    assert org_id == rows["status-update:c-a:ringing"]


async def test_postgres_unavailable_is_503_and_nothing_acknowledged(aiohttp_client, redis_namespace):
    """With PostgreSQL unreachable the receiver answers 503, never a 2xx."""
    down = make_settings("postgresql://postgres@127.0.0.1:1/none", default_org_id=uuid.uuid4())
    client = await aiohttp_client(create_app(down))
    before = await received(client, "status-update", "unavailable")

    resp = await post(client, down, status_update("c-1", "ringing"))

    assert 503 == resp.status
    assert before + 1 == await received(client, "status-update", "unavailable")


async def test_redis_unavailable_is_2xx_and_the_sweeper_enqueues_later(aiohttp_client, settings, broker, pool):
    """With Redis down the row is acknowledged, left not enqueued, and the sweeper gets it processed."""
    from workers.broker import build_broker
    from workers.sweeper import SweepConfig, sweep_once

    dead_url = "redis://127.0.0.1:1/0"
    client = await aiohttp_client(
        create_app(dataclasses.replace(settings, redis_url=dead_url), broker=build_broker(dead_url))
    )

    resp = await post(client, settings, status_update("c-r", "in-progress"))

    assert 200 == resp.status
    await wait_until(lambda: pool.fetchval("SELECT enqueued_at IS NULL FROM webhook_delivery_log"))
    assert "pending" == await pool.fetchval("SELECT status FROM webhook_delivery_log")

    sent = await sweep_once(pool, broker, SweepConfig(enqueue_grace_s=0, resend_after_s=300))

    assert 1 == sent
    await wait_until(lambda: pool.fetchval("SELECT status = 'completed' FROM webhook_delivery_log"))
    assert "in-progress" == await pool.fetchval("SELECT status FROM calls WHERE vapi_call_id = 'c-r'")


async def test_assistant_request_is_answered_with_the_orgs_assistant(ingest_client, settings):
    """assistant-request gets the org's configured assistantId (Vapi waits 7.5 s at most)."""
    client = ingest_client
    payload = {
        "message": {
            "type": "assistant-request",
            "timestamp": 1748289798737,
            "call": {"id": "c-ar", "assistantId": "asst-test"},
        }
    }

    resp = await post(client, settings, payload)

    assert 200 == resp.status
    assert {"assistantId": "asst-test"} == await resp.json()


async def test_health_endpoints(client):
    """/healthz, /readyz and /health answer 200 with the seeds' health shape."""
    live = await client.get("/healthz")
    ready = await client.get("/readyz")
    health = await client.get("/health")

    assert (200, 200, 200) == (live.status, ready.status, health.status)
    assert {"ready": True, "database": True, "redis": True, "pending_migrations": []} == await ready.json()
    body = await health.json()
    assert {"status", "database_size_mb", "services", "uptime", "timestamp"} == set(body)
    assert body["database_size_mb"] > 0


@pytest.fixture
def log_file(tmp_path):
    """The service's real log configuration, writing JSON lines to a file for one test."""
    import logging

    import structlog

    from ingest import logs

    path = tmp_path / "service.log"
    with path.open("w") as stream:
        logs.configure(level="DEBUG", fmt="json", stream=stream)
        yield path
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


async def test_secrets_never_reach_the_logs(client, settings, log_file):
    """With JSON logging on, a full request cycle logs no webhook secret and no payload secret."""
    payload = status_update("c-s", "ringing")
    payload["message"]["phoneNumber"] = {"id": "pn", "twilioAuthToken": "tw-secret-value"}
    bad_headers = {"x-vapi-secret": "guess-1", "Authorization": "Bearer guess-2"}

    await post(client, settings, payload)
    await client.post("/webhooks/vapi", json=payload, headers=bad_headers)

    await wait_until(lambda: "delivery_processed" in log_file.read_text(), timeout_s=5)
    text = log_file.read_text()
    assert "webhook_received" in text
    for secret in (SECRET, "tw-secret-value", "guess-1", "guess-2"):
        assert secret not in text
    assert SECRET not in repr(settings)


def test_redact_hides_secret_named_keys_at_any_depth():
    """The log pipeline's redaction covers nested payload fields such as Twilio tokens and tool secrets."""
    from workers.sanitize import redact

    event = {"phoneNumber": {"twilioAuthToken": "a", "id": "pn"}, "tools": [{"server": {"secret": "b"}}], "Token": "c"}

    assert {
        "phoneNumber": {"twilioAuthToken": "[redacted]", "id": "pn"},
        "tools": [{"server": {"secret": "[redacted]"}}],
        "Token": "[redacted]",
    } == redact(event)


async def test_send_goes_by_the_message_type_and_says_duplicate_for_a_repeated_tool_call(client, settings, tmp_path):
    """`send` on a tool-call message in a file of any name shows its reply; sent again, the call is a duplicate
    (the receiver says so in X-Vapi-Ingest-Outcome, since the reply's body is Vapi's shape alone)."""
    from ingest.sender import send
    from tests.helpers import book_args, business_day, tool_call

    path = tmp_path / "booking.json"
    path.write_text(json.dumps(tool_call("t-send", "checkAvailability", book_args(business_day(), "10:00"))))
    url = str(client.make_url("/webhooks/vapi"))

    first = await send(settings, [path], url)
    again = await send(settings, [path], url)

    assert {"booking.json": Counter({"200 answered": 1})} == first.per_file
    assert {"booking.json": Counter({"200 duplicate": 1})} == again.per_file
    assert ["booking.json"] == [name for name, _ in first.tool_replies]
    assert "t-send" == first.tool_replies[0][1]["results"][0]["toolCallId"]
