"""Processing deliveries with a real Dramatiq worker on real Redis and PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

import asyncpg

from db import deliveries, recovery
from ingest.app import create_app
from tests.helpers import post, status_update, wait_until
from workers.outcomes import ProcessingOutcome
from workers.processing import ProcessingConfig, process_delivery
from workers.retry import RetryPolicy
from workers.sweeper import SweepConfig, sweep_once


async def _statuses(pool: asyncpg.Pool) -> list[str]:
    return [r["status"] for r in await pool.fetch("SELECT status FROM webhook_delivery_log ORDER BY received_at")]


async def _all_finished(pool: asyncpg.Pool) -> bool:
    return all(s in ("completed", "dead_letter") for s in await _statuses(pool))


async def test_out_of_order_status_updates_never_move_backwards(client, settings, pool):
    """'ended' then a late 'ringing' and 'in-progress' leave the call ended (Vapi guarantees no order)."""
    for status in ("ended", "ringing", "in-progress"):
        resp = await post(client, settings, status_update("c-ooo", status, endedReason="customer-ended-call"))
        assert 200 == resp.status

    await wait_until(lambda: _all_finished(pool))
    assert ["completed"] * 3 == await _statuses(pool)
    row = await pool.fetchrow("SELECT status, ended_reason FROM calls WHERE vapi_call_id = 'c-ooo'")
    assert ("ended", "customer-ended-call") == (row["status"], row["ended_reason"])


async def test_end_of_call_report_uses_message_fields_not_the_stale_call(client, settings, pool):
    """Duration comes from startedAt/endedAt when durationSeconds is absent; message.call is ignored."""
    report = {
        "message": {
            "type": "end-of-call-report",
            "endedReason": "assistant-ended-call",
            "timestamp": 1739145383710,
            "startedAt": "2025-02-09T23:54:00.000Z",
            "endedAt": "2025-02-09T23:55:30.500Z",
            "cost": 0.1234,
            "call": {"id": "c-eocr", "status": "ringing"},
            "artifact": {"transcript": "AI: hi", "recordingUrl": "https://r.example/mono.wav"},
            "analysis": {"summary": "Booked."},
        }
    }

    await post(client, settings, report)

    await wait_until(lambda: _all_finished(pool))
    row = await pool.fetchrow("SELECT * FROM calls WHERE vapi_call_id = 'c-eocr'")
    assert "ended" == row["status"]
    assert 90.5 == float(row["duration_seconds"])
    assert ("AI: hi", "Booked.", "https://r.example/mono.wav") == (
        row["transcript"],
        row["summary"],
        row["recording_url"],
    )
    assert 1 == await pool.fetchval("SELECT count(*) FROM recording_upload_queue")


async def test_hang_is_counted_once_even_if_processed_again(client, settings, pool, org_id):
    """A hang increments the call once; running the delivery again (a redelivered message) changes nothing."""
    await post(client, settings, {"message": {"type": "hang", "timestamp": 1746364526623, "call": {"id": "c-h"}}})
    await wait_until(lambda: _all_finished(pool))
    delivery_id = await pool.fetchval("SELECT id FROM webhook_delivery_log")

    again = await process_delivery(pool, delivery_id, ProcessingConfig())

    assert ProcessingOutcome.SKIPPED == again.status
    assert 1 == await pool.fetchval("SELECT hang_count FROM calls WHERE vapi_call_id = 'c-h'")


async def _break_status_handler(pool: asyncpg.Pool) -> None:
    # A real fault, as a bad migration would cause one: the SQL function is gone.
    await pool.execute("ALTER FUNCTION create_inbound_call_atomically RENAME TO create_inbound_call_atomically_off")


async def _fix_status_handler(pool: asyncpg.Pool) -> None:
    await pool.execute("ALTER FUNCTION create_inbound_call_atomically_off RENAME TO create_inbound_call_atomically")


async def test_a_retry_succeeds_after_the_fault_is_fixed(aiohttp_client, settings, broker, pool):
    """The first attempt fails (function missing), is retried with backoff, and succeeds once fixed."""
    # A generous attempt budget (stored per row), so the fix lands before the budget is spent.
    patient = dataclasses.replace(settings, retry_max_attempts=10)
    client = await aiohttp_client(create_app(patient, broker=broker))
    await _break_status_handler(pool)

    await post(client, patient, status_update("c-retry", "in-progress"))
    await wait_until(lambda: pool.fetchval("SELECT attempts >= 1 AND status = 'failed' FROM webhook_delivery_log"))
    await _fix_status_handler(pool)

    await wait_until(lambda: _all_finished(pool))
    row = await pool.fetchrow("SELECT status, attempts, error_message FROM webhook_delivery_log")
    assert "completed" == row["status"]
    assert row["attempts"] >= 2
    assert row["error_message"] is None
    assert "in-progress" == await pool.fetchval("SELECT status FROM calls WHERE vapi_call_id = 'c-retry'")


async def test_exhausted_retries_dead_letter_with_the_final_error(client, settings, pool):
    """A delivery that keeps failing ends in dead_letter after RETRY_MAX_ATTEMPTS, keeping its error."""
    await _break_status_handler(pool)

    await post(client, settings, status_update("c-dead", "in-progress"))

    await wait_until(lambda: pool.fetchval("SELECT status = 'dead_letter' FROM webhook_delivery_log"))
    row = await pool.fetchrow("SELECT attempts, error_message FROM webhook_delivery_log")
    assert settings.retry_max_attempts == row["attempts"]
    assert "create_inbound_call_atomically" in row["error_message"]
    assert 0 == await pool.fetchval("SELECT count(*) FROM calls")


async def test_malformed_message_for_its_type_dead_letters_at_once(client, settings, pool):
    """A status-update without a status cannot succeed on retry: one attempt, then dead_letter."""
    await post(client, settings, {"message": {"type": "status-update", "timestamp": 1, "call": {"id": "c-x"}}})

    await wait_until(lambda: pool.fetchval("SELECT status = 'dead_letter' FROM webhook_delivery_log"))
    row = await pool.fetchrow("SELECT attempts, error_message FROM webhook_delivery_log")
    assert (1, "permanent: status-update without status") == (row["attempts"], row["error_message"])


async def _insert(pool: asyncpg.Pool, org_id: uuid.UUID, call_id: str, status: str) -> uuid.UUID:
    message = status_update(call_id, status)["message"]
    delivery_id = await deliveries.insert(
        pool,
        org_id=org_id,
        event_type="status-update",
        event_id=f"status-update:{call_id}:{status}",
        payload=message,
        max_attempts=3,
        job_id=None,
    )
    assert delivery_id is not None
    return delivery_id


async def test_a_stale_claim_cannot_complete_after_its_lease_was_reclaimed(pool, org_id):
    """A worker that lost its lease cannot mark the delivery done: the fencing token has moved on."""
    delivery_id = await _insert(pool, org_id, "c-lease", "ringing")
    stale = await deliveries.claim(pool, delivery_id, lease_s=0.01)
    assert stale is not None
    await pool.execute("UPDATE webhook_delivery_log SET lease_expires_at = now() - interval '1 s'")
    async with pool.acquire() as conn, conn.transaction():
        resent = await recovery.sweep(conn, enqueue_grace_s=0, resend_after_s=300, limit=10)
    assert [delivery_id] == [d for d, _ in resent]

    fresh = await process_delivery(pool, delivery_id, ProcessingConfig())
    async with pool.acquire() as conn:
        stale_completed = await deliveries.complete(conn, stale, {"late": True})

    assert ProcessingOutcome.COMPLETED == fresh.status
    assert stale_completed is False
    assert 2 == await pool.fetchval("SELECT attempts FROM webhook_delivery_log")


async def test_killed_worker_delivery_is_reclaimed_by_the_sweeper_and_processed_once(pool, org_id, broker):
    """A delivery left 'processing' by a dead worker is resent after its lease and completes once."""
    delivery_id = await _insert(pool, org_id, "c-killed", "in-progress")
    await deliveries.claim(pool, delivery_id, lease_s=0.2)  # the "worker" dies here

    await wait_until(lambda: pool.fetchval("SELECT lease_expires_at < now() FROM webhook_delivery_log"))
    sent = await sweep_once(pool, broker, SweepConfig(enqueue_grace_s=0, resend_after_s=300))

    assert 1 == sent
    await wait_until(lambda: _all_finished(pool))
    assert "completed" == await pool.fetchval("SELECT status FROM webhook_delivery_log")
    assert 1 == await pool.fetchval("SELECT count(*) FROM calls WHERE vapi_call_id = 'c-killed'")


async def test_two_concurrent_sweeps_send_each_row_once(pool, org_id, broker):
    """Sweepers in two scheduler processes split the rows (SKIP LOCKED) instead of double-sending."""
    for i in range(40):
        await _insert(pool, org_id, f"c-sw-{i}", "ringing")
    config = SweepConfig(enqueue_grace_s=0, resend_after_s=300, batch_size=7)

    sent = await asyncio.gather(sweep_once(pool, broker, config), sweep_once(pool, broker, config))

    assert 40 == sum(sent)
    await wait_until(lambda: _all_finished(pool))
    assert 40 == await pool.fetchval("SELECT count(*) FROM calls")


async def test_process_delivery_outcomes_follow_the_retry_policy(pool, org_id):
    """Without a worker: failed attempts are retried with a growing delay, then dead-lettered."""
    await _break_status_handler(pool)
    delivery_id = await _insert(pool, org_id, "c-policy", "ringing")
    config = ProcessingConfig(retry=RetryPolicy(min_backoff_ms=0, max_backoff_ms=0), in_transaction_tries=1)

    outcomes = []
    for _ in range(3):
        outcomes.append((await process_delivery(pool, delivery_id, config)).status)

    assert [ProcessingOutcome.RETRIED, ProcessingOutcome.RETRIED, ProcessingOutcome.DEAD_LETTERED] == outcomes
    assert "dead_letter" == await pool.fetchval("SELECT status FROM webhook_delivery_log")


async def test_retries_log_at_warning_and_dead_letters_at_error_with_their_error(pool, org_id, tmp_path):
    """With LOG_LEVEL=WARNING an operator still sees each retry (warning) and the dead letter (error), each with
    the error text, delivery id, type and attempt; a completed delivery logs nothing at that level."""
    import json
    import logging

    import structlog

    from ingest import logs

    await _break_status_handler(pool)
    failing = await _insert(pool, org_id, "c-logs", "ringing")
    config = ProcessingConfig(retry=RetryPolicy(min_backoff_ms=0, max_backoff_ms=0), in_transaction_tries=1)
    path = tmp_path / "service.log"
    with path.open("w") as stream:
        logs.configure(level="WARNING", fmt="json", stream=stream)
        try:
            for _ in range(3):
                await process_delivery(pool, failing, config)
        finally:
            structlog.reset_defaults()
            logging.getLogger().handlers.clear()
    events = [json.loads(line) for line in path.read_text().splitlines()]

    assert ["warning", "warning", "error"] == [e["level"] for e in events]
    assert [1, 2, 3] == [e["attempt"] for e in events]
    assert all(e["delivery_id"] == str(failing) and e["type"] == "status-update" for e in events)
    assert all("create_inbound_call_atomically" in e["error"] for e in events), events
