"""Calls to the booking SQL functions (0003_booking.sql); each returns their JSONB as a dict."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict

from db.types import Conn


class Conflict(TypedDict, total=False):
    """The active appointment a refused slot overlaps (``appointment_conflict``; times as ISO 8601 text)."""

    appointment_id: str
    scheduled_at: str
    ends_at: str


class BookingResult(TypedDict, total=False):
    """What the booking functions return (``0003_booking.sql``): ``success`` and either the booking or the refusal.

    On success: ``appointment_id``, ``contact_id``, ``scheduled_at``, ``ends_at`` (and, for a
    reschedule, ``previous_appointment_id``). On refusal: ``error`` (``SLOT_UNAVAILABLE``,
    ``INVALID_TIME``, ``ORG_NOT_FOUND``, ``CONTACT_NOT_FOUND``, ``NOT_FOUND``) and, for a taken
    slot, ``conflicting``.
    """

    success: bool
    appointment_id: str
    contact_id: str
    scheduled_at: str
    ends_at: str
    previous_appointment_id: str
    error: str
    conflicting: Conflict


class Availability(TypedDict, total=False):
    """``check_slot_availability``: ``available``, and ``conflicting`` when it is not."""

    available: bool
    conflicting: Conflict


async def book(
    conn: Conn,
    org_id: uuid.UUID,
    *,
    name: str | None,
    email: str | None,
    phone: str,
    service_type: str | None,
    scheduled_at: datetime,
    duration_minutes: int,
) -> BookingResult:
    """``book_appointment_atomic``: upsert the lead and book, or say why not.

    Returns:
        ``{success: true, appointment_id, contact_id, scheduled_at, ends_at}`` or
        ``{success: false, error: SLOT_UNAVAILABLE|INVALID_TIME|ORG_NOT_FOUND, conflicting?}``.
    """
    result: BookingResult = await conn.fetchval(
        "SELECT book_appointment_atomic($1, $2, $3, $4, $5, $6, $7)",
        org_id,
        name,
        email,
        phone,
        service_type,
        scheduled_at,
        duration_minutes,
    )
    return result


async def check(conn: Conn, org_id: uuid.UUID, scheduled_at: datetime, duration_minutes: int) -> Availability:
    """``check_slot_availability``: ``{available, conflicting?}`` (advisory; booking re-checks under the lock)."""
    result: Availability = await conn.fetchval(
        "SELECT check_slot_availability($1, $2, $3)", org_id, scheduled_at, duration_minutes
    )
    return result


async def cancel(conn: Conn, org_id: uuid.UUID, appointment_id: uuid.UUID, reason: str | None) -> BookingResult:
    """``cancel_appointment``: ``{success: true, appointment_id}`` or ``{success: false, error: NOT_FOUND}``."""
    result: BookingResult = await conn.fetchval("SELECT cancel_appointment($1, $2, $3)", org_id, appointment_id, reason)
    return result


async def reschedule(
    conn: Conn,
    org_id: uuid.UUID,
    appointment_id: uuid.UUID,
    new_scheduled_at: datetime,
    duration_minutes: int | None,
) -> BookingResult:
    """``reschedule_appointment``: the new booking (plus ``previous_appointment_id``) or the reason it was refused."""
    result: BookingResult = await conn.fetchval(
        "SELECT reschedule_appointment($1, $2, $3, $4)", org_id, appointment_id, new_scheduled_at, duration_minutes
    )
    return result


async def busy_ranges(conn: Conn, org_id: uuid.UUID, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """Active appointments of the org overlapping ``[start, end)``, as (start, end) pairs in time order."""
    rows = await conn.fetch(
        """
        SELECT scheduled_at, ends_at FROM appointments
         WHERE org_id = $1 AND deleted_at IS NULL AND status IN ('pending', 'confirmed')
           AND tstzrange(scheduled_at, ends_at) && tstzrange($2, $3)
         ORDER BY scheduled_at
        """,
        org_id,
        start,
        end,
    )
    return [(r["scheduled_at"], r["ends_at"]) for r in rows]


@dataclass(frozen=True, slots=True)
class Appointment:
    """One appointment with its contact (``deleted_at`` set: cancelled and kept for the record)."""

    id: uuid.UUID
    org_id: uuid.UUID
    scheduled_at: datetime
    ends_at: datetime
    duration_minutes: int
    service_type: str | None
    status: str
    deleted_at: datetime | None
    contact_name: str | None
    contact_phone: str | None


async def get(conn: Conn, appointment_id: uuid.UUID) -> Appointment | None:
    """One appointment with its contact's name, as the current session may see it (RLS applies); None if
    there is none it can see."""
    row = await conn.fetchrow(
        """
        SELECT a.id, a.org_id, a.scheduled_at, a.ends_at, a.duration_minutes, a.service_type, a.status,
               a.deleted_at, l.name AS contact_name, l.phone AS contact_phone
          FROM appointments a JOIN leads l ON l.id = a.contact_id
         WHERE a.id = $1
        """,
        appointment_id,
    )
    return Appointment(**dict(row)) if row else None


#: Appointments a calendar range shows at most (a clinic's busiest week is a few hundred).
RANGE_LIMIT = 2000


async def in_range(
    conn: Conn, org_id: uuid.UUID, start: datetime, end: datetime, *, cancelled: bool
) -> list[dict[str, Any]]:
    """The org's appointments starting in ``[start, end)``, in time order, at most :data:`RANGE_LIMIT`.

    Returns:
        ``{id, scheduled_at, ends_at, status, service_type, name, phone, delivery_id}``; ``delivery_id`` is
        the tool call that booked it (``source_event_id``, migration 0016), ``None`` if it came another way.
        Cancelled (soft-deleted) appointments only when ``cancelled``.
    """
    rows = await conn.fetch(
        """
        SELECT a.id, a.scheduled_at, a.ends_at, a.status, a.service_type, l.name, l.phone, d.id AS delivery_id
          FROM appointments a JOIN leads l ON l.id = a.contact_id
          LEFT JOIN webhook_delivery_log d ON d.org_id = a.org_id AND d.event_id = a.source_event_id
         WHERE a.org_id = $1 AND a.scheduled_at >= $2 AND a.scheduled_at < $3 AND ($4 OR a.deleted_at IS NULL)
         ORDER BY a.scheduled_at LIMIT $5
        """,
        org_id,
        start,
        end,
        cancelled,
        RANGE_LIMIT,
    )
    return [dict(r) for r in rows]
