"""The scheduler process (``vapi-ingest scheduler``): its resources from the environment, then the jobs until a signal."""

from __future__ import annotations

import asyncio
import signal

import structlog
from prometheus_client import start_http_server

from db.pool import create_pool
from ingest.configs import sweep_config
from ingest.settings import Settings
from workers.broker import build_broker
from workers.scheduler import build_scheduler

log = structlog.get_logger("ingest.scheduler_main")


async def run(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT; serve metrics on ``SCHEDULER_METRICS_PORT``."""
    # min_size=0: start even while PostgreSQL is down; each run retries.
    pool = await create_pool(settings.database_url, min_size=0, max_size=3)
    broker = build_broker(settings.redis_url)
    start_http_server(settings.scheduler_metrics_port)
    scheduler = build_scheduler(
        pool,
        broker,
        sweep=sweep_config(settings),
        sweep_interval_s=settings.sweep_interval_s,
        retention_days=settings.retention_days,
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
