"""The sweeper: resend messages for deliveries that lost theirs, reclaim expired leases,
and mark synchronous tool calls whose caller stopped waiting as ``missed``.

Runs in the scheduler process every ``SWEEP_INTERVAL_S``. Rows are taken
with ``FOR UPDATE SKIP LOCKED`` and marked enqueued in the same
transaction, so two schedulers never send the same row twice in one pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
import dramatiq
import redis
import structlog

from db import recovery, tool_calls
from workers.sending import send_and_record

log = structlog.get_logger("workers.sweeper")


@dataclass(frozen=True, kw_only=True)
class SweepConfig:
    """Timing of the sweep, in seconds.

    Attributes:
        enqueue_grace_s: How long a delivery may wait for its own message
            before the sweeper assumes it has none.
        resend_after_s: How long after a send a still-unclaimed delivery's
            message counts as lost (Redis restarted empty).
        batch_size: Rows per transaction; a pass loops until none are left.
    """

    enqueue_grace_s: float = 10.0
    resend_after_s: float = 300.0
    batch_size: int = 500


async def sweep_once(pool: asyncpg.Pool, broker: dramatiq.Broker, config: SweepConfig) -> int:
    """Run one sweep pass.

    First marks unfinished synchronous tool calls past their ``answer_by``
    as ``missed`` (their request never finished them: a killed web process,
    PostgreSQL failing mid-call); they are never sent to a worker.

    Returns:
        How many deliveries were (re)sent to Redis.

    Raises:
        asyncpg and OS errors when PostgreSQL is unreachable; nothing is lost,
        the next pass tries again. A Redis failure is logged, and the rows are
        marked not enqueued for the next pass.
    """
    missed = 0
    while True:
        marked = await tool_calls.expire_sync(pool, limit=config.batch_size)
        missed += marked
        if marked < config.batch_size:
            break
    if missed:
        log.warning("tool_calls_missed", deliveries=missed)
    sent = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            batch = await recovery.sweep(
                conn,
                enqueue_grace_s=config.enqueue_grace_s,
                resend_after_s=config.resend_after_s,
                limit=config.batch_size,
            )
        try:
            await send_and_record(pool, broker, [i for i, _ in batch], alone={i for i, reclaimed in batch if reclaimed})
        except redis.RedisError as exc:
            log.warning("sweep_enqueue_failed", unsent=len(batch), error=str(exc))
            return sent
        sent += len(batch)
        if len(batch) < config.batch_size:
            break
    if sent:
        log.info("sweep_resent", deliveries=sent)
    return sent
