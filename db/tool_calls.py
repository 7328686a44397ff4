"""Synchronous tool calls in ``webhook_delivery_log``: claimed only by their own request, before ``answer_by``.

A row with ``answer_by`` is a tool call whose caller waits (migration 0005):
workers never claim it (:func:`db.deliveries.claim` excludes it), the
sweeper only marks it ``missed`` once its caller stopped waiting
(:func:`expire_sync`), and replay never touches it.
"""

from __future__ import annotations

import uuid
from typing import Any

from db.deliveries import Claim
from db.types import Conn, Executor


async def claim_sync(conn: Conn, delivery_id: uuid.UUID) -> Claim | None:
    """Claim a ``pending`` synchronous tool call for its own request, while its caller still waits.

    The lease is ``answer_by``: past it, :func:`expire_sync` marks the row
    ``missed`` if the request never finished it (its web process died).

    Returns:
        The claim, or ``None`` if it is claimed already, finished, or past ``answer_by``.
    """
    row = await conn.fetchrow(
        """
        UPDATE webhook_delivery_log
           SET status = 'processing', attempts = attempts + 1, last_attempt_at = now(),
               lease_expires_at = answer_by
         WHERE id = $1 AND status = 'pending' AND answer_by > clock_timestamp()
        RETURNING id, org_id, event_type, event_id, payload, attempts, max_attempts, replay_count, vapi_call_id,
                  extract(epoch FROM clock_timestamp() - received_at)::float8 AS wait_s
        """,
        delivery_id,
    )
    if row is None:
        return None
    return Claim.from_record(row)


async def complete_sync(conn: Conn, claim: Claim, result: Any) -> bool:
    """Mark a synchronous tool call completed, only if its caller is still waiting.

    Checked against ``clock_timestamp()``, so a tool that ran past ``answer_by``
    cannot commit: the caller is told it failed, and its effects roll back.

    Returns:
        False if the claim was lost or the deadline passed; the caller must roll back.
    """
    status = await conn.execute(
        """
        UPDATE webhook_delivery_log
           SET status = 'completed', completed_at = now(), result = $3, error_message = NULL, lease_expires_at = NULL
         WHERE id = $1 AND status = 'processing' AND attempts = $2 AND answer_by > clock_timestamp()
        """,
        claim.id,
        claim.attempt,
        result,
    )
    return status == "UPDATE 1"


async def mark_missed(conn: Executor, delivery_id: uuid.UUID, error: str) -> bool:
    """End an unfinished synchronous tool call as ``missed`` (its caller was not served).

    Returns:
        False if it had finished already (e.g. completed just before the deadline).
    """
    status = await conn.execute(
        """
        UPDATE webhook_delivery_log
           SET status = 'missed', error_message = $2, lease_expires_at = NULL,
               errors = errors || jsonb_build_object('attempt', attempts, 'at', now(), 'error', $2::text)
         WHERE id = $1 AND status IN ('pending', 'processing') AND answer_by IS NOT NULL
        """,
        delivery_id,
        error[:4000],
    )
    return status == "UPDATE 1"


async def expire_sync(conn: Executor, *, limit: int) -> int:
    """Mark synchronous tool calls whose caller stopped waiting, unfinished, as ``missed``.

    These are calls whose request never finished them: the web process died,
    or PostgreSQL failed mid-call. Nothing ever runs them afterwards.

    Returns:
        How many rows were marked.
    """
    result: int = await conn.fetchval(
        """
        WITH expired AS (
            SELECT id FROM webhook_delivery_log
             WHERE answer_by IS NOT NULL AND status IN ('pending', 'processing') AND answer_by < now()
             ORDER BY answer_by
             LIMIT $1
               FOR UPDATE SKIP LOCKED
        ), marked AS (
            UPDATE webhook_delivery_log d
               SET status = 'missed', lease_expires_at = NULL,
                   error_message = 'the caller stopped waiting before this tool call finished',
                   errors = d.errors || jsonb_build_object('attempt', d.attempts, 'at', now(),
                            'error', 'the caller stopped waiting before this tool call finished')
              FROM expired WHERE d.id = expired.id
            RETURNING 1
        )
        SELECT count(*)::integer FROM marked
        """,
        limit,
    )
    return result
