"""The scheduler's jobs: the sweeper every ``SWEEP_INTERVAL_S`` and retention daily at 04:00 UTC.

Jobs are timed by APScheduler. Each run takes a PostgreSQL advisory lock
named after its job, so with two scheduler processes (a rolling deploy, a
second host) only one runs a job at a time; the other skips that run.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import asyncpg
import dramatiq
import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from db import job_runs, locks
from workers import metrics, retention
from workers.sweeper import SweepConfig, sweep_once

log = structlog.get_logger("workers.scheduler")

#: The seeds' schedule for cleanup_old_webhook_logs.
RETENTION_CRON = CronTrigger(hour=4, minute=0, timezone="UTC")


async def run_exclusively(pool: asyncpg.Pool, name: str, job: Callable[[], Awaitable[object]]) -> bool:
    """Run ``job`` unless another process holds its lock; record a successful run in ``job_runs`` and the metrics.

    A run that returns an int (rows touched) sets ``vapi_scheduler_job_last_rows{task}``; every
    successful run sets ``vapi_scheduler_job_last_success_timestamp_seconds{task}`` (alert: VapiSweeperStalled).

    Returns:
        True if it ran; False if another scheduler was running it.
    """
    async with pool.acquire() as conn:
        if not await locks.try_lock_job(conn, name):
            log.info("job_skipped_locked", job=name)
            return False
        try:
            result = await job()
            rows = result if isinstance(result, int) else None
            await job_runs.record_success(conn, name, rows)
        finally:
            await locks.unlock_job(conn, name)
    if isinstance(result, int):
        metrics.JOB_LAST_ROWS.labels(name).set(result)
    metrics.JOB_LAST_SUCCESS.labels(name).set(time.time())
    return True


def build_scheduler(
    pool: asyncpg.Pool, broker: dramatiq.Broker, *, sweep: SweepConfig, sweep_interval_s: float, retention_days: int
) -> AsyncIOScheduler:
    """The scheduler's jobs: the sweeper every ``sweep_interval_s``, retention daily at 04:00 UTC.

    Each run holds its job's advisory lock (:func:`run_exclusively`), and a
    failed run is logged and left to the next one.
    """

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
        guarded("sweep", lambda: sweep_once(pool, broker, sweep)),
        "interval",
        seconds=sweep_interval_s,
        id="sweep",
        max_instances=1,
        coalesce=True,
    )
    scheduler.add_job(
        guarded("retention", lambda: retention.cleanup(pool, retention_days=retention_days)),
        RETENTION_CRON,
        id="retention",
        max_instances=1,
        coalesce=True,
    )
    return scheduler
