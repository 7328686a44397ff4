"""Enqueue after answering: a delivery's Dramatiq message is sent off the request path.

A failed send is recorded on the row (``enqueued_at`` cleared) so the sweeper
sends it; the task is kept until done so shutdown can wait for it.
"""

from __future__ import annotations

import asyncio
import uuid

import redis
import structlog
from aiohttp import web

from db import deliveries
from db.errors import UNAVAILABLE_ERRORS
from ingest.appkeys import DB_POOL, ENQUEUER, TASKS

log = structlog.get_logger("ingest.background")


def enqueue_in_background(app: web.Application, delivery_id: uuid.UUID, message_id: str) -> None:
    """Send the delivery's message (``message_id``, as written to its row) after the answer, in a kept task."""
    task = asyncio.create_task(_enqueue(app, delivery_id, message_id))
    app[TASKS].add(task)
    task.add_done_callback(app[TASKS].discard)


async def _enqueue(app: web.Application, delivery_id: uuid.UUID, message_id: str) -> None:
    try:
        await app[ENQUEUER].enqueue(delivery_id, message_id)
    except redis.RedisError as exc:
        log.warning("delivery_enqueue_failed", delivery_id=str(delivery_id), error=str(exc))
        try:
            await deliveries.mark_not_enqueued(app[DB_POOL], [delivery_id])
        except UNAVAILABLE_ERRORS:
            # The row keeps enqueued_at; the sweeper resends it after resend_after_s.
            log.warning("delivery_enqueue_unrecorded", delivery_id=str(delivery_id))
