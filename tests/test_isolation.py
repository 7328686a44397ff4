"""One bad message never harms another, and what can be stored is stored (real PostgreSQL, real HTTP)."""

from __future__ import annotations

import asyncio
import json
import os
import uuid

import pytest

from db.deliveries import NewDelivery
from db.errors import RowRefused, is_data_error
from db.jsonb import RawNumber
from db.types import OrgId
from ingest.webhook.group_commit import GroupCommitWriter
from tests.helpers import post, signed_headers, status_update


def _row(org_id: uuid.UUID, key: str, payload: dict) -> NewDelivery:
    return NewDelivery(
        org_id=OrgId(org_id), event_type="hang", event_id=key, payload=payload, max_attempts=3, job_id=None
    )


#: One example of each class PostgreSQL refuses, as rows reach the writer.
def _bad_rows(org_id: uuid.UUID) -> list[NewDelivery]:
    return [
        _row(org_id, "bad-surrogate", {"t": "cut mid-emoji \ud83d"}),  # asyncpg cannot encode it (22000)
        _row(org_id, "bad-overflow", {"n": RawNumber("1e1000000")}),  # beyond numeric (22003)
        _row(org_id, os.urandom(3000).hex(), {}),  # an index entry over the btree limit (54000)
        _row(org_id, "bad-nul", {"t": "a\x00b"}),  # NUL in jsonb text (22P05)
    ]


async def test_bad_rows_in_a_batch_fail_alone_and_every_good_row_is_stored(pool, org_id):
    """40 good rows and 4 of every refused class in concurrent inserts: the 40 get ids and are stored, the 4 RowRefused."""
    writer = GroupCommitWriter(
        pool, lambda ids, message_id, lane: None, max_in_flight=1
    )  # one writer: everything after the first row shares a batch
    good = [_row(org_id, f"good-{i}", {"i": i}) for i in range(40)]
    rows = good[:20] + _bad_rows(org_id) + good[20:]

    results = await asyncio.gather(*(writer.insert(r) for r in rows), return_exceptions=True)

    refused = [r for r in results if isinstance(r, RowRefused)]
    stored = [r for r in results if isinstance(r, uuid.UUID)]
    assert (4, 40) == (len(refused), len(stored))
    assert all(isinstance(results[i], uuid.UUID) for i in [*range(20), *range(24, 44)])
    assert 40 == await pool.fetchval("SELECT count(*) FROM webhook_delivery_log WHERE event_id LIKE 'good-%'")
    assert 40 == await pool.fetchval("SELECT count(*) FROM webhook_delivery_log")


async def test_data_errors_are_told_apart_from_outages(pool):
    """Class 22 and 54 are data errors; a refused connection is not."""
    with pytest.raises(Exception) as refused:
        await pool.fetchval("SELECT '1e1000000'::numeric * 10")
    assert is_data_error(refused.value)
    assert not is_data_error(OSError("connection refused"))


def _overflow(call_id: str) -> bytes:
    """A signed-valid message whose number no PostgreSQL numeric can hold (refused after every normalisation)."""
    return f'{{"message": {{"type": "hang", "timestamp": 5, "call": {{"id": "{call_id}"}}, "n": 1e1000000}}}}'.encode()


async def test_unstorable_messages_among_valid_ones_over_http(ingest_client, settings, pool):
    """60 valid hangs and 6 unstorable ones concurrently: every valid one 200 and stored, each bad one 400 alone."""
    client = ingest_client
    good = [json.dumps(status_update(f"c-good-{i}", "ringing")).encode() for i in range(60)]
    bad = [_overflow(f"c-bad-{i}") for i in range(6)]
    bodies = good[:30] + bad + good[30:]

    responses = await asyncio.gather(*(post(client, settings, b) for b in bodies))

    codes = [r.status for r in responses]
    assert [200] * 30 + [400] * 6 + [200] * 30 == codes
    reason = (await responses[30].json())["error"]
    assert reason.startswith("message cannot be stored:")
    assert 60 == await pool.fetchval("SELECT count(*) FROM webhook_delivery_log")


@pytest.mark.parametrize(
    ("raw", "normalised", "stored"),
    [
        (b'"transcript": "I am happy \\ud83d"', "unpaired_surrogate", "I am happy \ufffd"),
        (b'"transcript": "\\udc00 then \\ud83d\\ude00"', "unpaired_surrogate", "\ufffd then \U0001f600"),
        (b'"transcript": "a\\u0000b"', "nul", "a\ufffdb"),
        ('"transcript": "caf\xe9"'.encode("latin-1"), "invalid_utf8", "caf\ufffd"),
    ],
)
async def test_a_report_with_one_broken_character_is_stored_and_marked(
    ingest_client, settings, pool, raw, normalised, stored
):
    """An end-of-call report JSON cannot carry into jsonb as sent is stored with U+FFFD, and the row says what changed."""
    client = ingest_client
    body = b'{"message": {"type": "end-of-call-report", "timestamp": 5, "call": {"id": "c-broken"}, ' + raw + b"}}"

    resp = await client.post("/webhooks/vapi", data=body, headers=signed_headers(settings, body))

    assert 200 == resp.status, await resp.text()
    row = await pool.fetchrow("SELECT payload->>'transcript' AS t, normalised FROM webhook_delivery_log")
    assert (stored, normalised) == (row["t"], row["normalised"])


async def test_numbers_beyond_double_range_are_stored_as_written(ingest_client, settings, pool):
    """1e400, -1e400, 1e-400 and a 5,000-digit integer reach jsonb as numbers, not Infinity, 0 or an error."""
    client = ingest_client
    big = "9" * 5000
    body = (
        '{"message": {"type": "hang", "timestamp": 5, "call": {"id": "c-big"}, '
        f'"a": 1e400, "b": -1e400, "c": 1e-400, "d": {big}, "e": 0.5}}}}'
    ).encode()

    resp = await client.post("/webhooks/vapi", data=body, headers=signed_headers(settings, body))

    assert 200 == resp.status, await resp.text()
    row = await pool.fetchrow(
        "SELECT (payload->'a')::numeric = 1e400 AS a, (payload->'b')::numeric = -1e400 AS b,"
        " (payload->'c')::numeric = 1e-400 AS c, (payload->'d')::text AS d, (payload->'e')::numeric AS e,"
        " normalised FROM webhook_delivery_log"
    )
    assert (True, True, True, big, 0.5, None) == (
        row["a"],
        row["b"],
        row["c"],
        row["d"],
        float(row["e"]),
        row["normalised"],
    )


@pytest.mark.parametrize(
    ("message", "field"),
    [
        ({"type": "hang", "call": {"id": "c" * 257}}, "message.call.id"),
        ({"type": "hang", "call": {"id": "c", "assistantId": "a" * 257}}, "message.call.assistantId"),
        ({"type": "hang", "call": {"id": "c", "phoneNumberId": "p" * 257}}, "message.call.phoneNumberId"),
        ({"type": "status-update", "status": "s" * 257, "call": {"id": "c"}}, "message.status"),
        (
            {"type": "tool-calls", "toolCallList": [{"id": "t" * 257, "function": {"name": "x", "arguments": {}}}]},
            "tool call id",
        ),
    ],
)
async def test_ids_used_in_idempotency_keys_are_bounded(ingest_client, settings, pool, message, field):
    """An id over 256 characters is a 400 naming the field, and nothing is stored."""
    client = ingest_client
    resp = await post(client, settings, {"message": message})

    assert 400 == resp.status
    assert f"{field} is longer than 256 characters" == (await resp.json())["error"]
    assert 0 == await pool.fetchval("SELECT count(*) FROM webhook_delivery_log")


async def test_an_id_of_256_characters_is_accepted(ingest_client, settings, pool):
    """The bound is inclusive: 256 characters of 4-byte UTF-8 still fit the unique index."""
    client = ingest_client
    resp = await post(
        client, settings, {"message": {"type": "hang", "timestamp": 1, "call": {"id": "\U0001f600" * 256}}}
    )

    assert 200 == resp.status, await resp.text()
    assert 1 == await pool.fetchval("SELECT count(*) FROM webhook_delivery_log")
