"""Session advisory locks that name a job, so one process at a time runs it (scheduler jobs)."""

from __future__ import annotations

import zlib

from db.types import Conn


def job_lock_key(name: str) -> int:
    """The advisory lock key of a job: a stable 32-bit hash of its name."""
    return zlib.crc32(f"vapi-ingest job {name}".encode())


async def try_lock_job(conn: Conn, name: str) -> bool:
    """Take the job's session lock without waiting. Returns False if another session holds it."""
    taken: bool = await conn.fetchval("SELECT pg_try_advisory_lock($1)", job_lock_key(name))
    return taken


async def unlock_job(conn: Conn, name: str) -> None:
    """Release the job's session lock (pooled connections keep sessions, so this must run)."""
    await conn.execute("SELECT pg_advisory_unlock($1)", job_lock_key(name))
