"""Missed tool calls and their call-backs (``call_backs``): whom to call back, and who did."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TypedDict, cast

from db.types import Conn


class MissedCall(TypedDict):
    """A missed tool call to call back: who called, what they asked for, and the call-back if recorded."""

    id: uuid.UUID
    org_id: uuid.UUID
    received_at: datetime
    number: str | None
    tool: str | None
    called_by: str | None
    called_at: datetime | None


async def missed_calls(conn: Conn, *, limit: int = 100) -> list[MissedCall]:
    """Missed tool calls, newest first, with the caller's number, the tool asked for, and the call-back if any:
    ``{id, org_id, received_at, number, tool, called_by, called_at}``."""
    rows = await conn.fetch(
        """
        SELECT d.id, d.org_id, d.received_at,
               d.customer_number AS number, d.tool_name AS tool,
               c.called_by, c.called_at
          FROM organizations o
         CROSS JOIN LATERAL (SELECT * FROM webhook_delivery_log d
                              WHERE d.org_id = o.id AND d.status = 'missed' ORDER BY d.received_at DESC LIMIT $1) AS d
          LEFT JOIN call_backs c ON c.delivery_id = d.id
         ORDER BY d.received_at DESC LIMIT $1
        """,
        limit,
    )
    return [cast(MissedCall, dict(r)) for r in rows]


async def call_back(conn: Conn, delivery_id: uuid.UUID, *, called_by: str, note: str | None) -> bool:
    """Record that the caller of a missed tool call was called back; False if it is not a missed delivery
    this session can see, or was already recorded."""
    status = await conn.execute(
        "INSERT INTO call_backs (delivery_id, org_id, called_by, note)"
        " SELECT id, org_id, $2, $3 FROM webhook_delivery_log WHERE id = $1 AND status = 'missed'"
        " ON CONFLICT (delivery_id) DO NOTHING",
        delivery_id,
        called_by,
        note,
    )
    return status == "INSERT 0 1"


class CallBack(TypedDict):
    """Who called a missed caller back, when, and what they noted."""

    called_by: str
    called_at: datetime
    note: str | None


async def call_back_of(conn: Conn, delivery_id: uuid.UUID) -> CallBack | None:
    """The call-back recorded for a delivery, if any: ``{called_by, called_at, note}``."""
    row = await conn.fetchrow("SELECT called_by, called_at, note FROM call_backs WHERE delivery_id = $1", delivery_id)
    return cast(CallBack, dict(row)) if row else None
