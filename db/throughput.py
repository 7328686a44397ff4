"""What the console's overview charts: deliveries received and completed per minute, and tool calls by outcome.

Run inside :func:`db.tenancy.tenant_scope` for an org's session, so row-level security limits every count
to that org.
"""

from __future__ import annotations

from datetime import datetime
from typing import TypedDict, cast

from db.tenancy import IN_VISIBLE_ORGS
from db.types import Conn

#: The overview's window, in minutes (one chart point per minute).
WINDOW_MINUTES = 60


class MinuteCounts(TypedDict):
    """Deliveries received and completed in one minute (``minute``: its start)."""

    minute: datetime
    received: int
    completed: int


async def per_minute(conn: Conn) -> list[MinuteCounts]:
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
    return [cast(MinuteCounts, dict(r)) for r in rows]


class ToolOutcome(TypedDict):
    """One tool's calls in the window, by outcome."""

    tool: str
    answered: int
    refused: int
    missed: int
    failed: int
    open: int


async def tool_outcomes(conn: Conn) -> list[ToolOutcome]:
    """Tool calls received in the last :data:`WINDOW_MINUTES` minutes by tool: ``{tool, answered, refused,
    missed, failed, open}``, each tool call counted once. ``refused`` were answered with an error (a taken
    slot, a bad argument); ``missed`` callers were not answered in time; ``failed`` are retrying or dead
    letters."""
    rows = await conn.fetch(
        f"""
        SELECT coalesce(tool_name, 'unknown') AS tool,
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
    return [cast(ToolOutcome, dict(r)) for r in rows]
