"""Dead letters grouped by error fingerprint, and a group's members, newest first (the console's pages).

Run inside :func:`db.tenancy.tenant_scope` for an org's session, so row-level security limits every count
to that org.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, TypedDict, cast

from db.tenancy import IN_VISIBLE_ORGS
from db.types import Conn

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


class DeadLetterGroup(TypedDict):
    """Dead letters that share one error fingerprint, across the clinics the session sees."""

    group: str
    fingerprint: str
    example: str
    count: int
    first_seen: datetime
    last_seen: datetime
    types: list[str]
    orgs: int


async def dead_letter_groups(conn: Conn, *, limit: int = 50) -> list[DeadLetterGroup]:
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
    return [cast(DeadLetterGroup, dict(r)) for r in rows]


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
