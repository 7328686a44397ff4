"""Replay failed and dead-lettered deliveries: the operation behind the CLI and the admin API."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable

import asyncpg
import dramatiq
import structlog

from db import recovery
from db.filters import DeliveryFilter
from db.tenancy import tenant_scope
from workers.broker import REPLAY_DELIVERIES_PER_MESSAGE, Lane, replay_backlog
from workers.sending import send_and_record

log = structlog.get_logger("workers.replay")

#: Seconds between looks at the replay queue while it is full.
BACKLOG_POLL_S = 0.1

#: Why a synchronous tool call is never replayed (CLI and admin API say it).
REFUSED_TOOL_CALLS = (
    "synchronous tool calls are never replayed: their caller has hung up, and acting now would book behind "
    "their back; they are 'missed' deliveries for a person to call back (deliveries list --status missed)"
)


async def replay(
    pool: asyncpg.Pool,
    broker: dramatiq.Broker,
    flt: DeliveryFilter,
    *,
    budget: int,
    batch_size: int = 500,
    rate_per_s: float | None = None,
    org_scope: uuid.UUID | None = None,
    on_progress: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    max_backlog: int | None = None,
) -> int:
    """Replay every matching ``failed``/``dead_letter`` delivery, batch by batch, behind live traffic.

    Each batch commits (rows back to ``pending`` with a fresh budget), then its
    messages are sent on the replay queue and the rows marked enqueued.
    Stopping between batches leaves nothing half-done; a crash after a commit
    leaves rows the sweeper sends.

    With ``max_backlog``, the next batch waits while that many replay messages
    still wait in Redis, so the pace is the workers' processing, never a pile
    in Redis: the rate limit holds for processing, not only for enqueueing,
    and a replay started while workers are down does not burst when they
    return (it waits for them; the CLI uses this).

    Args:
        budget: Attempts each replayed delivery gets (``RETRY_MAX_ATTEMPTS``).
        rate_per_s: At most this many deliveries per second.
        org_scope: Act as this org only (row-level security), for org tokens.
        on_progress: Called with the number replayed in each batch.
        should_stop: Checked between batches (Ctrl-C in the CLI).
        max_backlog: Replayed deliveries allowed to wait in Redis (each waiting message counted as
            :data:`workers.broker.REPLAY_DELIVERIES_PER_MESSAGE`); no limit when omitted.

    Returns:
        How many deliveries were replayed.

    Raises:
        redis.RedisError: Redis failed mid-way; the batch's rows stay pending
            and the sweeper sends them.
    """
    size = max(1, min(batch_size, int(rate_per_s) if rate_per_s else batch_size))
    total = 0
    while not (should_stop and should_stop()):
        # Each waiting message counts as full: the backlog in deliveries is at most this.
        if max_backlog is not None and await replay_backlog(broker) * REPLAY_DELIVERIES_PER_MESSAGE >= max_backlog:
            await asyncio.sleep(BACKLOG_POLL_S)
            continue
        started = time.monotonic()
        async with pool.acquire() as conn, conn.transaction():
            scope = tenant_scope(conn, org_scope) if org_scope is not None else contextlib.nullcontext()
            async with scope:
                batch = await recovery.replay_batch(conn, flt, budget=budget, limit=size)
        if not batch:
            break
        await send_and_record(pool, broker, batch, lane=Lane.REPLAY)
        total += len(batch)
        if on_progress:
            on_progress(len(batch))
        if rate_per_s:
            await asyncio.sleep(max(0.0, len(batch) / rate_per_s - (time.monotonic() - started)))
    log.info("deliveries_replayed", replayed=total)
    return total
