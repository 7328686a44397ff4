"""The scheduler process: runs the sweeper every ``SWEEP_INTERVAL_S`` with APScheduler."""

from __future__ import annotations

import asyncio
import signal

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from db.pool import create_pool
from ingest.settings import Settings
from workers.broker import build_broker
from workers.sweeper import SweepConfig, sweep_once

log = structlog.get_logger("workers.scheduler")


def sweep_config(settings: Settings) -> SweepConfig:
    """Derive the sweep's timing: wait two intervals (at least 10 s) before assuming a message is missing."""
    return SweepConfig(
        enqueue_grace_s=max(10.0, 2 * settings.sweep_interval_s),
        resend_after_s=max(300.0, 5.0 * settings.delivery_lease_s),
    )


async def run(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT."""
    # min_size=0: start even while PostgreSQL is down; each sweep retries.
    pool = await create_pool(settings.database_url, min_size=0, max_size=2)
    broker = build_broker(settings.redis_url)
    config = sweep_config(settings)

    async def sweep() -> None:
        try:
            await sweep_once(pool, broker, config)
        except Exception as exc:  # noqa: BLE001 - the next interval tries again
            log.warning("sweep_failed", error=f"{type(exc).__name__}: {exc}")

    scheduler = AsyncIOScheduler(timezone="UTC")
    # max_instances=1 + coalesce: a slow pass is never overlapped by the next.
    scheduler.add_job(sweep, "interval", seconds=settings.sweep_interval_s, id="sweep",
                      max_instances=1, coalesce=True)  # fmt: skip
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    scheduler.start()
    log.info("scheduler_started", sweep_interval_s=settings.sweep_interval_s)
    try:
        await stop.wait()
    finally:
        scheduler.shutdown(wait=False)
        await pool.close()
        broker.close()
        log.info("scheduler_stopped")
