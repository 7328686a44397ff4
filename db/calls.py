"""Calls: the seeds' atomic call functions (``0002_call_functions.sql``), one statement each."""

from __future__ import annotations

import uuid
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


async def record_status(
    conn: Conn,
    org_id: uuid.UUID,
    vapi_call_id: str,
    status: str,
    facts: CallFacts,
    *,
    ended_reason: str | None,
    at: datetime | None,
) -> uuid.UUID:
    """``create_inbound_call_atomically``: create the call or move its status forward (never backwards).

    Returns:
        The ``calls.id``.
    """
    call_id: uuid.UUID = await conn.fetchval(
        "SELECT create_inbound_call_atomically($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        org_id,
        vapi_call_id,
        status,
        facts.type,
        facts.customer_number,
        facts.assistant_id,
        facts.phone_number_id,
        ended_reason,
        at,
    )
    return call_id


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


async def record_end(conn: Conn, org_id: uuid.UUID, vapi_call_id: str, end: CallEnd, facts: CallFacts) -> uuid.UUID:
    """``update_call_completed_atomically``: the report wins over earlier status updates.

    Returns:
        The ``calls.id``.
    """
    call_id: uuid.UUID = await conn.fetchval(
        "SELECT update_call_completed_atomically($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        org_id,
        vapi_call_id,
        end.ended_reason,
        end.started_at,
        end.ended_at,
        end.cost_usd,
        end.duration_s,
        end.transcript,
        end.summary,
        facts.type,
        facts.customer_number,
        facts.assistant_id,
        facts.phone_number_id,
    )
    return call_id


async def queue_recording(
    conn: Conn, org_id: uuid.UUID, vapi_call_id: str, recording_url: str, stereo_url: str | None
) -> bool:
    """``update_call_with_recording_atomically``: store the URLs and queue one upload per call.

    Returns:
        True if an upload was queued now (False: queued before).
    """
    queued: bool = await conn.fetchval(
        "SELECT update_call_with_recording_atomically($1, $2, $3, $4)", org_id, vapi_call_id, recording_url, stereo_url
    )
    return bool(queued)


async def record_hang(conn: Conn, org_id: uuid.UUID, vapi_call_id: str) -> int:
    """``record_call_hang``: count one stall of the assistant. Returns the call's hang count."""
    count: int = await conn.fetchval("SELECT record_call_hang($1, $2)", org_id, vapi_call_id)
    return count
