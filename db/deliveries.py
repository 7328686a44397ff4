"""Queries on ``webhook_delivery_log``: insert once, claim, finish, sweep.

A claim increments ``attempts``; that number is the claim's fencing token.
Finishing a delivery (complete, fail, dead-letter) checks the token, so a
worker whose lease expired and was reclaimed cannot overwrite the newer
claim's outcome, and its handler's effects roll back with the transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from db.errors import refusing_bad_rows
from db.statuses import STATUSES, DeliveryStatus
from db.tenancy import IN_VISIBLE_ORGS
from db.types import Conn, DeliveryId, Executor, OrgId


@dataclass(frozen=True, slots=True)
class Claim:
    """A delivery claimed for processing.

    Attributes:
        attempt: This claim's attempt number (1-based), also its fencing token.
        wait_s: Seconds from when the delivery became due (received, or its
            backoff ended) to this claim.
        vapi_call_id: Vapi's ``call.id``, as stored at insert (``None`` without one).
    """

    id: DeliveryId
    org_id: OrgId
    event_type: str
    event_id: str
    payload: dict[str, Any]
    attempt: int
    max_attempts: int
    wait_s: float
    replay_count: int = 0
    vapi_call_id: str | None = None

    @classmethod
    def from_record(cls, row: asyncpg.Record) -> Claim:
        """A claim from a claiming UPDATE's ``RETURNING`` (``attempts`` becomes :attr:`attempt`)."""
        return cls(
            id=row["id"],
            org_id=row["org_id"],
            event_type=row["event_type"],
            event_id=row["event_id"],
            payload=row["payload"],
            attempt=row["attempts"],
            max_attempts=row["max_attempts"],
            wait_s=row["wait_s"],
            replay_count=row["replay_count"],
            vapi_call_id=row["vapi_call_id"],
        )


@dataclass(frozen=True, slots=True)
class StoredDelivery:
    """The parts of an existing row the receiver needs to answer a duplicate."""

    id: DeliveryId
    status: str
    result: Any


@dataclass(frozen=True, slots=True)
class DeliveryFacts:
    """What a delivery's row stores beside its payload, set at insert so readers filter on columns instead of
    reading Vapi's JSON. The message model derives them (:meth:`workers.messages.Envelope.facts`).

    Attributes:
        vapi_call_id: Vapi's ``call.id`` (search, ``deliveries list --call``).
        tool_name: The tool a tool call asks for (the console's tool outcomes and missed calls).
        customer_number: The caller's number as Vapi sent it (the missed-call list).
    """

    vapi_call_id: str | None = None
    tool_name: str | None = None
    customer_number: str | None = None


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """A delivery to store once per ``(org_id, event_id)``.

    ``answer_by`` marks a synchronous tool call: run only by the request that
    received it, before that time, and ``missed`` after it (never by a worker).
    ``normalised`` lists the kinds of text replaced to make it storable.

    ``job_id`` is the Dramatiq message id the caller will send; with one,
    ``enqueued_at`` is set optimistically, so the happy path costs one
    statement, and :func:`mark_not_enqueued` undoes it when the enqueue fails
    (the sweeper then sends it). Without one the row waits for inline
    processing (tool calls) or, after a grace period, the sweeper.
    """

    org_id: OrgId
    event_type: str
    event_id: str
    payload: dict[str, Any]
    max_attempts: int
    job_id: str | None
    status: str = DeliveryStatus.PENDING
    result: Any = None
    answer_by: datetime | None = None
    normalised: str | None = None
    #: When it was first received (routing from quarantine keeps it); now if omitted.
    received_at: datetime | None = None
    facts: DeliveryFacts = DeliveryFacts()


async def insert_many(conn: Executor, rows: list[NewDelivery]) -> list[DeliveryId | None]:
    """Store many deliveries in one statement (one commit), each once per ``(org_id, event_id)``.

    Returns:
        For each row, in order, its new id, or ``None`` when its key was stored
        before or by an earlier row of the same call.

    Raises:
        RowRefused: PostgreSQL refused the data of one of the rows (nothing was stored).
    """
    with refusing_bad_rows():
        stored = await _insert_rows(conn, rows)
    new_ids = {(r["org_id"], r["event_id"]): r["id"] for r in stored}
    # The first row with a key gets its id; a later copy in the same call is a duplicate.
    return [new_ids.pop((r.org_id, r.event_id), None) for r in rows]


async def _insert_rows(conn: Executor, rows: list[NewDelivery]) -> list[asyncpg.Record]:
    return await conn.fetch(
        """
        INSERT INTO webhook_delivery_log
            (org_id, event_type, event_id, payload, max_attempts, job_id, status, result, enqueued_at, completed_at,
             answer_by, normalised, received_at, vapi_call_id, tool_name, customer_number)
        SELECT o, t, e, p, m, j, s, r, CASE WHEN j IS NOT NULL THEN now() END,
               CASE WHEN s = 'completed' THEN now() END, a, n, coalesce(ra, now()), c, tn, cn
          FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::int[], $6::text[], $7::text[], $8::jsonb[],
                      $9::timestamptz[], $10::text[], $11::timestamptz[], $12::text[], $13::text[], $14::text[])
               AS u(o, t, e, p, m, j, s, r, a, n, ra, c, tn, cn)
        ON CONFLICT (org_id, event_id) DO NOTHING
        RETURNING id, org_id, event_id
        """,
        [r.org_id for r in rows],
        [r.event_type for r in rows],
        [r.event_id for r in rows],
        [r.payload for r in rows],
        [r.max_attempts for r in rows],
        [r.job_id for r in rows],
        [r.status for r in rows],
        [r.result for r in rows],
        [r.answer_by for r in rows],
        [r.normalised for r in rows],
        [r.received_at for r in rows],
        [r.facts.vapi_call_id for r in rows],
        [r.facts.tool_name for r in rows],
        [r.facts.customer_number for r in rows],
    )


async def find(conn: Executor, org_id: uuid.UUID, event_id: str) -> StoredDelivery | None:
    """The stored row for an idempotency key, if any."""
    row = await conn.fetchrow(
        "SELECT id, status, result FROM webhook_delivery_log WHERE org_id = $1 AND event_id = $2",
        org_id,
        event_id,
    )
    return StoredDelivery(row["id"], row["status"], row["result"]) if row else None


async def find_ids(conn: Executor, org_id: uuid.UUID, event_ids: list[str]) -> dict[str, DeliveryId]:
    """The ids of stored deliveries by idempotency key (keys not stored are absent)."""
    rows = await conn.fetch(
        "SELECT event_id, id FROM webhook_delivery_log WHERE org_id = $1 AND event_id = ANY($2::text[])",
        org_id,
        event_ids,
    )
    return {r["event_id"]: r["id"] for r in rows}


async def find_by_id(conn: Executor, delivery_id: uuid.UUID) -> StoredDelivery | None:
    """The status and result of one delivery, if it exists."""
    row = await conn.fetchrow("SELECT id, status, result FROM webhook_delivery_log WHERE id = $1", delivery_id)
    return StoredDelivery(row["id"], row["status"], row["result"]) if row else None


async def mark_not_enqueued(conn: Executor, delivery_ids: Sequence[uuid.UUID]) -> None:
    """Record that no message for these deliveries reached Redis (the sweeper will send one).

    Rows a worker is claiming are skipped, as in :func:`mark_enqueued`: their message did arrive.
    """
    await conn.execute(
        "UPDATE webhook_delivery_log SET enqueued_at = NULL"
        " WHERE id IN (SELECT id FROM webhook_delivery_log WHERE id = ANY($1::uuid[])"
        "                AND status IN ('pending', 'failed') FOR UPDATE SKIP LOCKED)",
        delivery_ids,
    )


async def claim_many(conn: Executor, delivery_ids: Sequence[uuid.UUID], *, lease_s: float) -> list[Claim]:
    """Move the due ``pending`` or ``failed`` deliveries among ``delivery_ids`` to ``processing``, in one statement.

    Each claimed row's ``attempts`` grows by one (its fencing token) and it is
    leased for ``lease_s`` seconds. Never claims a synchronous tool call
    (``answer_by`` set): see :func:`db.tool_calls.claim_sync`.

    Returns:
        The claims, in the order of ``delivery_ids``. An id is missing when its
        delivery is finished, held by another live claim, waiting out its
        backoff (a duplicate or early message), or a synchronous tool call.
    """
    rows = await conn.fetch(
        """
        UPDATE webhook_delivery_log
           SET status = 'processing', attempts = attempts + 1, last_attempt_at = now(),
               lease_expires_at = now() + make_interval(secs => $2)
         WHERE id = ANY($1::uuid[])
           AND status IN ('pending', 'failed')
           AND answer_by IS NULL  -- a synchronous tool call runs only in its own request
           -- a message may arrive a little early; the sweeper resends later ones
           AND (next_attempt_at IS NULL OR next_attempt_at <= now() + interval '1 second')
        RETURNING id, org_id, event_type, event_id, payload, attempts, max_attempts, replay_count, vapi_call_id,
                  greatest(extract(epoch FROM now() - coalesce(next_attempt_at, received_at)), 0)::float8
                      AS wait_s
        """,
        list(delivery_ids),
        float(lease_s),
    )
    by_id = {row["id"]: Claim.from_record(row) for row in rows}
    return [by_id[i] for i in dict.fromkeys(delivery_ids) if i in by_id]


async def complete_many(conn: Conn, done: Sequence[tuple[Claim, Any]]) -> set[DeliveryId]:
    """Mark claimed deliveries completed with their results, in one statement.

    Args:
        done: ``(claim, result)`` pairs; ``result`` is stored as the row's jsonb ``result``.

    Returns:
        The ids completed. A claim missing from it was lost (its lease was
        reclaimed and the attempt moved on); the caller must roll back its effects.
    """
    rows = await conn.fetch(
        """
        UPDATE webhook_delivery_log d
           SET status = 'completed', completed_at = now(), result = u.result, error_message = NULL,
               lease_expires_at = NULL, next_attempt_at = NULL
          FROM unnest($1::uuid[], $2::int[], $3::jsonb[]) AS u(id, attempt, result)
         WHERE d.id = u.id AND d.status = 'processing' AND d.attempts = u.attempt
        RETURNING d.id
        """,
        [claim.id for claim, _ in done],
        [claim.attempt for claim, _ in done],
        [result for _, result in done],
    )
    return {row["id"] for row in rows}


async def fail(
    conn: Executor,
    claim: Claim,
    error: str,
    *,
    retry_at: datetime | None,
    job_id: str | None,
) -> bool:
    """Record a failed attempt: ``failed`` until ``retry_at``, or ``dead_letter`` when it is None.

    Args:
        job_id: The Dramatiq message id the caller will send for the retry.

    Returns:
        False if the claim was lost.
    """
    status = await conn.execute(
        """
        UPDATE webhook_delivery_log
           SET status = CASE WHEN $4::timestamptz IS NULL THEN 'dead_letter' ELSE 'failed' END,
               error_message = $3, next_attempt_at = $4, lease_expires_at = NULL,
               -- keep the last 20 errors for `deliveries show`
               errors = (SELECT coalesce(jsonb_agg(e ORDER BY n), '[]') FROM (
                           SELECT e, n FROM jsonb_array_elements(
                               errors || jsonb_build_object('attempt', attempts, 'at', now(), 'error', $3::text))
                               WITH ORDINALITY AS x(e, n)
                            ORDER BY n DESC LIMIT 20) last),
               enqueued_at = CASE WHEN $4::timestamptz IS NULL THEN NULL ELSE now() END,
               job_id = coalesce($5, job_id)
         WHERE id = $1 AND status = 'processing' AND attempts = $2
        """,
        claim.id,
        claim.attempt,
        error[:4000],
        retry_at,
        job_id,
    )
    return status == "UPDATE 1"


async def count_by_status(conn: Executor, *, completed: bool = True) -> dict[str, int]:
    """Number of deliveries in each status the session sees (every status present, zeros included).

    Every status but ``completed`` is counted exactly from the backlog index (its entries only: the backlog
    and what needs an operator), so the cost never grows with the completed deliveries, which are nearly
    the whole log. ``completed`` is what remains of the log's total: for the admin, PostgreSQL's running
    count of the table's live rows (``pg_stat_user_tables.n_live_tup``: exact but up to about a second
    behind, and an estimate for a moment after each ANALYZE of a large table); for a clinic, an index-only
    count of its own rows, which grows with its own log, never another clinic's.

    Args:
        completed: Include ``completed``; without it the result has no ``completed`` key.
    """
    others = [str(s) for s in STATUSES if s != DeliveryStatus.COMPLETED]
    rows = await conn.fetch(
        f"SELECT d.status, count(*) AS n FROM webhook_delivery_log d WHERE {IN_VISIBLE_ORGS}"
        " AND d.status <> 'completed' GROUP BY d.status"
    )
    counts: dict[str, int] = dict.fromkeys(others, 0)
    counts.update({r["status"]: r["n"] for r in rows})
    if completed:
        # Only the branch taken runs: each subquery is an InitPlan, evaluated when first needed.
        total = await conn.fetchval(
            "SELECT CASE WHEN current_setting('app.bypass_rls', true) = 'on'"
            " THEN (SELECT n_live_tup FROM pg_stat_user_tables WHERE relid = 'webhook_delivery_log'::regclass)"
            f" ELSE (SELECT count(*) FROM webhook_delivery_log d WHERE {IN_VISIBLE_ORGS}) END"
        )
        counts[str(DeliveryStatus.COMPLETED)] = max(int(total or 0) - sum(counts.values()), 0)
    return {str(s): counts[str(s)] for s in STATUSES if str(s) in counts}


async def oldest_pending_age_s(conn: Executor) -> float:
    """Age in seconds of the oldest ``pending`` delivery; 0 when there is none."""
    value = await conn.fetchval(
        "SELECT extract(epoch FROM now() - min(d.received_at))::float8 FROM webhook_delivery_log d"
        f" WHERE {IN_VISIBLE_ORGS} AND d.status = 'pending'"
    )
    return float(value or 0.0)


async def mark_enqueued(conn: Executor, messages: Sequence[tuple[Sequence[uuid.UUID], str]]) -> None:
    """Record that these messages, ``(delivery_ids, message_id)`` each, reached Redis (rows still waiting to run).

    It runs after the send, so a worker may already be claiming some of the rows: those are skipped,
    never waited for (``SKIP LOCKED``). Waiting could deadlock: this statement and a worker's claim
    lock overlapping rows in different orders (seen replaying 10,000 dead letters with 50-delivery
    messages). A skipped row is being processed, so it needs no mark; if its claim rolls back, the
    sweeper resends it.
    """
    ids = [i for delivery_ids, _ in messages for i in delivery_ids]
    job_ids = [message_id for delivery_ids, message_id in messages for _ in delivery_ids]
    await conn.execute(
        "UPDATE webhook_delivery_log d SET enqueued_at = now(), job_id = u.job_id"
        " FROM unnest($1::uuid[], $2::text[]) AS u(id, job_id)"
        " WHERE d.id = u.id AND d.id IN (SELECT id FROM webhook_delivery_log WHERE id = ANY($1::uuid[])"
        "                                   AND status IN ('pending', 'failed') FOR UPDATE SKIP LOCKED)",
        ids,
        job_ids,
    )
