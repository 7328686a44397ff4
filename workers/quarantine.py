"""Route quarantined messages once their sender is known: the one operation behind the CLI and the console."""

from __future__ import annotations

import asyncpg
import dramatiq

from db import quarantine as quarantine_db
from db.quarantine import Routed
from db.types import OrgId
from workers.handlers import QUEUED_TYPES
from workers.parsing import stored
from workers.sending import send_and_record


async def route_sender(
    pool: asyncpg.Pool,
    broker: dramatiq.Broker,
    org_id: OrgId,
    *,
    max_attempts: int,
    assistant_id: str | None = None,
    phone_number_id: str | None = None,
    event_type: str | None = None,
    map_sender: bool = True,
) -> Routed:
    """Map the sender to ``org_id`` and move its unrouted messages into the delivery log, in one transaction;
    then enqueue those that workers process.

    Args:
        map_sender: False to move the matching messages without mapping anything (the CLI's ``--all``,
            and ``--type``, which routes only part of a sender's messages).

    Returns:
        How many messages moved, and the ids queued for processing.

    Raises:
        OrgNotFound, AlreadyMapped: from :func:`db.quarantine.map_sender`; nothing moved.
        redis.RedisError: enqueueing failed; the rows are stored and the sweeper sends them.
    """
    async with pool.acquire() as conn, conn.transaction():
        if map_sender:
            await quarantine_db.map_sender(conn, org_id, assistant_id=assistant_id, phone_number_id=phone_number_id)
        routed = await quarantine_db.route(
            conn,
            OrgId(org_id),
            max_attempts=max_attempts,
            processable=QUEUED_TYPES,
            facts_of=lambda event_type, payload: stored(payload, event_type).facts(),
            assistant_id=assistant_id,
            phone_number_id=phone_number_id,
            event_type=event_type,
        )
    await send_and_record(pool, broker, routed.queued)
    return routed
