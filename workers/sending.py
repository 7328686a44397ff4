"""Send delivery messages and record on each row whether Redis has them: the one "enqueue, then record" step.

A delivery's row says whether its message is known to be in Redis
(``enqueued_at``). If the send fails, the rows are marked not enqueued and
the sweeper sends them later; nothing is lost either way. (The receiver's
hot path records optimistically at insert instead: :mod:`ingest.background`.)
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence

import asyncpg
import dramatiq
import redis

from db import deliveries
from workers.broker import MAX_DELIVERIES_PER_MESSAGE, REPLAY_DELIVERIES_PER_MESSAGE, batches, enqueue_many


async def send_and_record(
    pool: asyncpg.Pool,
    broker: dramatiq.Broker,
    delivery_ids: Sequence[uuid.UUID],
    *,
    replay: bool = False,
    alone: Collection[uuid.UUID] = (),
) -> None:
    """Send messages for ``delivery_ids`` (many per message: :func:`workers.broker.batches`) and mark the rows
    enqueued with their message's id.

    Args:
        replay: On the replay queue, behind live deliveries, in smaller messages.
        alone: Deliveries sent in a message of their own.

    Raises:
        redis.RedisError: Redis failed; the rows are marked not enqueued first, so the sweeper sends them.
    """
    if not delivery_ids:
        return
    messages = batches(
        delivery_ids, alone=alone, size=REPLAY_DELIVERIES_PER_MESSAGE if replay else MAX_DELIVERIES_PER_MESSAGE
    )
    try:
        await enqueue_many(broker, messages, replay=replay)
    except redis.RedisError:
        # Some may have gone out; sending those again is harmless (one claim wins).
        await deliveries.mark_not_enqueued(pool, list(delivery_ids))
        raise
    await deliveries.mark_enqueued(pool, messages)
