"""Queries for health endpoints and retention: database size, and the seeds' cleanup function."""

from __future__ import annotations

from db.types import Executor


async def database_size_bytes(conn: Executor) -> int:
    """``pg_database_size`` of the current database, in bytes."""
    size: int = await conn.fetchval("SELECT pg_database_size(current_database())")
    return size


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
