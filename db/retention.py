"""Retention: the seeds' cleanup function, a batch at a time, and how much it would delete now."""

from __future__ import annotations

from db.types import Executor


async def cleanup_old_deliveries(conn: Executor, *, retention_days: int, batch_size: int) -> int:
    """One batch of ``cleanup_old_webhook_logs`` (seed): delete finished deliveries older than the retention.

    Returns:
        How many were deleted (fewer than ``batch_size``: nothing older is left).
    """
    deleted: int = await conn.fetchval("SELECT cleanup_old_webhook_logs($1, $2)", retention_days, batch_size)
    return deleted


async def count_old_deliveries(conn: Executor, *, retention_days: int) -> int:
    """How many deliveries ``cleanup_old_webhook_logs`` would delete now (completed, dead-lettered or discarded, older)."""
    count: int = await conn.fetchval(
        "SELECT count(*) FROM webhook_delivery_log WHERE status IN ('completed', 'dead_letter', 'discarded')"
        " AND received_at < now() - make_interval(days => $1)",
        retention_days,
    )
    return count
