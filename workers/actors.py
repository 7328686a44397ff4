"""Dramatiq actors: thin adapters from a message of delivery ids to :func:`workers.processing.process_deliveries`."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from typing import Any

import asyncpg
import dramatiq
import structlog
from dramatiq.asyncio import EventLoopThread, get_event_loop_thread
from dramatiq.middleware import Middleware

from db.pool import create_pool
from db.types import DeliveryId
from workers import broker as broker_mod
from workers.broker import Lane
from workers.outcomes import ProcessingOutcome
from workers.processing import Outcome, ProcessingConfig, process_deliveries


class WorkerResources(Middleware):
    """Owns the worker process's asyncpg pool, created on Dramatiq's event loop.

    Opened in ``after_worker_boot`` (after the AsyncIO middleware started the
    loop) and closed in ``after_worker_shutdown``, which Dramatiq runs in
    reverse middleware order, so before the loop stops. If PostgreSQL is down
    at boot, the first message opens it instead, so the worker recovers
    without a restart.
    """

    def __init__(
        self,
        database_url: str,
        config: ProcessingConfig,
        *,
        pool_max_size: int,
        bulk_concurrency: Mapping[Lane, int] | None = None,
    ) -> None:
        self.database_url = database_url
        self.config = config
        self.pool_max_size = pool_max_size
        self.bulk_concurrency = dict(bulk_concurrency or {})
        self._pool: asyncpg.Pool | None = None
        self._opening: asyncio.Lock | None = None
        self._slots: dict[Lane, asyncio.Semaphore] = {}

    def bulk_prefetch(self) -> dict[Lane, int]:
        """Messages of each bulk lane the broker lets this process hold (:class:`workers.broker.DeliveryBroker`):
        one more than run at once, so the next is at hand when one finishes, and threads blocked on a bulk
        lane stay few (live messages keep the rest)."""
        return {lane: n + 1 for lane, n in self.bulk_concurrency.items()}

    def slots(self, lane: Lane) -> asyncio.Semaphore | None:
        """At most ``bulk_concurrency[lane]`` of a bulk lane's messages process at once in this process (created
        on the worker's loop); ``None`` for a lane without a bound (live).

        Priority alone orders only what is waiting; this bounds what a flood or a bulk replay
        takes of the CPU and the database, so live deliveries keep their latency
        (measured in ``tests.bench.replay_isolation``).
        """
        if lane not in self.bulk_concurrency:
            return None
        if lane not in self._slots:
            self._slots[lane] = asyncio.Semaphore(self.bulk_concurrency[lane])
        return self._slots[lane]

    async def pool(self) -> asyncpg.Pool:
        """The pool, opened on first use if boot could not open it.

        Raises:
            OSError, asyncpg.PostgresError: PostgreSQL is unreachable (the
                message fails; the delivery row is resent by the sweeper).
        """
        if self._pool is None:
            self._opening = self._opening or asyncio.Lock()
            async with self._opening:
                if self._pool is None:
                    # Asynchronous commit: what a crash of PostgreSQL loses is redone from the durable delivery row.
                    self._pool = await create_pool(
                        self.database_url, min_size=1, max_size=self.pool_max_size, asynchronous_commit=True
                    )
        return self._pool

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        try:
            _event_loop_thread().run_coroutine(self.pool())
        except (OSError, asyncpg.PostgresError) as exc:
            structlog.get_logger("workers.actors").warning("worker_db_pool_deferred", error=str(exc))

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        if self._pool is not None:
            _event_loop_thread().run_coroutine(self._pool.close())
            self._pool = None


def _event_loop_thread() -> EventLoopThread:
    """Dramatiq's event-loop thread, or a clear error when the AsyncIO middleware is missing (dramatiq's own check)."""
    thread = get_event_loop_thread()
    if thread is None:
        raise RuntimeError(
            "the event loop thread is not running: is the AsyncIO middleware on the broker (workers.broker.build_broker)?"
        )
    return thread


def declare_actors(broker: dramatiq.Broker, resources: WorkerResources) -> dramatiq.Actor[Any, Any]:
    """Declare one delivery actor per :class:`workers.broker.Lane` on ``broker``; return the live one.

    All run the same processing; each lane has its own queue and priority (live first, then
    overflow, then replays), and at most ``resources.bulk_concurrency[lane]`` of a bulk lane's
    messages run at once per process, so a flood or a bulk replay barely delays live deliveries.
    A retry stays on its lane. Retries are ours, not Dramatiq's (``max_retries=0``): the backoff
    and the dead letter live on the PostgreSQL row, and a retry is a delayed message.
    """

    async def run(delivery_ids: list[DeliveryId], lane: Lane) -> list[Outcome]:
        slots = resources.slots(lane)
        if slots is None:
            return await process_deliveries(await resources.pool(), delivery_ids, resources.config)
        async with slots:
            return await process_deliveries(await resources.pool(), delivery_ids, resources.config)

    def make(lane: Lane) -> Any:
        async def process(delivery_ids: list[str] | str) -> None:
            # A bare string is a message sent before messages carried many deliveries.
            ids = [
                DeliveryId(uuid.UUID(i)) for i in ([delivery_ids] if isinstance(delivery_ids, str) else delivery_ids)
            ]
            outcomes = await run(ids, lane)
            # A retry is a message of its own, for one delivery, after that delivery's backoff.
            for delivery_id, outcome in zip(ids, outcomes, strict=True):
                if outcome.status == ProcessingOutcome.RETRIED:
                    await broker_mod.enqueue_many(
                        broker, [([delivery_id], outcome.message_id)], delay_ms=outcome.retry_delay_ms, lane=lane
                    )

        return process

    actors = {
        lane: dramatiq.actor(  # type: ignore[call-overload]
            make(lane),
            broker=broker,
            actor_name=lane.actor_name,
            queue_name=lane.queue_name,
            priority=lane.priority,
            max_retries=0,
        )
        for lane in Lane
    }
    live: dramatiq.Actor[Any, Any] = actors[Lane.LIVE]
    return live


def build_worker_broker(
    redis_url: str,
    database_url: str,
    config: ProcessingConfig,
    *,
    pool_max_size: int,
    bulk_concurrency: Mapping[Lane, int],
    namespace: str = "dramatiq",
) -> dramatiq.Broker:
    """The broker a worker consumes: its resources (:class:`WorkerResources`), each bulk lane bounded in
    messages held and run at once (``bulk_concurrency``), and one actor per lane.

    Args:
        namespace: Prefix of the Redis keys (tests isolate themselves with it).
    """
    resources = WorkerResources(database_url, config, pool_max_size=pool_max_size, bulk_concurrency=bulk_concurrency)
    broker = broker_mod.build_broker(
        redis_url, extra_middleware=[resources], namespace=namespace, bulk_prefetch=resources.bulk_prefetch()
    )
    declare_actors(broker, resources)
    return broker
