"""``retention run``: delete old finished deliveries now, as the scheduler does daily at 04:00 UTC."""

from __future__ import annotations

import click

from db import retention as retention_db
from ingest.cli.support import open_pool
from ingest.cli.support import run_async as _run
from ingest.cli.support import settings as _settings


@click.group()
def retention() -> None:
    """Retention of the delivery log (RETENTION_DAYS)."""


@retention.command("run")
@click.option("--dry-run", is_flag=True, help="Only count what would be deleted.")
def retention_run(dry_run: bool) -> None:
    """Delete completed and dead-lettered deliveries older than RETENTION_DAYS, in short batches."""
    from workers.retention import cleanup
    from workers.scheduler import run_exclusively

    settings = _settings()

    async def run() -> int:
        pool = await open_pool(settings)
        try:
            if dry_run:
                return await retention_db.count_old_deliveries(pool, retention_days=settings.retention_days)
            # Through the scheduler's wrapper: one run at a time, recorded where queue-health shows it.
            deleted = 0

            async def job() -> int:
                nonlocal deleted
                deleted = await cleanup(pool, retention_days=settings.retention_days)
                return deleted

            if not await run_exclusively(pool, "retention", job):
                raise click.ClickException("retention is running in another process (the scheduler); try later")
            return deleted
        finally:
            await pool.close()

    n = _run(run())
    verb = "would delete" if dry_run else "deleted"
    click.echo(f"{verb} {n} deliver{'y' if n == 1 else 'ies'} older than {settings.retention_days} days")
