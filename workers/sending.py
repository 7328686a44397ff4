"""Send delivery messages and record on each row whether Redis has them: the one "enqueue, then record" step.

A delivery's row says whether its message is known to be in Redis
(``enqueued_at``). If the send fails, the rows are marked not enqueued and
the sweeper sends them later; nothing is lost either way. (The receiver's
hot path records optimistically at insert instead: :mod:`ingest.webhook.background`.)
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import asyncpg
import dramatiq
import redis

from db import deliveries
from db.types import DeliveryId
from workers.broker import Lane, batches, enqueue_many


async def send_and_record(
    pool: asyncpg.Pool,
    broker: dramatiq.Broker,
    delivery_ids: Sequence[DeliveryId],
    *,
    lane: Lane = Lane.LIVE,
    alone: Collection[DeliveryId] = (),
) -> None:
    """Send messages for ``delivery_ids`` (many per message: :func:`workers.broker.batches`) and mark the rows
    enqueued with their message's id.

    Args:
        lane: The queue they go on; its messages carry at most ``lane.per_message`` deliveries.
        alone: Deliveries sent in a message of their own.

    Raises:
        redis.RedisError: Redis failed; the rows are marked not enqueued first, so the sweeper sends them.
    """
    if not delivery_ids:
        return
    messages = batches(delivery_ids, alone=alone, size=lane.per_message)
    try:
        await enqueue_many(broker, messages, lane=lane)
    except redis.RedisError:
        # Some may have gone out; sending those again is harmless (one claim wins).
        await deliveries.mark_not_enqueued(pool, list(delivery_ids))
        raise
    await deliveries.mark_enqueued(pool, messages)
