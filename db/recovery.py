"""Bringing deliveries back: the sweeper's resend of lost messages and expired leases, and operators' replay."""

from __future__ import annotations

from db.filters import DeliveryFilter
from db.types import Conn, DeliveryId


async def sweep(
    conn: Conn, *, enqueue_grace_s: float, resend_after_s: float, limit: int
) -> list[tuple[DeliveryId, bool]]:
    """Find deliveries that need a (new) message, and mark them enqueued.

    Takes, with ``FOR UPDATE SKIP LOCKED`` so concurrent sweepers split the
    work instead of double-sending:

    * ``pending`` rows never enqueued (their enqueue failed) and older than
      ``enqueue_grace_s``, or enqueued more than ``resend_after_s`` ago
      (the message was lost, e.g. Redis restarted empty);
    * ``processing`` rows whose lease expired (a killed worker): set back to
      ``failed`` with an error note, due now;
    * ``failed`` rows whose backoff ended more than ``enqueue_grace_s`` ago
      and whose message was not resent since.

    Synchronous tool calls are never taken (:func:`db.tool_calls.expire_sync`).
    Must run inside a transaction; the caller enqueues after commit.

    Returns:
        ``(delivery_id, reclaimed)`` pairs to enqueue; ``reclaimed`` marks an
        expired lease (a worker died mid-attempt), which is sent alone.
    """
    rows = await conn.fetch(
        """
        WITH due AS (
            SELECT id, status FROM webhook_delivery_log
             WHERE answer_by IS NULL
               AND ((status = 'pending'
                     AND ((enqueued_at IS NULL AND received_at < now() - make_interval(secs => $1))
                          OR enqueued_at < now() - make_interval(secs => $2)))
                 OR (status = 'processing' AND lease_expires_at < now())
                 OR (status = 'failed'
                     AND next_attempt_at < now() - make_interval(secs => $1)
                     AND (enqueued_at IS NULL OR enqueued_at < next_attempt_at
                          OR enqueued_at < now() - make_interval(secs => $2))))
             ORDER BY received_at
             LIMIT $3
             FOR UPDATE SKIP LOCKED
        )
        UPDATE webhook_delivery_log d
           SET status = CASE WHEN due.status = 'processing' THEN 'failed' ELSE d.status END,
               error_message = CASE WHEN due.status = 'processing'
                                    THEN 'lease expired: the worker stopped before finishing'
                                    ELSE d.error_message END,
               next_attempt_at = CASE WHEN due.status = 'processing' THEN now() ELSE d.next_attempt_at END,
               lease_expires_at = NULL,
               enqueued_at = now()
          FROM due
         WHERE d.id = due.id
        RETURNING d.id, due.status = 'processing' AS reclaimed
        """,
        float(enqueue_grace_s),
        float(resend_after_s),
        limit,
    )
    return [(r["id"], r["reclaimed"]) for r in rows]


async def replay_batch(conn: Conn, flt: DeliveryFilter, *, budget: int, limit: int) -> list[DeliveryId]:
    """Put up to ``limit`` matching ``failed``/``dead_letter`` deliveries back to ``pending``.

    Each gets a fresh attempt budget (``max_attempts = attempts + budget``;
    ``attempts`` itself only grows, as it is the claims' fencing token), one
    more ``replay_count`` and ``replayed_at``.
    ``FOR UPDATE SKIP LOCKED`` and the status condition make two concurrent
    replays of one filter replay each delivery once. Synchronous tool calls
    are never replayed (their caller has gone). ``enqueued_at`` stays
    NULL until :func:`db.deliveries.mark_enqueued`, so an interrupted replay is finished by
    the sweeper.

    Args:
        flt: Which deliveries (its status condition narrows to ``failed``/``dead_letter``).

    Returns:
        The ids to enqueue after commit.
    """
    where, params = flt.where()
    n = len(params)
    rows = await conn.fetch(
        f"""
        WITH picked AS (
            SELECT d.id FROM webhook_delivery_log d
             WHERE ({where}) AND d.status IN ('failed', 'dead_letter') AND d.answer_by IS NULL
             ORDER BY d.received_at, d.id
             LIMIT ${n + 2}
               FOR UPDATE SKIP LOCKED
        )
        UPDATE webhook_delivery_log d
           SET status = 'pending', max_attempts = d.attempts + ${n + 1}, replay_count = d.replay_count + 1,
               replayed_at = now(), next_attempt_at = NULL, lease_expires_at = NULL, enqueued_at = NULL
          FROM picked WHERE d.id = picked.id
        RETURNING d.id
        """,
        *params,
        budget,
        limit,
    )
    return [r["id"] for r in rows]
