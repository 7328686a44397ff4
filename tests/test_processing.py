"""Processing deliveries with a real Dramatiq worker on real Redis and PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import uuid

import asyncpg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from db import deliveries, orgs, recovery
from db.pool import create_pool
from db.types import DeliveryId
from ingest.app import create_app
from tests.helpers import insert_delivery, post, status_update, wait_until
from workers.outcomes import ProcessingOutcome
from workers.processing import ProcessingConfig, process_deliveries
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

    [again] = await process_deliveries(pool, [delivery_id], ProcessingConfig())

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


async def _store(pool: asyncpg.Pool, org_id: uuid.UUID, event_type: str, event_id: str, payload: dict) -> DeliveryId:
    """A pending delivery with 3 attempts, stored as the receiver would."""
    delivery_id = await insert_delivery(
        pool, org_id=org_id, event_type=event_type, event_id=event_id, payload=payload, max_attempts=3, job_id=None
    )
    assert delivery_id is not None
    return delivery_id


async def _insert(pool: asyncpg.Pool, org_id: uuid.UUID, call_id: str, status: str) -> DeliveryId:
    message = status_update(call_id, status)["message"]
    return await _store(pool, org_id, "status-update", f"status-update:{call_id}:{status}", message)


async def test_a_stale_claim_cannot_complete_after_its_lease_was_reclaimed(pool, org_id):
    """A worker that lost its lease cannot mark the delivery done: the fencing token has moved on."""
    delivery_id = await _insert(pool, org_id, "c-lease", "ringing")
    [stale] = await deliveries.claim_many(pool, [delivery_id], lease_s=0.01)
    await pool.execute("UPDATE webhook_delivery_log SET lease_expires_at = now() - interval '1 s'")
    async with pool.acquire() as conn, conn.transaction():
        resent = await recovery.sweep(conn, enqueue_grace_s=0, resend_after_s=300, limit=10)
    assert [delivery_id] == [d for d, _ in resent]

    [fresh] = await process_deliveries(pool, [delivery_id], ProcessingConfig())
    async with pool.acquire() as conn:
        stale_completed = await deliveries.complete_many(conn, [(stale, {"late": True})])

    assert ProcessingOutcome.COMPLETED == fresh.status
    assert set() == stale_completed
    assert 2 == await pool.fetchval("SELECT attempts FROM webhook_delivery_log")


async def test_killed_worker_delivery_is_reclaimed_by_the_sweeper_and_processed_once(pool, org_id, broker):
    """A delivery left 'processing' by a dead worker is resent after its lease and completes once."""
    delivery_id = await _insert(pool, org_id, "c-killed", "in-progress")
    await deliveries.claim_many(pool, [delivery_id], lease_s=0.2)  # the "worker" dies here

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


async def test_process_deliveries_outcomes_follow_the_retry_policy(pool, org_id):
    """Without a worker: failed attempts are retried with a growing delay, then dead-lettered."""
    await _break_status_handler(pool)
    delivery_id = await _insert(pool, org_id, "c-policy", "ringing")
    config = ProcessingConfig(retry=RetryPolicy(min_backoff_ms=0, max_backoff_ms=0), in_transaction_tries=1)

    outcomes = []
    for _ in range(3):
        outcomes.append((await process_deliveries(pool, [delivery_id], config))[0].status)

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
                await process_deliveries(pool, [failing], config)
        finally:
            structlog.reset_defaults()
            logging.getLogger().handlers.clear()
    events = [json.loads(line) for line in path.read_text().splitlines()]

    assert ["warning", "warning", "error"] == [e["level"] for e in events]
    assert [1, 2, 3] == [e["attempt"] for e in events]
    assert all(e["delivery_id"] == str(failing) and e["type"] == "status-update" for e in events)
    assert all("create_inbound_call_atomically" in e["error"] for e in events), events


async def test_one_failing_delivery_in_a_batch_fails_alone(pool, org_id):
    """A batch of 20 status updates, one malformed (a PermanentError in Python) and one hang whose SQL function is
    gone (an error inside PostgreSQL, which aborts the transaction): the 20 complete once each, the malformed one
    is dead-lettered, the hang is retried; every claim spent exactly one attempt."""
    good = [await _insert(pool, org_id, f"c-batch-{i}", "in-progress") for i in range(20)]
    malformed = await _store(pool, org_id, "status-update", "status-update:c-bad", {"call": {"id": "c-bad"}})
    hang = await _store(pool, org_id, "hang", "hang:c-h", {"call": {"id": "c-h"}})
    await pool.execute("ALTER FUNCTION record_call_hang RENAME TO record_call_hang_off")
    ids = [*good[:7], malformed, *good[7:15], hang, *good[15:]]

    outcomes = await process_deliveries(pool, ids, ProcessingConfig(in_transaction_tries=1))

    by_id = dict(zip(ids, (o.status for o in outcomes), strict=True))
    assert {ProcessingOutcome.COMPLETED} == {by_id[i] for i in good}
    assert (ProcessingOutcome.DEAD_LETTERED, ProcessingOutcome.RETRIED) == (by_id[malformed], by_id[hang])
    assert [1] == [r["attempts"] for r in await pool.fetch("SELECT DISTINCT attempts FROM webhook_delivery_log")]
    assert 20 == await pool.fetchval("SELECT count(*) FROM calls WHERE status = 'in-progress'")
    row = await pool.fetchrow(
        "SELECT status, error_message, error_fingerprint FROM webhook_delivery_log WHERE id = $1", hang
    )
    assert "failed" == row["status"] and "record_call_hang" in row["error_message"]
    assert row["error_fingerprint"] and "<" not in row["error_message"]


async def test_status_stays_monotonic_within_one_batch(pool, org_id):
    """'ended', a late 'ringing' and 'in-progress' of one call processed in one batch leave the call ended."""
    ids = [await _insert(pool, org_id, "c-mono", s) for s in ("ended", "ringing", "in-progress")]

    outcomes = await process_deliveries(pool, ids, ProcessingConfig())

    assert [ProcessingOutcome.COMPLETED] * 3 == [o.status for o in outcomes]
    assert "ended" == await pool.fetchval("SELECT status FROM calls WHERE vapi_call_id = 'c-mono'")


async def test_a_redelivered_batch_applies_nothing_twice(pool, org_id):
    """The same batch processed twice (a redelivered message) and concurrently: each delivery applies once."""
    ids = [await _insert(pool, org_id, f"c-twice-{i}", "ringing") for i in range(30)]

    first, second = await asyncio.gather(
        process_deliveries(pool, ids, ProcessingConfig()), process_deliveries(pool, ids, ProcessingConfig())
    )
    third = await process_deliveries(pool, ids, ProcessingConfig())

    completed = [
        a.status == ProcessingOutcome.COMPLETED or b.status == ProcessingOutcome.COMPLETED
        for a, b in zip(first, second, strict=True)
    ]
    assert all(completed)
    assert {ProcessingOutcome.SKIPPED} == {o.status for o in third}
    assert 30 == await pool.fetchval("SELECT count(*) FROM calls")
    assert 30 == await pool.fetchval("SELECT sum(attempts) FROM webhook_delivery_log")


async def test_reclaimed_deliveries_are_resent_one_per_message(pool, org_id, broker):
    """A worker that died holding a batch: the sweeper sends each reclaimed delivery in a message of its own,
    so one that kills its process cannot spend its neighbours' attempts again."""
    ids = [await _insert(pool, org_id, f"c-alone-{i}", "ringing") for i in range(5)]
    await deliveries.claim_many(pool, ids, lease_s=0.01)  # the "worker" dies holding all five
    await wait_until(lambda: pool.fetchval("SELECT bool_and(lease_expires_at < now()) FROM webhook_delivery_log"))

    sent = await sweep_once(pool, broker, SweepConfig(enqueue_grace_s=0, resend_after_s=300))

    assert 5 == sent
    assert 5 == await pool.fetchval("SELECT count(DISTINCT job_id) FROM webhook_delivery_log")
    await wait_until(lambda: _all_finished(pool))
    assert 5 == await pool.fetchval("SELECT count(*) FROM calls")


#: What a delivery in a generated batch is: good, malformed (PermanentError in Python), or refused by PostgreSQL.
_KINDS = ("status", "hang", "report", "malformed", "refused")


def _message(kind: str, call_id: str) -> tuple[str, str, dict]:
    if kind in ("status", "malformed", "refused"):
        message = status_update(call_id, "in-progress")["message"]
        if kind == "malformed":
            del message["status"]
        if kind == "refused":
            # A caller number too large for the calls index's btree entry: PostgreSQL refuses it (54000)
            # inside the batch's transaction, after its neighbours' statements ran.
            message["call"]["customer"] = {"number": os.urandom(3000).hex()}
        return "status-update", f"status-update:{call_id}:in-progress", message
    if kind == "hang":
        return "hang", f"hang:{call_id}", {"type": "hang", "call": {"id": call_id}}
    message = {"type": "end-of-call-report", "cost": "0.25", "call": {"id": call_id}}
    return "end-of-call-report", f"end-of-call-report:{call_id}", message


# One database for every example: each makes its own clinic and call ids.
@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kinds=st.lists(st.sampled_from(_KINDS), min_size=1, max_size=30))
def test_any_batch_applies_each_good_delivery_once_and_fails_each_bad_one_alone(db_dsn, kinds):
    """Any mixture and order of good deliveries, malformed ones and ones PostgreSQL refuses, in one batch: every
    good one completes and creates its call once, each malformed one is dead-lettered, each refused one is retried,
    and every delivery spent exactly one attempt."""

    async def run() -> None:
        pool = await create_pool(db_dsn)
        try:
            org_id = await orgs.create_org(pool, name=f"Batch clinic {uuid.uuid4().hex[:6]}")
            ids, expected = [], {}
            for kind in kinds:
                event_type, event_id, message = _message(kind, f"c-{uuid.uuid4().hex}")
                delivery_id = await _store(pool, org_id, event_type, event_id, message)
                ids.append(delivery_id)
                expected[delivery_id] = kind
            config = ProcessingConfig(retry=RetryPolicy(min_backoff_ms=0, max_backoff_ms=0), in_transaction_tries=1)

            outcomes = await process_deliveries(pool, ids, config)

            want = {
                "status": ProcessingOutcome.COMPLETED,
                "hang": ProcessingOutcome.COMPLETED,
                "report": ProcessingOutcome.COMPLETED,
                "malformed": ProcessingOutcome.DEAD_LETTERED,
                "refused": ProcessingOutcome.RETRIED,
            }
            assert [want[expected[i]] for i in ids] == [o.status for o in outcomes], (
                kinds,
                [o.error for o in outcomes],
            )
            rows = await pool.fetch("SELECT attempts FROM webhook_delivery_log WHERE org_id = $1", org_id)
            assert {1} == {r["attempts"] for r in rows}
            good = sum(k in ("status", "hang", "report") for k in kinds)
            assert good == await pool.fetchval("SELECT count(*) FROM calls WHERE org_id = $1", org_id)
            hangs = await pool.fetchval("SELECT coalesce(sum(hang_count), 0) FROM calls WHERE org_id = $1", org_id)
            assert kinds.count("hang") == hangs
        finally:
            await pool.close()

    asyncio.run(run())
