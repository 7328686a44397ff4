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
