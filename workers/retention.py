"""Retention: delete finished deliveries older than ``RETENTION_DAYS``, one short transaction per batch;
and ended console sessions and sign-in attempt windows."""

from __future__ import annotations

import asyncpg
import structlog

from db import retention as retention_db
from db import signins
from workers import metrics

log = structlog.get_logger("workers.retention")


async def cleanup(pool: asyncpg.Pool, *, retention_days: int, batch_size: int = 1000) -> int:
    """Call ``cleanup_old_webhook_logs`` until a batch comes back short.

    Each call is its own transaction, so no lock outlives one batch.

    Returns:
        How many deliveries were deleted.
    """
    total = 0
    while True:
        deleted = await retention_db.cleanup_old_deliveries(pool, retention_days=retention_days, batch_size=batch_size)
        total += deleted
        metrics.RETENTION_DELETED.inc(deleted)
        if deleted < batch_size:
            break
    # Sessions and attempt windows are refused once past their time anyway; this only reclaims space.
    pruned = await signins.prune(pool)
    log.info("retention_done", deleted=total, retention_days=retention_days, console_rows_pruned=pruned)
    return total
