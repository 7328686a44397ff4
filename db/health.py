"""Queries for the health endpoint: the database's size."""

from __future__ import annotations

from db.types import Executor


async def database_size_bytes(conn: Executor) -> int:
    """``pg_database_size`` of the current database, in bytes."""
    size: int = await conn.fetchval("SELECT pg_database_size(current_database())")
    return size
