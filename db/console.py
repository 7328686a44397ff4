"""Read-side queries of the operator console: dead-letter groups and their members.

Run inside :func:`db.tenancy.tenant_scope` for an org's session, so row-level
security limits every count to that org.
"""

from __future__ import annotations

import uuid
from typing import Any

from db.types import Conn


async def dead_letter_groups(conn: Conn, *, limit: int = 50) -> list[dict[str, Any]]:
    """Dead letters by ``error_fingerprint``, largest first: ``{group, fingerprint, example, count,
    first_seen, last_seen, types, orgs}``; ``group`` is the fingerprint's md5 (for URLs)."""
    rows = await conn.fetch(
        """
        SELECT md5(error_fingerprint) AS "group", error_fingerprint AS fingerprint,
               (array_agg(error_message ORDER BY received_at DESC))[1] AS example,
               count(*) AS count, min(received_at) AS first_seen, max(received_at) AS last_seen,
               array_agg(DISTINCT event_type) AS types, count(DISTINCT org_id) AS orgs
          FROM webhook_delivery_log WHERE status = 'dead_letter'
         GROUP BY error_fingerprint ORDER BY count(*) DESC, max(received_at) DESC LIMIT $1
        """,
        limit,
    )
    return [dict(r) for r in rows]


async def dead_letters_in_group(conn: Conn, group: str, *, limit: int = 50) -> list[dict[str, Any]]:
    """The newest dead letters of one group (``group`` as :func:`dead_letter_groups` gives it)."""
    rows = await conn.fetch(
        "SELECT id, org_id, event_type, received_at, attempts, error_message FROM webhook_delivery_log"
        " WHERE status = 'dead_letter' AND md5(error_fingerprint) = $1 ORDER BY received_at DESC LIMIT $2",
        group,
        limit,
    )
    return [dict(r) for r in rows]


async def group_for_replay(conn: Conn, group: str) -> tuple[list[uuid.UUID], int, str | None]:
    """``(replayable ids, refused, fingerprint)`` of one dead-letter group as it stands now.

    Refused: synchronous tool calls in the group, never replayed (their caller has gone).
    """
    rows = await conn.fetch(
        "SELECT id, answer_by IS NOT NULL AS sync_tool_call, error_fingerprint FROM webhook_delivery_log"
        " WHERE status = 'dead_letter' AND md5(error_fingerprint) = $1 ORDER BY received_at",
        group,
    )
    ids = [r["id"] for r in rows if not r["sync_tool_call"]]
    return ids, len(rows) - len(ids), rows[0]["error_fingerprint"] if rows else None


async def missed_calls(conn: Conn, *, limit: int = 100) -> list[dict[str, Any]]:
    """Missed tool calls, newest first, with the caller's number, the tool asked for, and the call-back if any:
    ``{id, org_id, received_at, number, tool, called_by, called_at}``."""
    rows = await conn.fetch(
        """
        SELECT d.id, d.org_id, d.received_at,
               coalesce(d.payload->'call'->'customer'->>'number', d.payload->'customer'->>'number') AS number,
               coalesce(d.payload->'toolCallList'->0->'function'->>'name', d.payload->'functionCall'->>'name') AS tool,
               c.called_by, c.called_at
          FROM webhook_delivery_log d LEFT JOIN call_backs c ON c.delivery_id = d.id
         WHERE d.status = 'missed' ORDER BY d.received_at DESC LIMIT $1
        """,
        limit,
    )
    return [dict(r) for r in rows]


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


async def call_back_of(conn: Conn, delivery_id: uuid.UUID) -> dict[str, Any] | None:
    """The call-back recorded for a delivery, if any: ``{called_by, called_at, note}``."""
    row = await conn.fetchrow("SELECT called_by, called_at, note FROM call_backs WHERE delivery_id = $1", delivery_id)
    return dict(row) if row else None
