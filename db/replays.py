"""Console replays (``replays``): a frozen set of deliveries, replayed under a renewable lease, with a record.

Run :func:`create`, :func:`get` and :func:`list_replays` inside
:func:`db.tenancy.tenant_scope` for an org's session (row-level security);
the runner's functions use the service's own connections.
"""

from __future__ import annotations

import uuid
from typing import Any

from db.types import Conn, Executor

_COLUMNS = """r.id, r.org_id, r.requested_by, r.description, r.matched, r.refused, r.rate_per_s, r.replayed,
    r.status, r.created_at, r.finished_at, cardinality(r.delivery_ids) AS frozen"""


async def create(
    conn: Conn,
    *,
    org_id: uuid.UUID | None,
    requested_by: str,
    description: str,
    delivery_ids: list[uuid.UUID],
    refused: int,
    rate_per_s: float | None,
) -> uuid.UUID:
    """Record a confirmed replay of exactly ``delivery_ids`` (frozen now); it starts ``running``."""
    replay_id: uuid.UUID = await conn.fetchval(
        "INSERT INTO replays (org_id, requested_by, description, delivery_ids, matched, refused, rate_per_s)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        org_id,
        requested_by,
        description,
        delivery_ids,
        len(delivery_ids),
        refused,
        rate_per_s,
    )
    return replay_id


async def get(conn: Conn, replay_id: uuid.UUID) -> dict[str, Any] | None:
    """One replay with its progress: ``completed`` and ``failed`` count its deliveries as they stand now."""
    row = await conn.fetchrow(
        f"""
        SELECT {_COLUMNS},
               (SELECT count(*) FROM webhook_delivery_log d
                 WHERE d.id = ANY(r.delivery_ids) AND d.replayed_at >= r.created_at AND d.status = 'completed')
                   AS completed,
               (SELECT count(*) FROM webhook_delivery_log d
                 WHERE d.id = ANY(r.delivery_ids) AND d.replayed_at >= r.created_at
                   AND d.status IN ('failed', 'dead_letter')) AS failed
          FROM replays r WHERE r.id = $1
        """,
        replay_id,
    )
    return dict(row) if row else None


async def list_replays(conn: Conn, *, limit: int = 50) -> list[dict[str, Any]]:
    """The newest replays (without progress counts)."""
    rows = await conn.fetch(f"SELECT {_COLUMNS} FROM replays r ORDER BY r.created_at DESC LIMIT $1", limit)
    return [dict(r) for r in rows]


async def cancel(conn: Conn, replay_id: uuid.UUID) -> bool:
    """Stop a running replay after its current batch; False if it was not running."""
    status = await conn.execute(
        "UPDATE replays SET status = 'cancelled', finished_at = now() WHERE id = $1 AND status = 'running'",
        replay_id,
    )
    return status == "UPDATE 1"


async def claim(conn: Executor, *, lease_s: float) -> dict[str, Any] | None:
    """Take the lease of the oldest running replay whose lease is free (new, or its process died).

    Returns:
        ``{id, org_id, delivery_ids, created_at, rate_per_s}``, or None when there is nothing to run.
    """
    row = await conn.fetchrow(
        """
        UPDATE replays SET lease_until = now() + make_interval(secs => $1)
         WHERE id = (SELECT id FROM replays
                      WHERE status = 'running' AND (lease_until IS NULL OR lease_until < now())
                      ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED)
        RETURNING id, org_id, delivery_ids, created_at, rate_per_s
        """,
        lease_s,
    )
    return dict(row) if row else None


async def advance(conn: Executor, replay_id: uuid.UUID, replayed: int, *, lease_s: float) -> bool:
    """Count ``replayed`` more and renew the lease; False once the replay is no longer running (cancelled)."""
    status: str | None = await conn.fetchval(
        "UPDATE replays SET replayed = replayed + $2, lease_until = now() + make_interval(secs => $3)"
        " WHERE id = $1 RETURNING status",
        replay_id,
        replayed,
        lease_s,
    )
    return status == "running"


async def finish(conn: Executor, replay_id: uuid.UUID) -> None:
    """Mark a replay done (a cancelled one stays cancelled)."""
    await conn.execute(
        "UPDATE replays SET status = 'done', finished_at = now(), lease_until = NULL"
        " WHERE id = $1 AND status = 'running'",
        replay_id,
    )
