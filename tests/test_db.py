"""Migrations and row-level security on a real PostgreSQL."""

from __future__ import annotations

import asyncpg
import pytest

from db import orgs
from db.errors import MigrationError
from db.migrate import discover, migrate


async def test_migrate_again_is_a_no_op(db_dsn):
    """Re-running migrate on an up-to-date database applies nothing and changes no ledger row."""
    conn = await asyncpg.connect(db_dsn)
    before = await conn.fetch("SELECT version, applied_at FROM schema_migrations ORDER BY version")

    applied = await migrate(db_dsn)

    after = await conn.fetch("SELECT version, applied_at FROM schema_migrations ORDER BY version")
    await conn.close()
    assert [] == applied
    assert before == after
    assert [m.version for m in discover()] == [r["version"] for r in after]


def test_migration_files_are_numbered_without_gaps(tmp_path):
    """Files are NNNN_lower_snake.sql, numbered 0001 upwards; a gap or a bad name is refused."""
    assert ["0001", "0002"] == [m.version for m in discover()][:2]
    (tmp_path / "0001_a.sql").write_text("")
    (tmp_path / "0003_c.sql").write_text("")

    with pytest.raises(MigrationError, match=r"0003_c\.sql"):
        discover(tmp_path)
    (tmp_path / "0002-B.sql").write_text("")
    with pytest.raises(MigrationError, match=r"0002-B\.sql"):
        discover(tmp_path)


async def test_call_status_moves_only_forward_in_sql(pool, org_id):
    """create_inbound_call_atomically keeps the highest-ranked status whatever the order."""
    for status in ("in-progress", "ended", "ringing", "queued"):
        await pool.execute("SELECT create_inbound_call_atomically($1, 'c1', $2)", org_id, status)

    assert "ended" == await pool.fetchval("SELECT status FROM calls")


async def test_recording_is_queued_once(pool, org_id):
    """update_call_with_recording_atomically queues one upload per call, however often it runs."""
    await pool.execute("SELECT create_inbound_call_atomically($1, 'c1', 'ended')", org_id)

    first = await pool.fetchval("SELECT update_call_with_recording_atomically($1, 'c1', 'https://r/1.wav')", org_id)
    second = await pool.fetchval("SELECT update_call_with_recording_atomically($1, 'c1', 'https://r/1.wav')", org_id)

    assert (True, False) == (first, second)
    assert 1 == await pool.fetchval("SELECT count(*) FROM recording_upload_queue")


async def test_tenant_session_sees_only_its_org_under_rls(pool, org_id):
    """With RLS exercised (non-superuser role, app.org_id set), another org's calls are invisible and immutable."""
    other = await orgs.create_org(pool, name="Other")
    await pool.execute("SELECT create_inbound_call_atomically($1, 'mine', 'ringing')", org_id)
    await pool.execute("SELECT create_inbound_call_atomically($1, 'theirs', 'ringing')", other)

    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL ROLE vapi_tenant")
        await conn.execute("SELECT set_config('app.bypass_rls', 'off', true)")
        await conn.execute("SELECT set_config('app.org_id', $1, true)", str(org_id))
        visible = [r["vapi_call_id"] for r in await conn.fetch("SELECT vapi_call_id FROM calls")]
        updated = await conn.execute("UPDATE calls SET status = 'ended' WHERE vapi_call_id = 'theirs'")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("INSERT INTO calls (org_id, vapi_call_id) VALUES ($1, 'forged')", other)

    assert ["mine"] == visible
    assert "UPDATE 0" == updated
    assert "ringing" == await pool.fetchval("SELECT status FROM calls WHERE vapi_call_id = 'theirs'")


async def test_tenant_session_without_org_sees_nothing(pool, org_id):
    """A tenant session that forgot SET LOCAL app.org_id sees no rows rather than all of them."""
    await pool.execute("SELECT create_inbound_call_atomically($1, 'mine', 'ringing')", org_id)

    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL ROLE vapi_tenant")
        await conn.execute("SELECT set_config('app.bypass_rls', 'off', true)")
        count = await conn.fetchval("SELECT count(*) FROM calls")

    assert 0 == count


async def test_every_tenant_table_has_forced_rls_and_both_policies(pool):
    """Each table with an org_id column (api_tokens aside, read before a tenant is known) enforces row-level security."""
    tables = {
        r["table_name"]
        for r in await pool.fetch(
            "SELECT table_name FROM information_schema.columns WHERE column_name = 'org_id' AND table_schema = 'public'"
        )
    }
    rows = await pool.fetch(
        """SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
                  array(SELECT policyname FROM pg_policies p WHERE p.tablename = c.relname ORDER BY 1) AS policies
             FROM pg_class c WHERE c.relname = ANY($1::text[])""",
        sorted(tables - {"api_tokens"}),
    )

    assert len(rows) == len(tables) - 1 >= 8
    for row in rows:
        assert (True, True) == (row["relrowsecurity"], row["relforcerowsecurity"]), row["relname"]
        assert [f"{row['relname']}_org_isolation", f"{row['relname']}_service_role_bypass"] == list(row["policies"])


async def test_tenant_role_sees_only_its_own_organization(pool, org_id):
    """organizations under RLS: a tenant session sees its own row only, and may change none."""
    other = await orgs.create_org(pool, name="Other clinic")

    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL ROLE vapi_tenant")
        await conn.execute("SELECT set_config('app.bypass_rls', 'off', true)")
        await conn.execute("SELECT set_config('app.org_id', $1, true)", str(org_id))
        visible = [r["id"] for r in await conn.fetch("SELECT id FROM organizations")]
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("UPDATE organizations SET name = 'x' WHERE id = $1", other)

    assert [org_id] == visible
    assert "Other clinic" == await pool.fetchval("SELECT name FROM organizations WHERE id = $1", other)


async def test_tenant_role_cannot_read_quarantined_messages(pool, org_id):
    """webhook_quarantine belongs to no tenant: the tenant role has no grant on it at all."""
    from db import quarantine

    await quarantine.insert(
        pool, event_type="hang", event_id="hang:q", assistant_id="a", phone_number_id=None, payload={"type": "hang"}
    )

    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL ROLE vapi_tenant")
        await conn.execute("SELECT set_config('app.org_id', $1, true)", str(org_id))
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetchval("SELECT count(*) FROM webhook_quarantine")


async def test_delivery_status_enum_matches_the_tables_check_constraint(pool):
    """DeliveryStatus lists exactly the statuses webhook_delivery_log's CHECK constraint allows, in its order."""
    import re

    from db.statuses import DeliveryStatus

    check = await pool.fetchval(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'webhook_delivery_log_status_check'"
    )

    assert [s.value for s in DeliveryStatus] == re.findall(r"'(\w+)'::text", check)


async def test_replay_status_enum_matches_the_tables_check_constraint(pool):
    """ReplayStatus lists exactly the statuses the replays table's CHECK constraint allows, in its order."""
    import re

    from db.statuses import ReplayStatus

    check = await pool.fetchval(
        "SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c"
        " WHERE c.conrelid = 'replays'::regclass AND pg_get_constraintdef(c.oid) LIKE '%status%'"
    )

    assert [s.value for s in ReplayStatus] == re.findall(r"'(\w+)'::text", check)


async def test_marking_messages_sent_never_waits_for_a_row_a_worker_is_claiming(pool, org_id):
    """A worker's claim holds one of three rows (its transaction open); marking the three enqueued, and then not
    enqueued, from another connection finishes at once (a lock wait would hit the 1 s lock_timeout) and
    marks the two free rows only. Waiting could deadlock: the two statements lock rows in different orders
    (seen: a replay of 10,000 dead letters failed with DeadlockDetectedError)."""
    import uuid

    from db import deliveries

    ids = [
        await pool.fetchval(
            "INSERT INTO webhook_delivery_log (org_id, event_type, event_id, payload, status)"
            " VALUES ($1, 'status-update', $2, '{}', 'pending') RETURNING id",
            org_id,
            f"status-update:lock-{i}",
        )
        for i in range(3)
    ]
    async with pool.acquire() as worker, pool.acquire() as sender, worker.transaction():
        claimed = await deliveries.claim_many(worker, [ids[1]], lease_s=60)
        await sender.execute("SET lock_timeout = '1s'")
        await deliveries.mark_enqueued(sender, [(ids, str(uuid.uuid4()))])
        marked = await sender.fetch("SELECT id FROM webhook_delivery_log WHERE enqueued_at IS NOT NULL")
        await deliveries.mark_not_enqueued(sender, ids)
        unmarked = await sender.fetchval("SELECT count(enqueued_at) FROM webhook_delivery_log")
        await sender.execute("RESET lock_timeout")

    assert [c.id for c in claimed] == [ids[1]]
    assert {r["id"] for r in marked} == {ids[0], ids[2]}
    assert unmarked == 0
