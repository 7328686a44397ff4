"""A clinic's reads touch its own rows only, whatever the other clinics' traffic (issue 17).

Every read a clinic's session runs (the console's pages and search, the admin API and the CLI with an org
token or ``--org``) is run as the tenant role with ``EXPLAIN ANALYZE`` over a log where 50 other clinics
have a hundred times the traffic, in the same dead-letter group, with missed calls and a backlog: no plan
may scan the delivery log or read (through an index range bounded only by a filter, or a policy check)
more rows of it than the clinic has. Many clinics, as in production: the planner prices a clinic's share
of an index by the number of clinics it has seen.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from db import call_backs, dead_letters, deliveries, orgs, replays, reports, throughput
from db import search as search_db
from db.filters import DeliveryFilter
from db.tenancy import tenant_scope
from tests.helpers import Explaining, log_reads
from workers.messages import tool_call_key

#: The clinic's own deliveries; the other clinics, and each one's deliveries.
OWN_ROWS, OTHER_CLINICS, OTHER_ROWS = 30, 50, 60

_SEED = """
INSERT INTO webhook_delivery_log (org_id, event_type, event_id, received_at, status, attempts, last_attempt_at,
                                  completed_at, error_message, vapi_call_id, answer_by, payload)
SELECT $1, t.kind, $2 || ':' || i, now() - i * interval '500 ms', s.status, 1, now() - i * interval '500 ms',
       CASE WHEN s.status = 'completed' THEN now() - i * interval '400 ms' END,
       CASE WHEN s.status IN ('dead_letter', 'failed') THEN 'relation "calls_' || i || '" does not exist' END,
       $2 || '-call-' || i, CASE WHEN s.status = 'missed' THEN now() END,
       jsonb_build_object('type', t.kind, 'call', jsonb_build_object('id', $2 || '-call-' || i,
           'customer', jsonb_build_object('number', '+1555' || $3 || lpad(i::text, 6, '0'))),
           'toolCallList', jsonb_build_array(jsonb_build_object('function', jsonb_build_object('name', 'book'))))
  FROM generate_series(1, $4::int) i
 CROSS JOIN LATERAL (SELECT (ARRAY['status-update', 'tool-calls', 'end-of-call-report'])[1 + i % 3] AS kind) t
 CROSS JOIN LATERAL (SELECT (ARRAY['completed', 'completed', 'dead_letter', 'missed', 'pending', 'failed'])[1 + i % 6]
                            AS status) s
"""


@pytest.fixture
async def clinics(pool, org_id):
    """``(org_id, a dead-letter group every clinic shares, one of the clinic's delivery ids)``."""
    await pool.execute(_SEED, org_id, "own", "1", OWN_ROWS)
    for n in range(OTHER_CLINICS):
        other = await orgs.create_org(pool, name=f"Busy clinic {n}")
        await pool.execute(_SEED, other, f"other{n}", "2", OTHER_ROWS)
    await pool.execute("ANALYZE webhook_delivery_log")
    group = await pool.fetchval(
        "SELECT error_group FROM webhook_delivery_log WHERE status = 'dead_letter' AND org_id = $1 LIMIT 1",
        org_id,
    )
    shared = await pool.fetchval(
        "SELECT count(DISTINCT org_id) FROM webhook_delivery_log WHERE error_group = $1", group
    )
    assert shared == 1 + OTHER_CLINICS  # the others' dead letters are in the very group the clinic opens
    delivery_id = await pool.fetchval("SELECT id FROM webhook_delivery_log WHERE event_id = 'own:1'")
    return org_id, group, delivery_id


async def _every_tenant_read(conn: Any, org_id: uuid.UUID, group: str, delivery_id: uuid.UUID) -> None:
    since = datetime.now(UTC) - timedelta(hours=1)
    await deliveries.count_by_status(conn, completed=False)
    await deliveries.count_by_status(conn)
    await deliveries.oldest_pending_age_s(conn)
    await throughput.per_minute(conn)
    await throughput.tool_outcomes(conn)
    await dead_letters.dead_letter_groups(conn)
    newest = await dead_letters.dead_letters_in_group(conn, group, limit=2)
    await dead_letters.dead_letters_in_group(conn, group, before=(newest[-1]["received_at"], newest[-1]["id"]))
    await dead_letters.group_summary(conn, group)
    # Confirming a replay copies the group's members: the clinic's own only (a write, in the test's transaction).
    await replays.create_for_group(
        conn, org_id=org_id, requested_by="token", description="reads", group=group, refused=0, rate_per_s=None
    )
    await call_backs.missed_calls(conn)
    for q in ("own-call-4", "+15551000004", str(delivery_id)[:8], "own:5"):
        await search_db.search(conn, q, tool_call_key=tool_call_key(q))
    older = (datetime.now(UTC) - timedelta(seconds=5), uuid.UUID(int=0))
    for flt in (
        DeliveryFilter(),
        DeliveryFilter(statuses=("dead_letter", "failed")),
        DeliveryFilter(since=since),
        DeliveryFilter(vapi_call_id="own-call-4"),
        DeliveryFilter(older_than=older),
    ):
        await reports.count(conn, flt)
        await reports.replay_counts(conn, flt)
        await reports.list_deliveries(conn, flt)
    await reports.get_delivery(conn, delivery_id)
    await reports.delivery_stats(conn, since)
    await reports.processing_time(conn, since)


async def test_a_clinic_reads_none_of_another_clinics_rows(pool, clinics):
    """Each of a clinic's reads, as the tenant role, reads at most its own rows of the delivery log (seq scans
    priced out, as on a log this size the planner would rightly scan): none grows with another clinic."""
    org_id, group, delivery_id = clinics

    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        async with tenant_scope(conn, org_id):
            spy = Explaining(conn, analyze=True)
            await _every_tenant_read(spy, org_id, group, delivery_id)

    assert len(spy.plans) >= 25
    reads = [(" ".join(query.split()), log_reads(plan)) for query, plan in spy.plans]
    over = [(query, found) for query, found in reads if any(k == "Seq Scan" or n > 2 * OWN_ROWS for k, n in found)]
    assert [] == over


async def test_the_admin_reads_every_clinic_through_the_same_queries(pool, clinics):
    """The admin's session runs the same reads and sees both clinics: the scoping names clinics, it never
    narrows what the admin sees."""
    org_id, group, _ = clinics
    others = OTHER_CLINICS * OTHER_ROWS

    async with pool.acquire() as conn, conn.transaction():
        counts = await deliveries.count_by_status(conn, completed=False)
        listed = await reports.count(conn, DeliveryFilter())
        _, members = await replays.create_for_group(
            conn, org_id=None, requested_by="admin", description="all", group=group, refused=0, rate_per_s=None
        )
        async with tenant_scope(conn, org_id):
            own_counts = await deliveries.count_by_status(conn, completed=False)
            own_listed = await reports.count(conn, DeliveryFilter())

    assert (OWN_ROWS + others, OWN_ROWS) == (listed, own_listed)
    assert (OWN_ROWS // 6 + others // 6, OWN_ROWS // 6) == (counts["dead_letter"], own_counts["dead_letter"])
    assert OWN_ROWS // 6 + others // 6 == members
