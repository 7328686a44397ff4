"""The scheduler process: the sweeper every ``SWEEP_INTERVAL_S`` and retention daily at 04:00 UTC.

Jobs are timed by APScheduler. Each run takes a PostgreSQL advisory lock
named after its job, so with two scheduler processes (a rolling deploy, a
second host) only one runs a job at a time; the other skips that run.
"""

from __future__ import annotations

import asyncio
import signal
import zlib
from collections.abc import Awaitable, Callable

import asyncpg
import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from prometheus_client import start_http_server

from db.pool import create_pool
from ingest.settings import Settings
from workers import retention
from workers.broker import build_broker
from workers.sweeper import SweepConfig, sweep_once

log = structlog.get_logger("workers.scheduler")

#: The seeds' schedule for cleanup_old_webhook_logs.
RETENTION_CRON = CronTrigger(hour=4, minute=0, timezone="UTC")


def sweep_config(settings: Settings) -> SweepConfig:
    """Derive the sweep's timing from the settings.

    A delivery whose enqueue failed is sent after two sweep intervals (at
    least 1 s). A message sent but not claimed within two leases counts as
    lost (a killed worker's prefetched messages, Redis restarted empty) and is
    sent again; a duplicate is harmless, the claim lets one through.
    """
    return SweepConfig(
        enqueue_grace_s=max(1.0, 2 * settings.sweep_interval_s),
        resend_after_s=max(2.0, 2.0 * settings.delivery_lease_s),
    )


def job_lock_key(name: str) -> int:
    """The advisory lock key of a job: a stable 32-bit hash of its name."""
    return zlib.crc32(f"vapi-ingest job {name}".encode())


async def run_exclusively(pool: asyncpg.Pool, name: str, job: Callable[[], Awaitable[object]]) -> bool:
    """Run ``job`` unless another process holds its lock.

    Returns:
        True if it ran; False if another scheduler was running it.
    """
    async with pool.acquire() as conn:
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", job_lock_key(name)):
            log.info("job_skipped_locked", job=name)
            return False
        try:
            await job()
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", job_lock_key(name))
    return True


async def run(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT; serve metrics on ``SCHEDULER_METRICS_PORT``."""
    # min_size=0: start even while PostgreSQL is down; each run retries.
    pool = await create_pool(settings.database_url, min_size=0, max_size=3)
    broker = build_broker(settings.redis_url)
    config = sweep_config(settings)
    start_http_server(settings.scheduler_metrics_port)

    def guarded(name: str, job: Callable[[], Awaitable[object]]) -> Callable[[], Awaitable[None]]:
        async def wrapper() -> None:
            try:
                await run_exclusively(pool, name, job)
            except Exception as exc:  # noqa: BLE001 - the next run tries again
                log.warning("job_failed", job=name, error=f"{type(exc).__name__}: {exc}")

        return wrapper

    scheduler = AsyncIOScheduler(timezone="UTC")
    # max_instances=1 + coalesce: a slow run is never overlapped by the next.
    scheduler.add_job(
        guarded("sweep", lambda: sweep_once(pool, broker, config)),
        "interval",
        seconds=settings.sweep_interval_s,
        id="sweep",
        max_instances=1,
        coalesce=True,
    )
    scheduler.add_job(
        guarded("retention", lambda: retention.cleanup(pool, retention_days=settings.retention_days)),
        RETENTION_CRON,
        id="retention",
        max_instances=1,
        coalesce=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    scheduler.start()
    log.info("scheduler_started", sweep_interval_s=settings.sweep_interval_s, retention="daily 04:00 UTC")
    try:
        await stop.wait()
    finally:
        scheduler.shutdown(wait=False)
        await pool.close()
        broker.close()
        log.info("scheduler_stopped")
