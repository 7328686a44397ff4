"""Running console replays: each under a lease with an owner, resumed by any web process after a crash.

A replay's members were copied when the operator confirmed (:func:`db.replays.create_for_group`); a run
walks them once in id order, a batch at a time (:func:`db.replays.step`: the deliveries still
``failed``/``dead_letter`` go back to ``pending`` and are counted, in one transaction), then sends them
on the replay queue, so live traffic goes first. While the replay queue is full (workers slow or down)
it waits, renewing its lease, so no other process takes the replay over; a runner that finds its lease
gone (it stalled past it, or the replay was cancelled) stops before sending anything more.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
import dramatiq
import structlog

from db import replays
from db.tenancy import tenant_scope
from db.types import Conn
from workers.broker import REPLAY_DELIVERIES_PER_MESSAGE, Lane, replay_backlog
from workers.replay import BACKLOG_POLL_S
from workers.sending import send_and_record

log = structlog.get_logger("workers.replay_runs")
T = TypeVar("T")

#: Seconds a runner holds a replay between renewals; another process takes it up after this.
LEASE_S = 30.0
#: Seconds between looks for replays to resume.
POLL_S = 5.0
#: Deliveries per batch (one transaction, one round of sends); also the most a replay lets wait in Redis.
BATCH = 200
#: Seconds between the runner's own looks at the outcomes of what it sent (:func:`db.replays.settle`), so
#: the members in flight stay few and a page's look at the progress stays cheap even if nobody watches.
SETTLE_EVERY_S = 5.0


async def run(pool: asyncpg.Pool, broker: dramatiq.Broker, claimed: replays.ClaimedReplay, *, budget: int) -> int:
    """Replay what a claimed replay still has to do, until its members are done, it is cancelled, or its
    lease is lost.

    Args:
        claimed: From :func:`db.replays.claim`.
        budget: Attempts each replayed delivery gets (``RETRY_MAX_ATTEMPTS``).

    Returns:
        How many deliveries this run replayed.
    """
    replay_id, owner, rate = claimed.id, claimed.lease_owner, claimed.rate_per_s
    size = max(1, min(BATCH, int(rate) if rate else BATCH))
    cursor: uuid.UUID | None = None
    total = 0
    renewed = settled = time.monotonic()
    outcome = "done"
    while True:
        if await replay_backlog(broker) * REPLAY_DELIVERIES_PER_MESSAGE >= BATCH:
            # Waiting for the workers: hold the lease (renewed a third of the way through), or stop.
            if time.monotonic() - renewed >= LEASE_S / 3:
                if not await replays.renew(pool, replay_id, owner, lease_s=LEASE_S):
                    outcome = "stopped"
                    break
                renewed = time.monotonic()
            await asyncio.sleep(BACKLOG_POLL_S)
            continue
        started = time.monotonic()
        step = await _step(pool, claimed, after=cursor, budget=budget, limit=size)
        renewed = time.monotonic()
        if step is None:
            outcome = "stopped"  # cancelled, or the lease went to another runner
            break
        if step.cursor is None:
            await replays.finish(pool, replay_id, owner)
            break
        cursor = step.cursor
        await send_and_record(pool, broker, step.replayed, lane=Lane.REPLAY)
        total += len(step.replayed)
        if time.monotonic() - settled >= SETTLE_EVERY_S:
            await _as_its_clinic(pool, claimed, lambda conn: replays.settle(conn, replay_id))
            settled = time.monotonic()
        if rate:
            await asyncio.sleep(max(0.0, len(step.replayed) / rate - (time.monotonic() - started)))
    log.info("console_replay_finished", replay_id=str(replay_id), replayed=total, outcome=outcome)
    return total


async def _step(
    pool: asyncpg.Pool, claimed: replays.ClaimedReplay, *, after: uuid.UUID | None, budget: int, limit: int
) -> replays.Step | None:
    return await _as_its_clinic(
        pool,
        claimed,
        lambda conn: replays.step(
            conn, claimed.id, claimed.lease_owner, after=after, budget=budget, limit=limit, lease_s=LEASE_S
        ),
    )


async def _as_its_clinic(pool: asyncpg.Pool, claimed: replays.ClaimedReplay, act: Callable[[Conn], Awaitable[T]]) -> T:
    """``act`` in one transaction, as the replay's clinic (row-level security) for a replay a clinic
    started, as its confirmation was; as the service for the admin's."""
    async with pool.acquire() as conn, conn.transaction():
        scope = tenant_scope(conn, claimed.org_id) if claimed.org_id else contextlib.nullcontext()
        async with scope:
            return await act(conn)


async def resume_forever(pool: asyncpg.Pool, broker: dramatiq.Broker, *, budget: int, wake: asyncio.Event) -> None:
    """Run every replay whose lease is free, one at a time, until cancelled (a web process's background task).

    Args:
        wake: Set it to look now rather than after :data:`POLL_S` (a replay was just confirmed).
    """
    while True:
        try:
            claimed = await replays.claim(pool, lease_s=LEASE_S)
            if claimed is not None:
                await run(pool, broker, claimed, budget=budget)
                continue
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - an outage must not end the loop; the lease lets another retry
            log.warning("console_replay_failed", error=f"{type(exc).__name__}: {exc}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), POLL_S)
        wake.clear()
