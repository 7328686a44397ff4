"""Read-side queries for operators: filtered delivery lists, details, statistics.

Filters are :class:`db.filters.DeliveryFilter`. Callers that act for one org run these inside
:func:`db.tenancy.tenant_scope`, so row-level security limits what they see.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, TypedDict, cast

from db.filters import DeliveryFilter
from db.tenancy import IN_VISIBLE_ORGS
from db.types import Conn

_LIST_COLUMNS = """d.id, d.org_id, d.event_type, d.event_id, d.status, d.attempts, d.max_attempts, d.received_at,
    d.last_attempt_at, d.completed_at, d.error_message, d.job_id, d.replay_count, d.replayed_at, d.answer_by,
    d.normalised"""


class DeliveryRow(TypedDict):
    """A delivery as lists show it (no payload)."""

    id: uuid.UUID
    org_id: uuid.UUID
    event_type: str
    event_id: str
    status: str
    attempts: int
    max_attempts: int
    received_at: datetime
    last_attempt_at: datetime | None
    completed_at: datetime | None
    error_message: str | None
    job_id: str | None
    replay_count: int
    replayed_at: datetime | None
    answer_by: datetime | None
    normalised: str | None


class DeliveryDetail(DeliveryRow):
    """A delivery with what its own page shows: payload, result, error history (newest last), lease and
    schedule."""

    payload: Any
    result: Any
    errors: list[dict[str, Any]]
    lease_expires_at: datetime | None
    next_attempt_at: datetime | None
    enqueued_at: datetime | None


class TypeStats(TypedDict):
    """Deliveries of one message type since a time (:func:`delivery_stats`)."""

    type: str
    received: int
    completed: int
    failed: int
    dead_lettered: int
    success_rate: float
    mean_processing_ms: float | None


class ProcessingTime(TypedDict):
    """Percentiles of the last attempt of one type's completed deliveries, in milliseconds."""

    type: str
    samples: int
    p50_ms: float
    p95_ms: float
    p99_ms: float


async def count(conn: Conn, flt: DeliveryFilter) -> int:
    """How many deliveries match."""
    where, params = flt.where()
    result: int = await conn.fetchval(f"SELECT count(*) FROM webhook_delivery_log d WHERE {where}", *params)
    return result


async def replay_counts(conn: Conn, flt: DeliveryFilter) -> tuple[int, int]:
    """``(replayable, refused)`` among matching deliveries.

    Replayable: ``failed``/``dead_letter`` and not a synchronous tool call.
    Refused: matching synchronous tool calls (``answer_by`` set) that did not
    complete: their caller has gone, so running them now would act behind the
    caller's back.
    """
    where, params = flt.where()
    row = await conn.fetchrow(
        f"SELECT count(*) FILTER (WHERE d.answer_by IS NULL AND d.status IN ('failed', 'dead_letter'))"
        f"           AS replayable,"
        f"       count(*) FILTER (WHERE d.answer_by IS NOT NULL AND d.status <> 'completed') AS refused"
        f"  FROM webhook_delivery_log d WHERE {where}",
        *params,
    )
    assert row is not None  # an aggregate always returns one row
    return row["replayable"], row["refused"]


async def list_deliveries(conn: Conn, flt: DeliveryFilter, *, limit: int = 50, offset: int = 0) -> list[DeliveryRow]:
    """Matching deliveries, newest first (``received_at``, then ``id``, both descending), without payloads;
    page with ``offset``, or by keyset with :attr:`DeliveryFilter.older_than` (any depth at the same cost)."""
    where, params = flt.where()
    n = len(params)
    # Each clinic's newest (offset + limit), then the newest of those: an ordered index probe per clinic
    # (org_id, received_at), never a sort of the whole log.
    rows = await conn.fetch(
        f"SELECT d.* FROM organizations o CROSS JOIN LATERAL ("
        f"    SELECT {_LIST_COLUMNS} FROM webhook_delivery_log d WHERE d.org_id = o.id AND {where}"
        f"     ORDER BY d.received_at DESC, d.id DESC LIMIT ${n + 1}::int8 + ${n + 2}::int8) AS d"
        f" ORDER BY d.received_at DESC, d.id DESC LIMIT ${n + 1} OFFSET ${n + 2}",
        *params,
        limit,
        offset,
    )
    return [cast(DeliveryRow, dict(r)) for r in rows]


async def get_delivery(conn: Conn, delivery_id: uuid.UUID) -> DeliveryDetail | None:
    """One delivery with payload, result and error history, as the session may see it."""
    row = await conn.fetchrow(
        f"SELECT {_LIST_COLUMNS}, d.payload, d.result, d.errors, d.lease_expires_at, d.next_attempt_at, d.enqueued_at"
        " FROM webhook_delivery_log d WHERE d.id = $1",
        delivery_id,
    )
    return cast(DeliveryDetail, dict(row)) if row else None


async def delivery_stats(conn: Conn, since: datetime) -> list[TypeStats]:
    """Per type since ``since``: received, completed, failed, dead_lettered, success_rate, mean_processing_ms."""
    rows = await conn.fetch(
        f"""
        SELECT event_type AS type, count(*) AS received,
               count(*) FILTER (WHERE status = 'completed') AS completed,
               count(*) FILTER (WHERE status = 'failed') AS failed,
               count(*) FILTER (WHERE status = 'dead_letter') AS dead_lettered,
               round(count(*) FILTER (WHERE status = 'completed')::numeric / count(*), 4)::float8 AS success_rate,
               round((avg(extract(epoch FROM completed_at - last_attempt_at)) * 1000)::numeric, 2)::float8
                   AS mean_processing_ms
          FROM webhook_delivery_log d WHERE {IN_VISIBLE_ORGS} AND d.received_at >= $1
         GROUP BY event_type ORDER BY event_type
        """,
        since,
    )
    return [cast(TypeStats, dict(r)) for r in rows]


async def processing_time(conn: Conn, since: datetime) -> list[ProcessingTime]:
    """Per type since ``since``: p50/p95/p99 in milliseconds of the last attempt of completed deliveries."""
    rows = await conn.fetch(
        f"""
        SELECT event_type AS type, count(*) AS samples,
               percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (
                   ORDER BY extract(epoch FROM completed_at - last_attempt_at) * 1000) AS p
          FROM webhook_delivery_log d
         WHERE {IN_VISIBLE_ORGS} AND d.status = 'completed' AND d.received_at >= $1 AND d.last_attempt_at IS NOT NULL
         GROUP BY event_type ORDER BY event_type
        """,
        since,
    )
    return [
        ProcessingTime(
            type=r["type"],
            samples=r["samples"],
            p50_ms=round(r["p"][0], 2),
            p95_ms=round(r["p"][1], 2),
            p99_ms=round(r["p"][2], 2),
        )
        for r in rows
    ]
