"""Send delivery messages and record on each row whether Redis has them: the one "enqueue, then record" step.

A delivery's row says whether its message is known to be in Redis
(``enqueued_at``). If the send fails, the rows are marked not enqueued and
the sweeper sends them later; nothing is lost either way. (The receiver's
hot path records optimistically at insert instead: :mod:`ingest.background`.)
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg
import dramatiq
import redis

from db import deliveries
from workers.broker import enqueue_many


async def send_and_record(
    pool: asyncpg.Pool, broker: dramatiq.Broker, pairs: Sequence[tuple[uuid.UUID, str]], *, replay: bool = False
) -> None:
    """Send a message for each ``(delivery_id, message_id)`` and mark the rows enqueued.

    Args:
        replay: On the replay queue, behind live deliveries.

    Raises:
        redis.RedisError: Redis failed; the rows are marked not enqueued first, so the sweeper sends them.
    """
    if not pairs:
        return
    ids = [delivery_id for delivery_id, _ in pairs]
    try:
        await enqueue_many(broker, pairs, replay=replay)
    except redis.RedisError:
        # Some may have gone out; sending those again is harmless (one claim wins).
        await deliveries.mark_not_enqueued(pool, ids)
        raise
    await deliveries.mark_enqueued(pool, ids)
