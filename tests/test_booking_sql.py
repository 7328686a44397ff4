"""The booking SQL functions under concurrency, on real PostgreSQL: no slot is ever double-booked."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from db import appointments, orgs
from db.pool import create_pool
from db.tenancy import tenant_scope


def future_slot(days: int = 30, hour: int = 10, minute: int = 0) -> datetime:
    """A UTC start ``days`` from now at ``hour:minute``."""
    day = datetime.now(UTC).date() + timedelta(days=days)
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


async def _book(
    conn_or_pool, org_id, start, minutes=60, phone="+442071838750", name="Jane Doe"
) -> appointments.BookingResult:
    async def run(conn: Any) -> appointments.BookingResult:
        return await appointments.book(
            conn,
            org_id,
            name=name,
            email=None,
            phone=phone,
            service_type="cleaning",
            scheduled_at=start,
            duration_minutes=minutes,
        )

    if isinstance(conn_or_pool, asyncpg.Pool):
        async with conn_or_pool.acquire() as conn:
            return await run(conn)
    return await run(conn_or_pool)


async def test_1000_concurrent_bookings_of_one_slot_give_exactly_one_success(db_dsn, org_id):
    """1,000 callers, one slot, 50 connections: 1 booked, 999 SLOT_UNAVAILABLE, no other error."""
    pool = await create_pool(db_dsn, min_size=50, max_size=50)
    start = future_slot()
    try:
        results = await asyncio.gather(
            *(_book(pool, org_id, start, phone=f"+4420718{i:05d}") for i in range(1000)), return_exceptions=True
        )
    finally:
        await pool.close()

    errors = [r for r in results if isinstance(r, BaseException)]
    assert [] == errors
    outcomes = [r["error"] if not r["success"] else "booked" for r in results if not isinstance(r, BaseException)]
    assert {"booked": 1, "SLOT_UNAVAILABLE": 999} == {o: outcomes.count(o) for o in set(outcomes)}


async def test_500_random_overlapping_bookings_leave_no_overlap(db_dsn, org_id, pool):
    """Random starts and lengths in a two-hour window: successes equal rows, and no two active rows overlap."""
    conc = await create_pool(db_dsn, min_size=50, max_size=50)
    rng = random.Random(7)
    base = future_slot(hour=9)
    requests = [
        (base + timedelta(minutes=rng.randrange(0, 120)), rng.choice([5, 15, 30, 45, 60, 90])) for _ in range(500)
    ]
    try:
        results = await asyncio.gather(
            *(_book(conc, org_id, s, m, phone=f"+4420719{i:05d}") for i, (s, m) in enumerate(requests))
        )
    finally:
        await conc.close()

    successes = sum(1 for r in results if r["success"])
    assert successes >= 2
    assert successes == await pool.fetchval("SELECT count(*) FROM appointments")
    overlaps = await pool.fetchval(
        """SELECT count(*) FROM appointments a JOIN appointments b
             ON a.org_id = b.org_id AND a.id < b.id
            AND tstzrange(a.scheduled_at, a.ends_at) && tstzrange(b.scheduled_at, b.ends_at)
          WHERE a.deleted_at IS NULL AND b.deleted_at IS NULL"""
    )
    assert 0 == overlaps


async def test_overlapping_slots_with_different_starts_are_refused(pool, org_id):
    """The seeds' bug: 10:00-11:00 and 10:30-11:30 took different locks and both booked. Here the second is refused."""
    first = await _book(pool, org_id, future_slot(hour=10), 60)
    second = await _book(pool, org_id, future_slot(hour=10, minute=30), 60, phone="+442071838751")

    assert first["success"] is True
    assert {"success": False, "error": "SLOT_UNAVAILABLE"} == {k: second[k] for k in ("success", "error")}
    assert first["appointment_id"] == second["conflicting"]["appointment_id"]


async def test_the_constraint_holds_for_a_writer_that_skips_the_lock(pool, org_id):
    """A raw INSERT that overlaps an active appointment fails on appointments_no_overlap."""
    booked = await _book(pool, org_id, future_slot(hour=10), 60)
    start = future_slot(hour=10, minute=15)

    with pytest.raises(asyncpg.ExclusionViolationError) as err:
        await pool.execute(
            "INSERT INTO appointments (org_id, contact_id, scheduled_at, duration_minutes, ends_at)"
            " VALUES ($1, $2, $3::timestamptz, 30, $3::timestamptz + interval '30 minutes')",
            org_id,
            uuid.UUID(booked["contact_id"]),
            start,
        )

    assert "appointments_no_overlap" == err.value.constraint_name


async def test_two_orgs_book_the_same_slot(pool, org_id):
    """The invariant is per org: two clinics can both book 10:00."""
    other = await orgs.create_org(pool, name="Other clinic")

    a = await _book(pool, org_id, future_slot(), 60)
    b = await _book(pool, other, future_slot(), 60)

    assert (True, True) == (a["success"], b["success"])


async def test_an_org_cannot_see_or_cancel_another_orgs_appointment_under_rls(pool, org_id):
    """In a tenant-scoped transaction (RLS enforced), another org's appointment is invisible and cannot be cancelled."""
    other = await orgs.create_org(pool, name="Other clinic")
    theirs = await _book(pool, other, future_slot(), 60)
    their_id = uuid.UUID(theirs["appointment_id"])

    async with pool.acquire() as conn, conn.transaction(), tenant_scope(conn, org_id):
        seen = await appointments.get(conn, their_id)
        with_their_org = await appointments.cancel(conn, other, their_id, "sneaky")
        with_our_org = await appointments.cancel(conn, org_id, their_id, "sneaky")
        role = await conn.fetchval("SELECT current_user")

    assert "vapi_tenant" == role
    assert seen is None
    assert "NOT_FOUND" == with_their_org["error"]
    assert "NOT_FOUND" == with_our_org["error"]
    assert ("confirmed", None) == tuple(
        await pool.fetchrow("SELECT status, deleted_at FROM appointments WHERE id = $1", their_id)
    )


async def test_cancel_frees_the_slot_and_is_audited(pool, org_id):
    """A cancelled appointment is soft-deleted, audited, and its time can be booked again."""
    first = await _book(pool, org_id, future_slot(), 60)
    appointment_id = uuid.UUID(first["appointment_id"])

    cancelled = await appointments.cancel(pool, org_id, appointment_id, "caller asked")
    again = await _book(pool, org_id, future_slot(), 60, phone="+442071838751")

    assert cancelled["success"] is True
    assert again["success"] is True
    row = await pool.fetchrow("SELECT status, deleted_at FROM appointments WHERE id = $1", appointment_id)
    assert "cancelled" == row["status"] and row["deleted_at"] is not None
    actions = [r["action"] for r in await pool.fetch("SELECT action FROM audit_logs ORDER BY created_at")]
    assert ["appointment.booked", "appointment.cancelled", "appointment.booked"] == actions


async def test_reschedule_into_a_taken_slot_leaves_the_original_untouched(pool, org_id):
    """If the new slot is taken, the old booking stays exactly as it was (same row, same values)."""
    mine = await _book(pool, org_id, future_slot(hour=10), 60)
    await _book(pool, org_id, future_slot(hour=14), 60, phone="+442071838751")
    before = await pool.fetchrow("SELECT * FROM appointments WHERE id = $1", uuid.UUID(mine["appointment_id"]))

    result = await appointments.reschedule(pool, org_id, before["id"], future_slot(hour=14, minute=30), None)

    assert "SLOT_UNAVAILABLE" == result["error"]
    assert before == await pool.fetchrow("SELECT * FROM appointments WHERE id = $1", before["id"])
    assert 2 == await pool.fetchval("SELECT count(*) FROM appointments")


async def test_reschedule_may_overlap_its_own_old_time(pool, org_id):
    """Moving 10:00-11:00 to 10:30-11:30 succeeds: the old booking does not block its own move."""
    mine = await _book(pool, org_id, future_slot(hour=10), 60)

    result = await appointments.reschedule(
        pool,
        org_id,
        uuid.UUID(mine["appointment_id"]),
        future_slot(hour=10, minute=30),
        None,
    )

    assert result["success"] is True
    rows = await pool.fetch("SELECT status, deleted_at IS NULL AS active FROM appointments ORDER BY created_at")
    assert [("cancelled", False), ("confirmed", True)] == [(r["status"], r["active"]) for r in rows]


async def test_book_with_lock_wrapper_keeps_the_seeds_signature(pool, org_id):
    """book_appointment_with_lock books for an existing contact and refuses an overlap and a foreign contact."""
    first = await _book(pool, org_id, future_slot(hour=9), 30)
    contact = uuid.UUID(first["contact_id"])
    other = await orgs.create_org(pool, name="Other clinic")

    ok = await pool.fetchval("SELECT book_appointment_with_lock($1, $2, $3, 30)", org_id, contact, future_slot(hour=11))
    clash = await pool.fetchval(
        "SELECT book_appointment_with_lock($1, $2, $3, 30)", org_id, contact, future_slot(hour=11, minute=15)
    )
    foreign = await pool.fetchval("SELECT book_appointment_with_lock($1, $2, $3, 30)", other, contact, future_slot())

    assert ok["success"] is True
    assert "SLOT_UNAVAILABLE" == clash["error"]
    assert "CONTACT_NOT_FOUND" == foreign["error"]


async def test_invalid_requests_are_refused_with_their_code(pool, org_id):
    """A past time, a silly duration and an unknown org get INVALID_TIME / ORG_NOT_FOUND and write nothing."""
    past = await _book(pool, org_id, datetime.now(UTC) - timedelta(hours=1), 30)
    silly = await _book(pool, org_id, future_slot(), 0)
    nobody = await _book(pool, uuid.uuid4(), future_slot(), 30)

    assert ("INVALID_TIME", "INVALID_TIME", "ORG_NOT_FOUND") == (past["error"], silly["error"], nobody["error"])
    assert 0 == await pool.fetchval("SELECT count(*) FROM leads")


async def test_two_patients_on_one_phone_keep_their_names(pool, org_id):
    """Alice books 09:00, Bob 10:00 from the same phone, Alice again at 11:00: two leads, every name as booked."""
    alice = await _book(pool, org_id, future_slot(hour=9), 30, name="Alice Smith")
    bob = await _book(pool, org_id, future_slot(hour=10), 30, name="Bob Smith")
    again = await _book(pool, org_id, future_slot(hour=11), 30, name="alice smith")

    names = {
        r["id"]: r["name"]
        for r in await pool.fetch("SELECT a.id, l.name FROM appointments a JOIN leads l ON l.id = a.contact_id")
    }
    assert "Alice Smith" == names[uuid.UUID(alice["appointment_id"])]
    assert "Bob Smith" == names[uuid.UUID(bob["appointment_id"])]
    assert "Alice Smith" == names[uuid.UUID(again["appointment_id"])]
    assert alice["contact_id"] == again["contact_id"] != bob["contact_id"]
    assert 2 == await pool.fetchval("SELECT count(*) FROM leads")


async def test_migration_keeps_every_appointment_and_lead(template_db):
    """Data booked under the one-lead-per-phone rule (0003) survives 0006 unchanged."""
    from db.migrate import migrate
    from tests.helpers import database_at

    query = "SELECT a.id, a.contact_id, l.name FROM appointments a JOIN leads l ON l.id = a.contact_id ORDER BY a.id"
    async with database_at("0005") as dsn:
        conn = await asyncpg.connect(dsn)
        try:
            org = await conn.fetchval("INSERT INTO organizations (name) VALUES ('c') RETURNING id")
            for hour in (9, 10):
                await conn.fetchval(
                    "SELECT book_appointment_atomic($1, $2, NULL, '+442071838750', 'x', $3, 30)",
                    org,
                    f"P{hour}",
                    future_slot(hour=hour),
                )
            before = await conn.fetch(query)
            await migrate(dsn)
            after = await conn.fetch(query)
        finally:
            await conn.close()
    assert 2 == len(after)
    assert [tuple(r) for r in before] == [tuple(r) for r in after]
