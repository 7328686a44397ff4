"""Running console replays: each under a lease, resumed by any web process after a crash or restart.

The deliveries were frozen when the operator confirmed; the run replays
those still ``failed``/``dead_letter`` and not already replayed by it, on
the replay queue (:func:`workers.replay.replay`), so live traffic goes first.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import dramatiq
import structlog

from db import replays
from db.filters import DeliveryFilter
from db.statuses import REPLAYABLE
from workers.replay import replay

log = structlog.get_logger("workers.replay_runs")

#: Seconds a runner holds a replay between renewals; another process takes it up after this.
LEASE_S = 30.0
#: Seconds between looks for replays to resume.
POLL_S = 5.0
#: Deliveries per batch (one transaction, one round of sends, one progress update).
BATCH = 200


async def run(pool: asyncpg.Pool, broker: dramatiq.Broker, claimed: dict[str, Any], *, budget: int) -> int:
    """Replay what a claimed replay still has to do; renew its lease per batch; stop if it is cancelled.

    Returns:
        How many deliveries this run replayed.
    """
    replay_id: uuid.UUID = claimed["id"]
    frozen: list[uuid.UUID] = claimed["delivery_ids"]
    running = True
    total = 0
    # A slice of the frozen ids at a time, so a batch's query carries its own ids, never the whole set
    # (at 200,000 that alone cost 126 ms a batch). A resumed run walks the slices again; those already
    # replayed are skipped by not_replayed_since.
    for start in range(0, len(frozen), BATCH):
        flt = DeliveryFilter(
            statuses=tuple(REPLAYABLE),
            ids=tuple(frozen[start : start + BATCH]),
            not_replayed_since=claimed["created_at"],
        )
        done = -1
        while running and done != 0:
            took: list[int] = []
            # One batch per call, so each batch renews the lease and a cancellation is seen after it.
            done = await replay(
                pool,
                broker,
                flt,
                budget=budget,
                batch_size=BATCH,
                rate_per_s=claimed["rate_per_s"],
                org_scope=claimed["org_id"],
                on_progress=took.append,
                should_stop=_after_one_batch(took),
                max_backlog=BATCH,
            )
            total += done
            running = await replays.advance(pool, replay_id, done, lease_s=LEASE_S)
        if not running:
            break
    if running:
        await replays.finish(pool, replay_id)
    log.info("console_replay_finished", replay_id=str(replay_id), replayed=total, cancelled=not running)
    return total


def _after_one_batch(took: list[int]) -> Callable[[], bool]:
    return lambda: bool(took)


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
