"""The last successful run of each scheduler job (``job_runs``): when, and how many rows it touched."""

from __future__ import annotations

from datetime import datetime
from typing import TypedDict

from db.types import Executor


async def record_success(conn: Executor, job: str, rows: int | None) -> None:
    """Note that ``job`` just succeeded, touching ``rows`` rows (None when it does not count)."""
    await conn.execute(
        "INSERT INTO job_runs (job, last_success_at, last_rows) VALUES ($1, now(), $2)"
        " ON CONFLICT (job) DO UPDATE SET last_success_at = excluded.last_success_at, last_rows = excluded.last_rows",
        job,
        rows,
    )


class JobRun(TypedDict):
    """A scheduler job's last success: when, how long ago (seconds, to 0.1), and the rows it handled."""

    last_success_at: datetime
    age_s: float
    last_rows: int | None


async def last_runs(conn: Executor) -> dict[str, JobRun]:
    """``{job: {last_success_at, age_s, last_rows}}`` for every job that has ever succeeded."""
    rows = await conn.fetch(
        "SELECT job, last_success_at, extract(epoch FROM now() - last_success_at)::float8 AS age_s, last_rows"
        " FROM job_runs ORDER BY job"
    )
    return {
        r["job"]: JobRun(last_success_at=r["last_success_at"], age_s=round(r["age_s"], 1), last_rows=r["last_rows"])
        for r in rows
    }
