"""Operations on real PostgreSQL and Redis: replay, retention, scheduler job locks, quarantine routing."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import asyncpg

from db import quarantine
from db.filters import DeliveryFilter
from tests.helpers import insert_delivery, status_update, wait_until
from workers.replay import replay
from workers.retention import cleanup
from workers.scheduler import run_exclusively


async def _dead_letters(pool: asyncpg.Pool, org_id: uuid.UUID, n: int) -> list[uuid.UUID]:
    ids = []
    for i in range(n):
        message = status_update(f"c-dl-{i}", "in-progress")["message"]
        delivery_id = await insert_delivery(
            pool,
            org_id=org_id,
            event_type="status-update",
            event_id=f"status-update:c-dl-{i}:in-progress",
            payload=message,
            max_attempts=1,
            job_id=None,
        )
        ids.append(delivery_id)
    await pool.execute(
        "UPDATE webhook_delivery_log SET status = 'dead_letter', attempts = 1, error_message = 'boom: handler broke'"
    )
    return ids


async def test_two_concurrent_replays_of_one_filter_replay_each_delivery_once(pool, org_id, broker):
    """Two operators replaying the same filter at once: every dead letter replayed exactly once, all complete."""
    await _dead_letters(pool, org_id, 60)
    flt = DeliveryFilter(statuses=("dead_letter",))

    counts = await asyncio.gather(*(replay(pool, broker, flt, budget=3, batch_size=7) for _ in range(2)))

    assert 60 == sum(counts)
    assert [1] == [
        r["replay_count"] for r in await pool.fetch("SELECT DISTINCT replay_count FROM webhook_delivery_log")
    ]
    await wait_until(lambda: pool.fetchval("SELECT bool_and(status = 'completed') FROM webhook_delivery_log"))
    assert 60 == await pool.fetchval("SELECT count(*) FROM calls")


async def test_replay_gives_a_fresh_budget_but_keeps_the_fencing_token_growing(pool, org_id, broker):
    """attempts never go back (they fence claims); max_attempts moves up by the budget."""
    await _dead_letters(pool, org_id, 1)

    await replay(pool, broker, DeliveryFilter(statuses=("dead_letter",)), budget=3)

    await wait_until(lambda: pool.fetchval("SELECT status = 'completed' FROM webhook_delivery_log"))
    row = await pool.fetchrow("SELECT attempts, max_attempts, replayed_at FROM webhook_delivery_log")
    assert (2, 4) == (row["attempts"], row["max_attempts"])
    assert row["replayed_at"] is not None


async def test_completed_deliveries_are_never_replayed(pool, org_id, broker):
    """A filter or id that names a completed delivery replays nothing: a hang is never counted twice."""
    await pool.execute("SELECT record_call_hang($1, 'c-h')", org_id)
    delivery_id = await insert_delivery(
        pool,
        org_id=org_id,
        event_type="hang",
        event_id="hang:c-h:x",
        payload={"type": "hang"},
        max_attempts=3,
        job_id=None,
        status="completed",
    )

    replayed = await replay(
        pool, broker, DeliveryFilter(ids=(delivery_id,), statuses=("failed", "dead_letter")), budget=3
    )

    assert 0 == replayed
    assert 1 == await pool.fetchval("SELECT hang_count FROM calls")


async def test_replay_filters_by_error_text_literally(pool, org_id, broker):
    """--error matches a substring case-insensitively; % and _ in it are literal, not wildcards."""
    await _dead_letters(pool, org_id, 3)
    await pool.execute("UPDATE webhook_delivery_log SET error_message = 'x' WHERE event_id LIKE '%c-dl-0%'")

    none = await replay(pool, broker, DeliveryFilter(statuses=("dead_letter",), error="HANDLER_%"), budget=3)
    some = await replay(pool, broker, DeliveryFilter(statuses=("dead_letter",), error="HANDLER BROKE"), budget=3)

    assert (0, 2) == (none, some)


async def test_retention_deletes_only_old_finished_rows_in_batches(pool, org_id):
    """Old completed/dead_letter rows go, batch by batch; old pending/failed and recent rows stay."""
    for i, status in enumerate(["completed"] * 5 + ["dead_letter"] * 2 + ["pending", "failed"]):
        await insert_delivery(
            pool,
            org_id=org_id,
            event_type="hang",
            event_id=f"old-{i}",
            payload={},
            max_attempts=3,
            job_id=None,
            status=status,
        )
    await pool.execute("UPDATE webhook_delivery_log SET received_at = now() - interval '31 days'")
    await insert_delivery(
        pool,
        org_id=org_id,
        event_type="hang",
        event_id="new",
        payload={},
        max_attempts=3,
        job_id=None,
        status="completed",
    )

    one_batch = await pool.fetchval("SELECT cleanup_old_webhook_logs(30, 3)")
    rest = await cleanup(pool, retention_days=30, batch_size=3)

    assert (3, 4) == (one_batch, rest)
    left = sorted(r["event_id"] for r in await pool.fetch("SELECT event_id FROM webhook_delivery_log"))
    assert ["new", "old-7", "old-8"] == left


async def test_a_scheduler_job_runs_in_one_process_at_a_time(pool):
    """Two schedulers firing the same job at once: one runs it, the other skips (advisory lock)."""
    running = asyncio.Event()
    release = asyncio.Event()
    runs = []

    async def job() -> None:
        runs.append(1)
        running.set()
        await release.wait()

    first = asyncio.create_task(run_exclusively(pool, "retention", job))
    await running.wait()
    second = await run_exclusively(pool, "retention", job)
    release.set()

    assert (False, True, 1) == (second, await first, len(runs))


async def test_quarantine_route_moves_messages_into_the_log_and_processes_them(pool, org_id, broker):
    """Unroutable messages are routed to an org once mapped, processed, and never routed twice."""
    from workers.quarantine import route_sender

    for i in range(3):
        message = status_update(f"c-q-{i}", "ringing")["message"]
        await quarantine.insert(
            pool,
            event_type="status-update",
            event_id=f"status-update:c-q-{i}:ringing",
            assistant_id="asst-new",
            phone_number_id=None,
            payload=message,
        )
    await quarantine.insert(
        pool,
        event_type="tool-calls",
        event_id="tool-calls:t1",
        assistant_id="asst-new",
        phone_number_id=None,
        payload={"type": "tool-calls"},
    )

    routed = await route_sender(pool, broker, org_id, max_attempts=3, assistant_id="asst-new", map_sender=False)
    again = await route_sender(pool, broker, org_id, max_attempts=3, map_sender=False)

    assert (4, 3, (0, [])) == (routed.moved, len(routed.queued), again)
    await wait_until(lambda: pool.fetchval("SELECT count(*) = 3 FROM calls"))
    assert 0 == await quarantine.count_unrouted(pool)
    tool_row = await pool.fetchrow("SELECT status, result FROM webhook_delivery_log WHERE event_type = 'tool-calls'")
    assert "completed" == tool_row["status"]


def _quarantine_two_senders(env: dict[str, str]) -> None:
    from tests.procs import sql_script

    sql_script(
        env,
        """
        INSERT INTO webhook_quarantine (event_type, event_id, assistant_id, phone_number_id, payload)
        SELECT 'hang', 'hang:a-' || i, 'asst-alpha', NULL, '{"type": "hang", "call": {"id": "a"}}'
          FROM generate_series(1, 3) i;
        INSERT INTO webhook_quarantine (event_type, event_id, assistant_id, phone_number_id, payload)
        SELECT 'hang', 'hang:b-' || i, 'asst-beta', NULL, '{"type": "hang", "call": {"id": "b"}}'
          FROM generate_series(1, 2) i;
    """,
    )


def test_quarantine_route_needs_a_sender_and_maps_it(env, org_for_env):
    """Without --assistant-id/--phone-number-id/--all it refuses; with one it maps that sender and moves only its messages."""
    from tests.procs import cli, sql

    _quarantine_two_senders(env)

    bare = cli(env, "quarantine", "route", "--org", org_for_env)
    one = cli(env, "quarantine", "route", "--org", org_for_env, "--assistant-id", "asst-alpha")

    assert 0 != bare.returncode and "--assistant-id or --phone-number-id" in bare.stderr
    assert 0 == one.returncode, one.stderr
    assert 3 == sql(env, "SELECT count(*) FROM webhook_delivery_log")
    assert 2 == sql(env, "SELECT count(*) FROM webhook_quarantine WHERE routed_at IS NULL")
    assert org_for_env == str(sql(env, "SELECT org_id FROM agents WHERE vapi_assistant_id = 'asst-alpha'"))
    assert f"mapped assistant asst-alpha to {org_for_env}; moved 3 messages" in one.stdout


def test_quarantine_route_by_type_maps_nothing_and_says_why_nothing_moved(env, org_for_env):
    """--type routes only that type's messages and creates no mapping the operator did not ask for; when
    nothing matches it says what it looked for (issue 18: it mapped the sender and said '0 queued')."""
    from tests.procs import cli, sql

    _quarantine_two_senders(env)

    none = cli(
        env, "quarantine", "route", "--org", org_for_env, "--assistant-id", "asst-beta", "--type", "status-update"
    )
    some = cli(env, "quarantine", "route", "--org", org_for_env, "--assistant-id", "asst-beta", "--type", "hang")

    assert 0 == none.returncode, none.stderr
    assert "nothing unrouted matches assistant asst-beta, type status-update, so nothing moved" in none.stdout
    assert "moved 2 messages" in some.stdout and "asst-beta not mapped: --type routes only" in some.stdout
    assert "mapped" not in some.stdout.replace("not mapped", "")
    assert 0 == sql(env, "SELECT count(*) FROM agents WHERE vapi_assistant_id = 'asst-beta'")
    assert 2 == sql(env, "SELECT count(*) FROM webhook_delivery_log")


def test_quarantine_route_refuses_a_sender_mapped_to_another_org(env, org_for_env):
    """A sender that already routes elsewhere is refused with both orgs named, and nothing moves."""
    from tests.procs import cli, sql

    _quarantine_two_senders(env)
    other = cli(env, "orgs", "create", "--name", "Other", "--assistant-id", "asst-alpha").stdout.strip()

    refused = cli(env, "quarantine", "route", "--org", org_for_env, "--assistant-id", "asst-alpha")

    assert 1 == refused.returncode and f"already routes to organization {other}" in refused.stderr
    assert 0 == sql(env, "SELECT count(*) FROM webhook_delivery_log")


def test_quarantine_route_all_lists_senders_and_needs_yes_without_a_terminal(env, org_for_env):
    """--all shows who sent what, refuses without a terminal unless --yes, and then moves everything."""
    from tests.procs import cli, sql

    _quarantine_two_senders(env)

    refused = cli(env, "quarantine", "route", "--org", org_for_env, "--all")
    moved = cli(env, "quarantine", "route", "--org", org_for_env, "--all", "--yes")

    assert 1 == refused.returncode and "needs --yes" in refused.stderr
    assert "asst-alpha" in refused.stdout and "asst-beta" in refused.stdout
    assert 0 == moved.returncode and 5 == sql(env, "SELECT count(*) FROM webhook_delivery_log")


async def test_a_successful_job_run_records_when_and_how_many_rows(pool):
    """run_exclusively sets the task's last-success time (what VapiSweeperStalled watches) and its row count."""
    import time

    from prometheus_client import REGISTRY

    before_s = time.time()

    async def job() -> int:
        return 7

    assert await run_exclusively(pool, "sweep", job)
    stamp = REGISTRY.get_sample_value("vapi_scheduler_job_last_success_timestamp_seconds", {"task": "sweep"})
    rows = REGISTRY.get_sample_value("vapi_scheduler_job_last_rows", {"task": "sweep"})
    assert stamp is not None and before_s <= stamp <= time.time()
    assert 7 == rows


def test_retention_run_counts_first_then_deletes_only_old_finished_deliveries(env, org_for_env):
    """`retention run --dry-run` counts, `retention run` deletes old completed and dead-lettered rows only."""
    from tests.procs import cli, sql, sql_script

    sql_script(
        env,
        f"""
        INSERT INTO webhook_delivery_log (org_id, event_type, event_id, payload, status, received_at)
        SELECT '{org_for_env}', 'hang', 'old-' || s || i, '{{}}', s, now() - interval '40 days'
          FROM generate_series(1, 3) i, unnest(ARRAY['completed', 'dead_letter', 'pending']) s;
        INSERT INTO webhook_delivery_log (org_id, event_type, event_id, payload, status)
        VALUES ('{org_for_env}', 'hang', 'new-1', '{{}}', 'completed');
        """,
    )

    dry = cli(env, "retention", "run", "--dry-run")
    real = cli(env, "retention", "run")

    assert "would delete 6 deliveries older than 30 days" in dry.stdout, dry.stderr
    assert "deleted 6 deliveries older than 30 days" in real.stdout, real.stderr
    assert 4 == sql(env, "SELECT count(*) FROM webhook_delivery_log")


async def test_live_deliveries_are_taken_before_a_bulk_replay(pool, org_id, broker):
    """With 1,000 replayed dead letters queued (20 messages), a live delivery sent after them completes before
    most of them: in one FIFO queue it would complete last. (Workers start on the replay while it is sent, so
    a few of its messages may finish first; 300 in 6 messages of 50 left too few to tell.)"""
    from workers.sending import send_and_record

    await _dead_letters(pool, org_id, 1000)
    await replay(pool, broker, DeliveryFilter(statuses=("dead_letter",)), budget=3)
    live = await insert_delivery(
        pool,
        org_id=org_id,
        event_type="status-update",
        event_id="status-update:c-live:in-progress",
        payload=status_update("c-live", "in-progress")["message"],
        max_attempts=3,
        job_id=str(uuid.uuid4()),
    )
    await send_and_record(pool, broker, [live])

    await wait_until(
        lambda: pool.fetchval("SELECT bool_and(status = 'completed') FROM webhook_delivery_log"), timeout_s=60
    )
    replays_after_live = await pool.fetchval(
        "SELECT count(*) FROM webhook_delivery_log WHERE replay_count = 1 AND completed_at >"
        " (SELECT completed_at FROM webhook_delivery_log WHERE id = $1)",
        live,
    )
    assert replays_after_live >= 500, f"only {replays_after_live} of 1,000 replays completed after the live delivery"


async def test_a_replay_with_a_backlog_cap_waits_for_the_workers(pool, org_id, redis_namespace, settings):
    """With no worker running, a replay capped at 10 waiting deliveries stops at 10 (one message) until taken."""
    from workers.broker import build_broker, replay_backlog

    await _dead_letters(pool, org_id, 30)
    idle = build_broker(settings.redis_url, namespace=redis_namespace)  # no worker consumes it
    done: list[int] = []
    task = asyncio.create_task(
        replay(
            pool,
            idle,
            DeliveryFilter(statuses=("dead_letter",)),
            budget=3,
            batch_size=10,
            max_backlog=10,
            on_progress=done.append,
        )
    )
    await wait_until(lambda: sum(done) == 10)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(task), 1.0)
    held = (sum(done), await replay_backlog(idle))

    async def take_them() -> None:  # as a worker would
        while not task.done():
            idle.client.delete(f"{redis_namespace}:replays")
            await asyncio.sleep(0.05)

    taker = asyncio.create_task(take_them())
    total = await asyncio.wait_for(task, 10)
    await taker
    idle.close()

    assert (10, 1) == held
    assert 30 == total
