"""Console replay runs (issue 18 point 7): the lease held while waiting, a lost lease stops a runner, and
counts that are exact under SIGKILL and concurrent confirms. Real PostgreSQL, Redis, Dramatiq workers
and, for the kill, the real web process."""

from __future__ import annotations

import asyncio
import re
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from db import replays
from workers import replay_runs
from workers.broker import build_broker

ADMIN = "console-admin-token-0123456789"


async def _claim(pool: Any, *, lease_s: float) -> replays.ClaimedReplay:
    claimed = await replays.claim(pool, lease_s=lease_s)
    assert claimed is not None, "no replay to claim"
    return claimed


async def _shown(conn: Any, replay_id: Any) -> replays.Replay:
    shown = await replays.get(conn, replay_id)
    assert shown is not None
    return shown


async def _dead_letters(pool: Any, org_id: Any, n: int, *, payload: str | None = None) -> str:
    """``n`` dead letters in one error group (status updates that complete when replayed, or ``payload``);
    returns the group."""
    await pool.execute(
        "INSERT INTO webhook_delivery_log (org_id, event_type, event_id, payload, status, attempts, error_message)"
        " SELECT $1, 'status-update', 'status-update:c-' || i || ':in-progress',"
        "        coalesce($3::jsonb, jsonb_build_object('type', 'status-update', 'status', 'in-progress',"
        "                 'call', jsonb_build_object('id', 'c-' || i))), 'dead_letter', 1, 'handler broke on call 7'"
        "   FROM generate_series(1, $2) AS i",
        org_id,
        n,
        payload,
    )
    group: str = await pool.fetchval("SELECT DISTINCT error_group FROM webhook_delivery_log")
    return group


async def _confirm(pool: Any, group: str, rate: float | None = None) -> Any:
    async with pool.acquire() as conn, conn.transaction():
        replay_id, _ = await replays.create_for_group(
            conn, org_id=None, requested_by="admin", description="test", group=group, refused=0, rate_per_s=rate
        )
    return replay_id


@pytest.fixture
def idle_broker(settings: Any, redis_namespace: str) -> Any:
    """A real Redis broker that no worker consumes: the replay queue fills and stays full."""
    brk = build_broker(settings.redis_url, namespace=redis_namespace)
    yield brk
    brk.close()


@pytest.mark.slow  # waits for three lease periods in real time
async def test_a_runner_waiting_for_the_workers_keeps_its_lease(pool, org_id, idle_broker, monkeypatch):
    """Workers down: the runner sends one batch, then waits on the full replay queue for three lease lengths,
    renewing; no other process can claim the replay meanwhile (issue 18: a second process took it and both
    sent). Cancelled, it stops; its count is what it sent."""
    monkeypatch.setattr(replay_runs, "LEASE_S", 1.0)
    await _confirm(pool, await _dead_letters(pool, org_id, 600))
    claimed = await _claim(pool, lease_s=replay_runs.LEASE_S)
    runner = asyncio.create_task(replay_runs.run(pool, idle_broker, claimed, budget=3))
    others = []
    deadline = time.monotonic() + 3 * replay_runs.LEASE_S + 0.5
    while time.monotonic() < deadline:
        others.append(await replays.claim(pool, lease_s=replay_runs.LEASE_S))
        await asyncio.sleep(0.2)
    async with pool.acquire() as conn:
        await replays.cancel(conn, claimed.id)
    sent = await asyncio.wait_for(runner, timeout=10)

    assert [None] * len(others) == others
    assert replay_runs.BATCH == sent
    assert sent == await pool.fetchval("SELECT replayed FROM replays")
    assert sent == await pool.fetchval("SELECT count(*) FROM webhook_delivery_log WHERE replay_count = 1")


async def test_a_runner_that_lost_its_lease_replays_nothing_more(pool, org_id, idle_broker):
    """A runner that stalled past its lease, which another took, replays nothing when it wakes; the new
    owner replays everything, once."""
    await _confirm(pool, await _dead_letters(pool, org_id, 50))
    stalled = await _claim(pool, lease_s=30)
    await pool.execute("UPDATE replays SET lease_until = now() - interval '1 second'")
    taker = await _claim(pool, lease_s=30)

    woke = await replay_runs.run(pool, idle_broker, stalled, budget=3)
    took = await replay_runs.run(pool, idle_broker, taker, budget=3)

    assert stalled.lease_owner != taker.lease_owner
    assert (0, 50) == (woke, took)
    assert ("done", 50) == tuple(await pool.fetchrow("SELECT status, replayed FROM replays"))
    assert 1 == await pool.fetchval("SELECT max(replay_count) FROM webhook_delivery_log")


async def test_two_confirms_of_one_group_count_each_delivery_once(pool, org_id, broker):
    """Two replays of the same 600 dead letters run at once: each delivery is replayed once, by one of them,
    and each replay counts as replayed and completed exactly its own (issue 18: the losing one showed
    'replayed 0, completed 600')."""
    from tests.helpers import wait_until

    group = await _dead_letters(pool, org_id, 600)
    first, second = await _confirm(pool, group), await _confirm(pool, group)
    claims = [await _claim(pool, lease_s=30), await _claim(pool, lease_s=30)]

    sent = await asyncio.gather(*(replay_runs.run(pool, broker, c, budget=3) for c in claims))
    await wait_until(
        lambda: pool.fetchval("SELECT count(*) = 600 FROM webhook_delivery_log WHERE status = 'completed'"),
        timeout_s=60,
    )
    async with pool.acquire() as conn:
        shown = [await _shown(conn, r) for r in (first, second)]

    assert 600 == sum(sent)
    assert [s.replayed for s in shown] == [s.completed for s in shown]
    assert 600 == sum(s.replayed for s in shown)
    assert [0, 0] == [s.failed for s in shown]
    # Settled: nothing is left in flight for the next look to read.
    assert 0 == await pool.fetchval(
        "SELECT count(*) FROM replay_members WHERE replay_count IS NOT NULL AND outcome IS NULL"
    )
    assert 1 == await pool.fetchval("SELECT max(replay_count) FROM webhook_delivery_log")


async def test_a_replay_whose_deliveries_all_fail_again_says_so(pool, org_id, broker):
    """Everything fails again (the cause is not fixed): the replay is done, counts every one as failed again,
    and none as completed (issue 18: "done" with an empty bar)."""
    from tests.helpers import wait_until

    replay_id = await _confirm(pool, await _dead_letters(pool, org_id, 30, payload='{"type": "status-update"}'))
    claimed = await _claim(pool, lease_s=30)

    await replay_runs.run(pool, broker, claimed, budget=1)
    await wait_until(
        lambda: pool.fetchval(
            "SELECT count(*) = 30 FROM webhook_delivery_log WHERE status = 'dead_letter' AND replay_count = 1"
        ),
        timeout_s=60,
    )
    async with pool.acquire() as conn:
        shown = await _shown(conn, replay_id)

    assert ("done", 30, 30, 0, 30) == (
        shown.status,
        shown.matched,
        shown.replayed,
        shown.completed,
        shown.failed,
    )


def test_counts_stay_exact_when_the_web_process_is_killed_mid_replay(env: dict[str, str], tmp_path: Path) -> None:
    """SIGKILL the web process while it replays 600 at 100/s: at that moment the replay's count equals the
    deliveries it had put back (issue 18: 'sent 550 of 600' while 600 were replayed); a new web process
    finishes it, and in the end 600 are counted, each replayed once."""
    from tests.procs import cli, sql, start, stop, wait_for, wait_sql

    assert 0 == cli(env, "migrate").returncode
    org = cli(env, "orgs", "create", "--name", "Killed").stdout.strip()
    sql(
        env,
        "INSERT INTO webhook_delivery_log (org_id, event_type, event_id, payload, status, attempts, error_message)"
        f" SELECT '{org}', 'status-update', 'status-update:k-' || i || ':in-progress',"
        "        jsonb_build_object('type', 'status-update', 'status', 'in-progress', 'call', jsonb_build_object('id', 'k-' || i)),"
        "        'dead_letter', 1, 'handler broke' FROM generate_series(1, 600) AS i",
    )
    group = sql(env, "SELECT DISTINCT error_group FROM webhook_delivery_log")
    run_env = {**env, "ADMIN_TOKEN": ADMIN}
    worker = start("worker", run_env, tmp_path / "worker.log")
    web = start("serve", run_env, tmp_path / "web.log")
    base = f"http://127.0.0.1:{env['PORT']}/console"

    async def confirm() -> int:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
            found = re.search(r'name="csrf" value="([^"]+)"', await (await s.get(f"{base}/login")).text())
            assert found
            await s.post(f"{base}/login", data={"token": ADMIN, "csrf": found.group(1)})
            page = await (await s.get(f"{base}/")).text()
            csrf = re.search(r'name="csrf" value="([^"]+)"', page)
            assert csrf
            resp = await s.post(
                f"{base}/replays", data={"group": group, "rate": "50.0", "csrf": csrf.group(1)}, allow_redirects=False
            )
            return resp.status

    try:
        wait_for(f"http://127.0.0.1:{env['PORT']}/readyz")
        assert 302 == asyncio.run(confirm())
        wait_sql(env, "SELECT replayed >= 100 FROM replays")
        web.send_signal(signal.SIGKILL)
        web.wait(timeout=10)
        at_kill = sql(
            env,
            "SELECT array[(SELECT replayed FROM replays),"
            " (SELECT count(*) FROM replay_members WHERE replay_count IS NOT NULL)::int,"
            " (SELECT count(*) FROM webhook_delivery_log WHERE replay_count = 1)::int]",
        )
        sql(env, "UPDATE replays SET lease_until = now()")  # the dead process's lease runs out now, not in 30 s
        web = start("serve", run_env, tmp_path / "web-2.log")
        wait_sql(env, "SELECT status = 'done' FROM replays", timeout_s=60)
        final = sql(
            env,
            "SELECT array[(SELECT replayed FROM replays),"
            " (SELECT count(*) FROM webhook_delivery_log WHERE replay_count = 1)::int,"
            " (SELECT max(replay_count) FROM webhook_delivery_log)]",
        )
    finally:
        stop(web)
        stop(worker)

    assert at_kill[0] == at_kill[1] == at_kill[2] and 100 <= at_kill[0] < 600
    assert [600, 600, 1] == final


def test_a_replay_page_keeps_looking_while_it_runs_or_the_workers_hold_what_it_sent():
    """The console's polling rule: a running replay, or a finished one with members whose outcome is not
    recorded yet, may still change; a finished and settled one may not."""
    import dataclasses
    import uuid
    from datetime import UTC, datetime

    from db.replays import Replay
    from db.statuses import ReplayStatus

    base = Replay(
        id=uuid.uuid4(), org_id=None, requested_by="x", description="y", matched=10, refused=0, rate_per_s=None,
        replayed=10, completed=6, failed=3, superseded=0, status=ReplayStatus.DONE, created_at=datetime.now(UTC),
        finished_at=None,
    )  # fmt: skip

    assert (9, 1, True) == (base.settled, base.in_flight, base.changing)
    assert not dataclasses.replace(base, superseded=1).changing
    assert dataclasses.replace(base, superseded=1, status=ReplayStatus.RUNNING).changing
