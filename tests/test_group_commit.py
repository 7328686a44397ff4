"""Group commit: batched inserts keep per-request answers exact."""

from __future__ import annotations

import asyncio

import pytest

from db.deliveries import NewDelivery, insert_many
from db.pool import create_pool
from ingest.webhook.group_commit import GroupCommitWriter
from workers.broker import Lane


def _row(org_id, key: str) -> NewDelivery:
    return NewDelivery(org_id=org_id, event_type="hang", event_id=key, payload={"k": key}, max_attempts=3, job_id=None)


def _ignore(ids: list, message_id: str, lane: Lane) -> None:
    pass


async def test_concurrent_inserts_with_duplicates_get_one_id_per_key(pool, org_id):
    """400 concurrent inserts over 100 keys (duplicates in and across batches): exactly one new id per key, and
    each new pending row is handed over once, in a message of its batch whose id is the row's job_id."""
    messages: list[tuple[list, str]] = []
    writer = GroupCommitWriter(pool, lambda ids, mid, lane: messages.append((ids, mid)), max_batch=32, max_in_flight=3)

    ids = await asyncio.gather(*(writer.insert(_row(org_id, f"k-{i % 100}")) for i in range(400)))

    new = [i for i in ids if i is not None]
    assert 100 == len(new) == len(set(new))
    assert 100 == await pool.fetchval("SELECT count(*) FROM webhook_delivery_log")
    stored = dict(await pool.fetch("SELECT id, event_id FROM webhook_delivery_log"))
    assert {f"k-{i}" for i in range(100)} == {stored[i] for i in new}
    sent = [i for batch, _ in messages for i in batch]
    assert sorted(new) == sorted(sent)
    assert all(len(batch) <= 32 for batch, _ in messages)
    assert len(messages) < 100  # batches share messages
    job_ids = dict(await pool.fetch("SELECT id, job_id FROM webhook_delivery_log"))
    assert all(job_ids[i] == message_id for batch, message_id in messages for i in batch)


async def test_rows_stored_completed_are_never_sent(pool, org_id):
    """A type without a handler is stored completed: it gets no message and no job_id."""
    messages: list[tuple[list, str]] = []
    writer = GroupCommitWriter(pool, lambda ids, mid, lane: messages.append((ids, mid)))
    done = NewDelivery(
        org_id=org_id, event_type="x", event_id="done", payload={}, max_attempts=3, job_id=None, status="completed"
    )

    stored = await asyncio.gather(writer.insert(done), writer.insert(_row(org_id, "pending")))

    assert [[stored[1]]] == [batch for batch, _ in messages]
    assert await pool.fetchval(
        "SELECT job_id IS NULL AND enqueued_at IS NULL FROM webhook_delivery_log WHERE id = $1", stored[0]
    )


async def test_insert_many_reports_in_batch_and_earlier_duplicates(pool, org_id):
    """Within one call the first copy of a key is new, a later copy and an already-stored key are None."""
    await insert_many(pool, [_row(org_id, "old")])

    ids = await insert_many(pool, [_row(org_id, "a"), _row(org_id, "old"), _row(org_id, "a"), _row(org_id, "b")])

    assert [True, False, False, True] == [i is not None for i in ids]


async def test_a_failed_batch_fails_every_waiter(org_id):
    """If the batch's INSERT fails (PostgreSQL gone), every request in it gets the error, none a false success."""
    pool = await create_pool("postgresql://postgres@127.0.0.1:1/none", min_size=0, timeout=1)
    writer = GroupCommitWriter(pool, _ignore, max_in_flight=1)

    results = await asyncio.gather(*(writer.insert(_row(org_id, f"x-{i}")) for i in range(10)), return_exceptions=True)

    assert all(isinstance(r, OSError) for r in results), results
    with pytest.raises(OSError):
        await writer.insert(_row(org_id, "again"))
    await pool.close()
