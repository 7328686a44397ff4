"""Read-side queries of the operator console: dead-letter groups and their members.

Run inside :func:`db.tenancy.tenant_scope` for an org's session, so row-level
security limits every count to that org.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from db.ids import InvalidId, prefix_range
from db.tenancy import IN_VISIBLE_ORGS
from db.types import Conn

#: The overview's window, in minutes (one chart point per minute).
WINDOW_MINUTES = 60


async def per_minute(conn: Conn) -> list[dict[str, Any]]:
    """Deliveries received and completed in each of the last :data:`WINDOW_MINUTES` minutes, oldest first:
    ``{minute, received, completed}``.

    Two index-only range counts per minute and clinic (``(org_id, received_at)``, ``(org_id, completed_at)``),
    so the cost follows the window's traffic of the clinics the session sees, not the size of the log. Each
    minute's bounds come from arrays computed before the scan: a bound computed per row (``minute +
    interval``) is not leakproof, so under row-level security it could not bound an index range and a
    clinic's session would read every row from its minute to now.
    """
    rows = await conn.fetch(
        f"""
        WITH since AS MATERIALIZED (SELECT date_trunc('minute', now()) - make_interval(mins => $1 - 1) AS t)
        SELECT m.lo AS minute,
               (SELECT count(*) FROM webhook_delivery_log d
                 WHERE {IN_VISIBLE_ORGS} AND d.received_at >= m.lo AND d.received_at < m.hi) AS received,
               (SELECT count(*) FROM webhook_delivery_log d
                 WHERE {IN_VISIBLE_ORGS} AND d.completed_at >= m.lo AND d.completed_at < m.hi) AS completed
          FROM unnest(ARRAY(SELECT generate_series(t, t + make_interval(mins => $1 - 1), interval '1 minute')
                              FROM since),
                      ARRAY(SELECT generate_series(t + interval '1 minute', t + make_interval(mins => $1),
                                                   interval '1 minute') FROM since)) AS m(lo, hi)
         ORDER BY m.lo
        """,
        WINDOW_MINUTES,
    )
    return [dict(r) for r in rows]


async def tool_outcomes(conn: Conn) -> list[dict[str, Any]]:
    """Tool calls received in the last :data:`WINDOW_MINUTES` minutes by tool: ``{tool, answered, refused,
    missed, failed, open}``, each tool call counted once. ``refused`` were answered with an error (a taken
    slot, a bad argument); ``missed`` callers were not answered in time; ``failed`` are retrying or dead
    letters."""
    rows = await conn.fetch(
        f"""
        SELECT coalesce(result->>'name', payload->'toolCallList'->0->'function'->>'name',
                        payload->'functionCall'->>'name', 'unknown') AS tool,
               count(*) FILTER (WHERE status = 'completed' AND NOT coalesce(result ? 'error', false)) AS answered,
               count(*) FILTER (WHERE status = 'completed' AND coalesce(result ? 'error', false)) AS refused,
               count(*) FILTER (WHERE status = 'missed') AS missed,
               count(*) FILTER (WHERE status IN ('failed', 'dead_letter')) AS failed,
               count(*) FILTER (WHERE status IN ('pending', 'processing')) AS open
          FROM webhook_delivery_log d
         WHERE {IN_VISIBLE_ORGS} AND d.received_at >= now() - make_interval(mins => $1)
           AND d.event_type IN ('tool-calls', 'function-call')
           -- Each tool call once: not the message's own row, kept beside its calls for the record.
           AND NOT starts_with(d.event_id, d.event_type || ':message:')
         GROUP BY 1 ORDER BY count(*) DESC, 1
        """,
        WINDOW_MINUTES,
    )
    return [dict(r) for r in rows]


#: The newest dead letter of a group, among the clinics the session sees (``{group}``: the group): each
#: clinic's newest by one ordered probe of the dead-letter index (index-only, so the planner never prefers
#: reading the whole group and sorting it), then the newest of those, then that one row.
_NEWEST_IN_GROUP = """
    SELECT d.id, d.received_at, d.error_fingerprint, d.error_message
      FROM (SELECT n.id FROM organizations o CROSS JOIN LATERAL (
                SELECT k.id, k.received_at FROM webhook_delivery_log k
                 WHERE k.org_id = o.id AND k.status = 'dead_letter' AND k.error_group = {group}
                 ORDER BY k.received_at DESC, k.id DESC LIMIT 1) AS n
             ORDER BY n.received_at DESC, n.id DESC LIMIT 1) AS n
      JOIN webhook_delivery_log d ON d.id = n.id
"""


async def dead_letter_groups(conn: Conn, *, limit: int = 50) -> list[dict[str, Any]]:
    """Dead letters by ``error_fingerprint``, largest first: ``{group, fingerprint, example, count,
    first_seen, last_seen, types, orgs}``; ``group`` is the fingerprint's md5 (``error_group``, for URLs).

    The counts come from the dead-letter index alone (index-only, migration 0019); only the example,
    the newest error of each group shown, is read from its row.
    """
    rows = await conn.fetch(
        f"""
        SELECT g."group", e.error_fingerprint AS fingerprint, e.error_message AS example,
               g.count, g.first_seen, g.last_seen, g.types, g.orgs
          FROM (SELECT p."group", sum(p.n)::int8 AS count, min(p.first_seen) AS first_seen,
                       max(p.last_seen) AS last_seen, count(p.org_id) AS orgs,
                       (SELECT array_agg(DISTINCT t ORDER BY t) FROM jsonb_array_elements(jsonb_agg(p.types)) AS e,
                                                                     jsonb_array_elements_text(e) AS t) AS types
                  -- Per clinic and group first, in the index's order (no sort of the dead letters); then
                  -- across clinics, each (clinic, group) once.
                  FROM organizations o CROSS JOIN LATERAL (
                        SELECT d.error_group AS "group", d.org_id, count(*) AS n,
                               to_jsonb(array_agg(DISTINCT d.event_type)) AS types,
                               min(d.received_at) AS first_seen, max(d.received_at) AS last_seen
                          FROM webhook_delivery_log d WHERE d.org_id = o.id AND d.status = 'dead_letter'
                         GROUP BY 1, 2) AS p
                 GROUP BY 1 ORDER BY sum(p.n) DESC, max(p.last_seen) DESC LIMIT $1) AS g
         CROSS JOIN LATERAL ({_NEWEST_IN_GROUP.format(group='g."group"')}) AS e
         ORDER BY g.count DESC, g.last_seen DESC
        """,
        limit,
    )
    return [dict(r) for r in rows]


async def dead_letters_in_group(
    conn: Conn, group: str, *, before: tuple[datetime, uuid.UUID] | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """A page of one group's dead letters, newest first: ``{id, org_id, event_type, received_at, attempts,
    error_message}`` (``group`` as :func:`dead_letter_groups` gives it).

    Args:
        before: ``(received_at, id)`` of the last row of the previous page (keyset pagination: each page
            is one ordered index probe per clinic, however deep).
    """
    after_time, after_id = before if before is not None else (None, None)
    # The page's keys from the index alone (an ordered index-only probe per clinic), then those rows.
    rows = await conn.fetch(
        """
        SELECT d.id, d.org_id, d.event_type, d.received_at, d.attempts, d.error_message
          FROM (SELECT k.* FROM organizations o CROSS JOIN LATERAL (
                    SELECT k.id, k.received_at FROM webhook_delivery_log k
                     WHERE k.org_id = o.id AND k.status = 'dead_letter' AND k.error_group = $1
                       AND ($3::timestamptz IS NULL OR (k.received_at, k.id) < ($3, $4::uuid))
                     ORDER BY k.received_at DESC, k.id DESC LIMIT $2) AS k
                 ORDER BY k.received_at DESC, k.id DESC LIMIT $2) AS k
          JOIN webhook_delivery_log d ON d.id = k.id
         ORDER BY k.received_at DESC, k.id DESC
        """,
        group,
        limit,
        after_time,
        after_id,
    )
    return [dict(r) for r in rows]


async def group_summary(conn: Conn, group: str) -> tuple[int, int, str | None]:
    """``(replayable, refused, fingerprint)`` of one dead-letter group as it stands now, counted from the
    dead-letter index; ``fingerprint`` is None when the group has no dead letters this session sees.

    Refused: synchronous tool calls in the group, never replayed (their caller has gone).
    """
    row = await conn.fetchrow(
        f"""
        SELECT count(*) FILTER (WHERE d.answer_by IS NULL) AS replayable,
               count(*) FILTER (WHERE d.answer_by IS NOT NULL) AS refused,
               (SELECT n.error_fingerprint FROM ({_NEWEST_IN_GROUP.format(group="$1")}) AS n) AS fingerprint
          FROM webhook_delivery_log d WHERE {IN_VISIBLE_ORGS} AND d.status = 'dead_letter' AND d.error_group = $1
        """,
        group,
    )
    assert row is not None  # an aggregate always returns one row
    return row["replayable"], row["refused"], row["fingerprint"]


async def clinics_by_id(conn: Conn, org_ids: set[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
    """``{org_id: {name, timezone}}`` of the clinics among ``org_ids`` this session sees, for pages that
    show deliveries (whom to call back, and in which time zone its times are)."""
    rows = await conn.fetch("SELECT id, name, timezone FROM organizations WHERE id = ANY($1::uuid[])", list(org_ids))
    return {r["id"]: {"name": r["name"], "timezone": r["timezone"]} for r in rows}


async def missed_calls(conn: Conn, *, limit: int = 100) -> list[dict[str, Any]]:
    """Missed tool calls, newest first, with the caller's number, the tool asked for, and the call-back if any:
    ``{id, org_id, received_at, number, tool, called_by, called_at}``."""
    rows = await conn.fetch(
        """
        SELECT d.id, d.org_id, d.received_at,
               coalesce(d.payload->'call'->'customer'->>'number', d.payload->'customer'->>'number') AS number,
               coalesce(d.payload->'toolCallList'->0->'function'->>'name', d.payload->'functionCall'->>'name') AS tool,
               c.called_by, c.called_at
          FROM organizations o
         CROSS JOIN LATERAL (SELECT * FROM webhook_delivery_log d
                              WHERE d.org_id = o.id AND d.status = 'missed' ORDER BY d.received_at DESC LIMIT $1) AS d
          LEFT JOIN call_backs c ON c.delivery_id = d.id
         ORDER BY d.received_at DESC LIMIT $1
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


async def discard(conn: Conn, delivery_id: uuid.UUID, *, discarded_by: str, reason: str) -> bool:
    """Discard a dead letter that must not run: status ``discarded`` (terminal, never replayed) and a
    ``discards`` record of who and why, in one statement. False if it is not a dead letter this session
    sees (already discarded, replayed meanwhile, another clinic's)."""
    status = await conn.execute(
        """
        WITH d AS (
            UPDATE webhook_delivery_log SET status = 'discarded', next_attempt_at = NULL, lease_expires_at = NULL
             WHERE id = $1 AND status = 'dead_letter'
            RETURNING id, org_id
        )
        INSERT INTO discards (delivery_id, org_id, discarded_by, reason) SELECT id, org_id, $2, $3 FROM d
        """,
        delivery_id,
        discarded_by,
        reason,
    )
    return status == "INSERT 0 1"


async def discard_of(conn: Conn, delivery_id: uuid.UUID) -> dict[str, Any] | None:
    """Why a delivery was discarded, if it was: ``{discarded_by, discarded_at, reason}``."""
    row = await conn.fetchrow(
        "SELECT discarded_by, discarded_at, reason FROM discards WHERE delivery_id = $1", delivery_id
    )
    return dict(row) if row else None


#: Rows of each kind a search shows at most.
SEARCH_LIMIT = 50


async def search(conn: Conn, q: str) -> dict[str, list[dict[str, Any]]]:
    """Everything ``q`` names: a delivery id (or 8+ hex prefix), a Vapi call id, a tool-call id, a caller's
    phone number, an assistant or phone-number id.

    Returns:
        ``{deliveries, calls, appointments, routes}``, each newest first, at most :data:`SEARCH_LIMIT`.
        Every lookup is an index probe (per org for the per-org unique keys), never a scan of the log.
    """
    q = q.strip()
    found: dict[str, list[dict[str, Any]]] = {"deliveries": [], "calls": [], "appointments": [], "routes": []}
    if not q:
        return found
    columns = "d.id, d.org_id, d.event_type, d.status, d.received_at, d.vapi_call_id AS call_id"
    bounds: tuple[uuid.UUID, uuid.UUID] | None
    try:
        bounds = prefix_range(q)
    except InvalidId:
        bounds = None
    by_id = (
        await conn.fetch(
            f"SELECT {columns} FROM webhook_delivery_log d WHERE d.id BETWEEN $1 AND $2 LIMIT $3",
            *bounds,
            SEARCH_LIMIT,
        )
        if bounds is not None
        else []
    )
    calls = await conn.fetch(
        """
        SELECT c.id, c.org_id, c.vapi_call_id, c.customer_number, c.status, c.started_at, c.ended_reason
          FROM organizations o JOIN calls c ON c.org_id = o.id AND c.vapi_call_id = $1
        UNION
        SELECT c.id, c.org_id, c.vapi_call_id, c.customer_number, c.status, c.started_at, c.ended_reason
          FROM calls c WHERE c.customer_number = $1
        ORDER BY started_at DESC NULLS LAST LIMIT $2
        """,
        q,
        SEARCH_LIMIT,
    )
    call_ids = sorted({q, *(c["vapi_call_id"] for c in calls)})
    deliveries = await conn.fetch(
        f"""
        SELECT {columns} FROM webhook_delivery_log d WHERE d.vapi_call_id = ANY($1::text[])
        UNION
        SELECT {columns} FROM organizations o JOIN webhook_delivery_log d
            ON d.org_id = o.id AND d.event_id = 'tool-call:' || $2
        ORDER BY received_at DESC LIMIT $3
        """,
        call_ids,
        q,
        SEARCH_LIMIT,
    )
    numbers = sorted({n for n in [q, *(c["customer_number"] for c in calls)] if n})
    appointments = await conn.fetch(
        """
        SELECT a.id, a.org_id, a.scheduled_at, a.duration_minutes, a.status, a.service_type, l.name, l.phone
          FROM organizations o JOIN leads l ON l.org_id = o.id AND l.phone = ANY($1::text[])
          JOIN appointments a ON a.contact_id = l.id AND a.deleted_at IS NULL
         ORDER BY a.scheduled_at DESC LIMIT $2
        """,
        numbers,
        SEARCH_LIMIT,
    )
    routes = await conn.fetch(
        """
        SELECT 'assistant' AS kind, a.vapi_assistant_id AS vapi_id, o.id AS org_id, o.name AS org_name
          FROM agents a JOIN organizations o ON o.id = a.org_id WHERE a.vapi_assistant_id = $1
        UNION ALL
        SELECT 'phone number', p.vapi_phone_number_id, o.id, o.name
          FROM phone_numbers p JOIN organizations o ON o.id = p.org_id WHERE p.vapi_phone_number_id = $1
        """,
        q,
    )
    seen = {r["id"] for r in by_id}
    found["deliveries"] = [dict(r) for r in by_id] + [dict(r) for r in deliveries if r["id"] not in seen]
    found["calls"] = [dict(r) for r in calls]
    found["appointments"] = [dict(r) for r in appointments]
    found["routes"] = [dict(r) for r in routes]
    return found
