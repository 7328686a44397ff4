"""Calls: the seeds' atomic call functions (``0002_call_functions.sql``), one statement per batch.

Each function takes a batch of rows and calls the seeds' SQL function once
per row in one statement (``SELECT f(...) FROM unnest(...)``): one round
trip, and for a SQL-language function one plan, per batch instead of per
row. Calls run in the rows' order, each seeing the ones before it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from db.types import Conn


@dataclass(frozen=True, slots=True)
class CallFacts:
    """What any call message says about its call: type, customer number, assistant and phone-number ids."""

    type: str | None
    customer_number: str | None
    assistant_id: str | None
    phone_number_id: str | None


@dataclass(frozen=True, slots=True)
class StatusChange:
    """One status-update: the call (org, Vapi call id), its new status, facts, ended reason and event time."""

    org_id: uuid.UUID
    vapi_call_id: str
    status: str
    facts: CallFacts
    ended_reason: str | None
    at: datetime | None


async def record_statuses(conn: Conn, changes: Sequence[StatusChange]) -> list[uuid.UUID]:
    """``create_inbound_call_atomically`` per change: create the call or move its status forward (never backwards).

    Returns:
        Each change's ``calls.id``, in order.
    """
    rows = await conn.fetch(
        """
        SELECT create_inbound_call_atomically(o, c, s, t, n, a, p, r, e) AS id
          FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                      $8::text[], $9::timestamptz[]) AS u(o, c, s, t, n, a, p, r, e)
        """,
        [c.org_id for c in changes],
        [c.vapi_call_id for c in changes],
        [c.status for c in changes],
        [c.facts.type for c in changes],
        [c.facts.customer_number for c in changes],
        [c.facts.assistant_id for c in changes],
        [c.facts.phone_number_id for c in changes],
        [c.ended_reason for c in changes],
        [c.at for c in changes],
    )
    return [r["id"] for r in rows]


@dataclass(frozen=True, slots=True)
class CallEnd:
    """An end-of-call report's facts: times, cost in USD, duration in seconds, transcript and summary."""

    ended_reason: str | None
    started_at: datetime | None
    ended_at: datetime | None
    cost_usd: Decimal | float | None
    duration_s: Decimal | float | None
    transcript: str | None
    summary: str | None


@dataclass(frozen=True, slots=True)
class CallEnding:
    """One end-of-call report: the call (org, Vapi call id), how it ended, and its facts."""

    org_id: uuid.UUID
    vapi_call_id: str
    end: CallEnd
    facts: CallFacts


async def record_ends(conn: Conn, endings: Sequence[CallEnding]) -> list[uuid.UUID]:
    """``update_call_completed_atomically`` per ending: the report wins over earlier status updates.

    Returns:
        Each ending's ``calls.id``, in order.
    """
    rows = await conn.fetch(
        """
        SELECT update_call_completed_atomically(o, c, r, sa, ea, co, d, tr, su, t, n, a, p) AS id
          FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::numeric[],
                      $7::numeric[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[])
               AS u(o, c, r, sa, ea, co, d, tr, su, t, n, a, p)
        """,
        [e.org_id for e in endings],
        [e.vapi_call_id for e in endings],
        [e.end.ended_reason for e in endings],
        [e.end.started_at for e in endings],
        [e.end.ended_at for e in endings],
        [e.end.cost_usd for e in endings],
        [e.end.duration_s for e in endings],
        [e.end.transcript for e in endings],
        [e.end.summary for e in endings],
        [e.facts.type for e in endings],
        [e.facts.customer_number for e in endings],
        [e.facts.assistant_id for e in endings],
        [e.facts.phone_number_id for e in endings],
    )
    return [r["id"] for r in rows]


@dataclass(frozen=True, slots=True)
class Recording:
    """A call's recording URLs (mono required, stereo optional)."""

    org_id: uuid.UUID
    vapi_call_id: str
    recording_url: str
    stereo_url: str | None


async def queue_recordings(conn: Conn, recordings: Sequence[Recording]) -> list[bool]:
    """``update_call_with_recording_atomically`` per recording: store the URLs and queue one upload per call.

    Returns:
        Per recording, in order: True if an upload was queued now (False: queued before).
    """
    rows = await conn.fetch(
        """
        SELECT update_call_with_recording_atomically(o, c, r, s) AS queued
          FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) AS u(o, c, r, s)
        """,
        [r.org_id for r in recordings],
        [r.vapi_call_id for r in recordings],
        [r.recording_url for r in recordings],
        [r.stereo_url for r in recordings],
    )
    return [bool(r["queued"]) for r in rows]


async def record_hangs(conn: Conn, calls: Sequence[tuple[uuid.UUID, str]]) -> list[int]:
    """``record_call_hang`` per ``(org_id, vapi_call_id)``: count one stall of the assistant.

    Returns:
        Each call's hang count after its row, in order.
    """
    rows = await conn.fetch(
        "SELECT record_call_hang(o, c) AS n FROM unnest($1::uuid[], $2::text[]) AS u(o, c)",
        [org for org, _ in calls],
        [call for _, call in calls],
    )
    return [r["n"] for r in rows]
