"""A metrics scrape costs what the backlog holds, not what the log holds (issue 17).

``/metrics`` reads ``vapi_deliveries{status}``, the oldest pending age and quarantine's count from
PostgreSQL on every scrape (every 15 s, forever); ``queue-health`` reads the same counts.
"""

from __future__ import annotations

from typing import Any

from db import deliveries
from tests.helpers import Explaining, log_reads, wait_until

#: Every status but completed (the backlog index holds exactly these).
OTHERS = ("pending", "processing", "failed", "dead_letter", "missed", "discarded")
#: Completed deliveries, and each other status's.
COMPLETED, EACH_OTHER = 5000, 4

_SEED = """
INSERT INTO webhook_delivery_log (org_id, event_type, event_id, payload, status, completed_at)
SELECT $1, 'status-update', $2 || ':' || i, '{}', $2, CASE WHEN $2 = 'completed' THEN now() END
  FROM generate_series(1, $3::int) i
"""


async def test_a_scrape_reads_the_backlog_and_none_of_the_completed_deliveries(pool, org_id):
    """With 5,000 completed deliveries and 4 of each other status, the scrape's reads of the log touch at
    most the 20 others (seq scans priced out), and the counts are exact once PostgreSQL's statistics
    have caught up (about a second)."""
    await pool.execute(_SEED, org_id, "completed", COMPLETED)
    for status in OTHERS:
        await pool.execute(_SEED, org_id, status, EACH_OTHER)
    await pool.execute("ANALYZE webhook_delivery_log")

    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        spy: Any = Explaining(conn, analyze=True)
        await deliveries.count_by_status(spy)
        await deliveries.oldest_pending_age_s(spy)

    async def counted() -> dict[str, int] | None:
        found = await deliveries.count_by_status(pool)
        return found if found["completed"] == COMPLETED else None

    counts = await wait_until(counted, timeout_s=15, interval_s=0.2, what=f"{COMPLETED} completed counted")

    read = [sum(n for _, n in log_reads(plan)) for _, plan in spy.plans]
    assert len(read) == 3 and max(read) <= len(OTHERS) * EACH_OTHER
    assert {
        "completed": COMPLETED,
        **dict.fromkeys(OTHERS, EACH_OTHER),
    } == counts
