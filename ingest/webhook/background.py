"""Enqueue after answering: deliveries' Dramatiq message is sent off the request path.

A failed send is recorded on the rows (``enqueued_at`` cleared) so the sweeper
sends them; the task is kept until done so shutdown can wait for it.
"""

from __future__ import annotations

import asyncio

import redis
import structlog
from aiohttp import web

from db import deliveries
from db.errors import UNAVAILABLE_ERRORS
from db.types import DeliveryId
from ingest.appkeys import DB_POOL, ENQUEUER, TASKS
from ingest.metrics import DELIVERIES_OVERFLOWED
from workers.broker import Lane

log = structlog.get_logger("ingest.webhook.background")


def enqueue_in_background(app: web.Application, delivery_ids: list[DeliveryId], message_id: str, lane: Lane) -> None:
    """Send one message for these deliveries (``message_id``, as written to their rows) on ``lane`` after
    the answer, in a kept task."""
    task = asyncio.create_task(_enqueue(app, delivery_ids, message_id, lane))
    app[TASKS].add(task)
    task.add_done_callback(app[TASKS].discard)


async def _enqueue(app: web.Application, delivery_ids: list[DeliveryId], message_id: str, lane: Lane) -> None:
    if lane is Lane.OVERFLOW:
        DELIVERIES_OVERFLOWED.inc(len(delivery_ids))
    try:
        await app[ENQUEUER].enqueue(delivery_ids, message_id, lane)
    except redis.RedisError as exc:
        log.warning("delivery_enqueue_failed", deliveries=len(delivery_ids), message_id=message_id, error=str(exc))
        try:
            await deliveries.mark_not_enqueued(app[DB_POOL], delivery_ids)
        except UNAVAILABLE_ERRORS:
            # The rows keep enqueued_at; the sweeper resends them after resend_after_s.
            log.warning("delivery_enqueue_unrecorded", deliveries=len(delivery_ids), message_id=message_id)
